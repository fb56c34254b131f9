"""What the README says changes with Pacemaker 3.0 (Debian 13, RHEL 10), read
from the Pacemaker of the root these tests run in (make dist-check runs them
in its Debian 12 and Debian 13 roots): the scheduler's own description of
concurrent-fencing, and the newest CIB schema."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SCHEMAS = Path("/usr/share/pacemaker")


def major() -> int:
    out = subprocess.run(
        ["pacemakerd", "--version"], capture_output=True, text=True, check=True
    ).stdout
    m = re.match(r"Pacemaker (\d+)\.", out)
    assert m, out
    return int(m.group(1))


def scheduler_option(name: str) -> ET.Element:
    out = subprocess.run(
        ["/usr/lib/pacemaker/pacemaker-schedulerd", "metadata"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = ET.fromstring(out).find(f".//parameter[@name='{name}']")
    assert found is not None, name
    return found


@pytest.mark.skipif(not SCHEMAS.is_dir(), reason="no Pacemaker here")
def test_concurrent_fencing_is_deprecated_and_on_by_default_from_3_0() -> None:
    option = scheduler_option("concurrent-fencing")
    content = option.find("content")
    assert content is not None
    short = "".join(option.findtext("shortdesc") or "").strip()
    if major() >= 3:
        assert content.get("default") == "true"
        assert "Deprecated" in short
    else:
        assert content.get("default") == "false"
        assert "Deprecated" not in short


@pytest.mark.skipif(not SCHEMAS.is_dir(), reason="no Pacemaker here")
def test_newest_cib_schema() -> None:
    versions = sorted(
        tuple(int(x) for x in m.groups())
        for p in SCHEMAS.iterdir()
        if (m := re.fullmatch(r"pacemaker-(\d+)\.(\d+)\.rng", p.name))
    )
    assert versions[-1] == ((4, 0) if major() >= 3 else (3, 9)), versions
