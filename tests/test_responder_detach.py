"""The responder's detach mode, through the installed agent: a fence disables
the target's namespaces before the answer, `on` (which removes the answer)
enables them again. The nvmet tree here is a directory of plain files shaped
like /sys/kernel/config/nvmet; `make storage-lab` does the same against the
kernel's NVMe target in VMs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from conftest import RESPONDER, Dirs, run_agent

NQN = "nqn.2024-01.io.nnf:rabbit:{target}"


def nvmet_tree(root: Path, computes: list[str]) -> None:
    for c in computes:
        ns = root / "subsystems" / NQN.format(target=c) / "namespaces" / "1"
        ns.mkdir(parents=True)
        (ns / "enable").write_text("1\n")


def enabled(root: Path, compute: str) -> str:
    path = root / "subsystems" / NQN.format(target=compute) / "namespaces/1/enable"
    return path.read_text().strip()


def test_a_fence_detaches_before_the_answer_and_on_re_attaches(
    dirs: Dirs, responder: Any, tmp_path: Path
) -> None:
    nvmet = tmp_path / "nvmet"
    nvmet_tree(nvmet, ["compute-node-1", "compute-node-2"])
    r = responder(
        "--mode", "detach", "--nvmet-subsystem", NQN, "--nvmet-root", str(nvmet),
        "--poll-interval", "0.1",
    )  # fmt: skip
    assert "detaches in nvmet" in r.banner
    off = run_agent(dirs.argv("-o", "off", "-n", "compute-node-2"))
    assert off.returncode == 0, off.stderr
    # Exit 0 only once the namespace was disabled; the other compute untouched.
    assert enabled(nvmet, "compute-node-2") == "0"
    assert enabled(nvmet, "compute-node-1") == "1"
    assert "disabling 1 NVMe namespaces" in dirs.jsonl()[-1]["details"]
    on = run_agent(dirs.argv("-o", "on", "-n", "compute-node-2"))
    assert on.returncode == 0, on.stderr
    end = time.monotonic() + 10
    while enabled(nvmet, "compute-node-2") != "1" and time.monotonic() < end:
        time.sleep(0.05)
    assert enabled(nvmet, "compute-node-2") == "1"
    assert "re-attached compute-node-2" in r.stop()


def test_a_node_without_a_subsystem_gets_the_nothing_found_answer(
    dirs: Dirs, responder: Any, tmp_path: Path
) -> None:
    nvmet = tmp_path / "nvmet"
    nvmet_tree(nvmet, ["compute-node-1"])
    responder("--mode", "detach", "--nvmet-subsystem", NQN, "--nvmet-root", str(nvmet))
    off = run_agent(dirs.argv("-o", "off", "-n", "compute-node-9"))
    # nnf-sos's answer for a node it holds nothing of: success, nothing detached.
    assert off.returncode == 0, off.stderr
    assert "No block storage resources found" in dirs.jsonl()[-1]["details"]
    assert enabled(nvmet, "compute-node-1") == "1"


def test_detach_without_a_template_is_refused_naming_the_option(dirs: Dirs) -> None:
    for args, said in [
        (["--mode", "detach"], "nvmet_subsystem"),
        (["--mode", "detach", "--nvmet-subsystem", "nqn.x:rabbit"], "{target}"),
        (["--mode", "success", "--nvmet-subsystem", NQN], "mode detach only"),
    ]:
        p = subprocess.run(
            [RESPONDER, "--request-dir", str(dirs.req), "--response-dir", str(dirs.resp), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert p.returncode != 0 and said in p.stderr, (args, p.stderr)
