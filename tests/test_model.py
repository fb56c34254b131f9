"""scripts/model-check.sh fails when the model stops saying what it says.

`make model-check` runs the real model. These tests run the script on a
mutated copy of it and check that the script notices, both ways: a property
that must hold and no longer does, and an expected violation that is gone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "docs" / "model" / "fence.pml"
SCRIPT = ROOT / "scripts" / "model-check.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("spin") is None or shutil.which("gcc") is None,
    reason="spin and gcc are needed (scripts/setup.sh installs them)",
)


def run_on(tmp_path: Path, old: str, new: str) -> subprocess.CompletedProcess[str]:
    text = MODEL.read_text()
    assert text.count(old) == 1, f"the mutation point {old!r} is not unique in {MODEL}"
    mutated = tmp_path / "fence.pml"
    mutated.write_text(text.replace(old, new))
    env = dict(os.environ, MODEL_FILE=str(mutated), MODEL_ONLY="intended", MODEL_QUIET="1")
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )


def rows(out: str) -> dict[str, tuple[str, str]]:
    """property -> (expected, found) from the script's table."""
    table = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == "intended":
            table[f[1]] = (f[2], f[3])
    return table


MUTATIONS = [
    pytest.param(
        ("#ifndef PRE_FIX\n    /* 1. withdraw", "#if 0\n    /* 1. withdraw"),
        1,
        {"on_leaves_no_request": ("holds", "violated"), "exit0_means_answered": ("holds", "holds")},
        id="an-on-that-no-longer-withdraws-requests-fails-the-check",
    ),
    # nnf-sos's late answers no longer count as re-fencing: the documented
    # race disappears from the model, and the script must say so.
    pytest.param(
        ("refenced = true; refence_path = via;", "refence_path = via;"),
        1,
        {"no_refence_after_on": ("violated", "holds"), "on_leaves_no_request": ("holds", "holds")},
        id="a-missing-expected-violation-fails-the-check",
    ),
    pytest.param(
        ("ltl exit0_means_answered", "ltl exit0_means_answered"),
        0,
        {
            "no_refence_after_on": ("violated", "violated"),
            "on_leaves_no_request": ("holds", "holds"),
        },
        id="the-model-as-committed-passes-for-the-intended-agent",
    ),
]


@pytest.mark.parametrize(("mutation", "code", "expected"), MUTATIONS)
def test_the_script_says_whether_the_model_came_out_as_expected(
    tmp_path: Path, mutation: tuple[str, str], code: int, expected: dict[str, tuple[str, str]]
) -> None:
    r = run_on(tmp_path, *mutation)
    assert r.returncode == code, r.stdout + r.stderr
    t = rows(r.stdout)
    for prop, want in expected.items():
        assert t[prop] == want, (prop, r.stdout)
    if code != 0:
        assert "UNEXPECTED" in r.stdout
        assert "did not come out as expected" in r.stderr
