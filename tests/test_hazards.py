"""Hazards found against the real storage side and by an unfriendly operator:
vacuous "fenced" answers, log paths that could hang the agent, signals that
made the exit code disagree with the record, glued records, a failed
directory sync taken for "not sent", monitor after a clock step, forged
readable fields, and withdrawn requests the storage side had already read.

docs/RELIABILITY.md ("Hazards") lists each with its expected behaviour.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Dirs, clean_env, run_agent
from helpers import (
    DETAILED_LOG,
    FAKETIME_LIB,
    LOG_NAMES,
    READABLE_LOG,
    TARGET,
    answer_body,
    answering,
    fill_up,
    final_record,
    finish,
    main_log,
    start_agent,
    tmpfs,
    wait_for_request,
    wait_for_status,
)

NOTHING_FOUND = "No block storage resources found to fence"
THIS_RABBIT = socket.gethostname().split(".")[0]


# --------------------------------------------------------------------------
# helpers


def kubectl(tmp_path: Path, allocations: list[tuple[str, str]], *, delay: float = 0) -> Path:
    """A stand-in kubectl listing GFS2 NnfNodeBlockStorages of TARGET as
    (namespace, file system) pairs, after `delay` seconds."""
    items = [
        {
            "metadata": {
                "name": f"{fs}-0",
                "namespace": ns,
                "labels": {
                    "nnf.cray.hpe.com/allocationset": "gfs2",
                    "dataworkflowservices.github.io/owner.name": fs,
                },
            },
            "status": {"allocations": [{"accesses": {TARGET: {"storageGroupId": "1"}}}]},
        }
        for ns, fs in allocations
    ]
    out = tmp_path / "kubectl.json"
    out.write_text(json.dumps({"items": items}))
    script = tmp_path / "kubectl"
    script.write_text(f"#!/bin/sh\nsleep {delay}\ncat '{out}'\n")
    script.chmod(0o755)
    return script


def failing_kubectl(tmp_path: Path) -> Path:
    script = tmp_path / "kubectl"
    script.write_text("#!/bin/sh\necho 'error: the server is unreachable' >&2\nexit 1\n")
    script.chmod(0o755)
    return script


def nothing_found(request: dict[str, Any]) -> str:
    """nnf-sos's compact "nothing found" success answer."""
    return json.dumps(
        {
            "request_id": request["request_id"],
            "status": "success",
            "success": True,
            "message": NOTHING_FOUND,
            "timestamp": "2026-01-01T00:00:00Z",
            "target_node": request["target_node"],
            "action": request["action"],
            "recorder_node": request["recorder_node"],
            "action_performed": "off",
        },
        separators=(",", ":"),
    )


def fence_nothing_found(
    d: Dirs, kubectl_path: Path, timeout: str = "10", **extra: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    """A fence answered the way nnf-sos's in-place path does: the request is
    read, the answer written in place in two writes, the request deleted."""
    args = ["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", timeout)]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", v]
    with answering(d, nothing_found, first_only=True, in_place=True):
        started = time.monotonic()
        r = run_agent(args, env=clean_env(FENCE_KUBECTL=str(kubectl_path)))
        took = time.monotonic() - started
    return r, took


def mkfifo(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(p, 0o600)


# --------------------------------------------------------------------------
# vacuous "fenced"


def test_nothing_found_while_this_rabbit_holds_the_storage_is_not_fenced(
    dirs: Dirs, tmp_path: Path
) -> None:
    k = kubectl(tmp_path, [(THIS_RABBIT, "nnf-storage-1"), (THIS_RABBIT, "nnf-storage-4")])
    r, _ = fence_nothing_found(dirs, k)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "this rabbit holds its storage" in r.stderr, r.stderr
    assert "nnf-storage-1" in r.stderr and "nnf-storage-4" in r.stderr
    final = final_record(dirs)
    assert final["status"] == "failed"
    assert final["details"].startswith(NOTHING_FOUND), final
    assert f"on this rabbit ({THIS_RABBIT}: " in final["details"]
    assert f"{TARGET} is not fenced" in final["details"]
    assert final["gfs2_filesystems"] == ["nnf-storage-1", "nnf-storage-4"]


def test_nothing_found_with_storage_on_other_rabbits_names_them(dirs: Dirs, tmp_path: Path) -> None:
    k = kubectl(tmp_path, [("rabbit-node-7", "nnf-storage-1"), ("rabbit-node-8", "fs-2")])
    r, _ = fence_nothing_found(dirs, k)
    assert r.returncode == 0, r.stderr
    for text in (r.stdout, final_record(dirs)["details"]):
        assert 'rabbit-node-7: ["nnf-storage-1"], rabbit-node-8: ["fs-2"]' in text, text
        assert "must fence it too" in text
    assert final_record(dirs)["status"] == "completed"


def test_nothing_found_with_failed_discovery_decides_nothing_and_says_so(
    dirs: Dirs, tmp_path: Path
) -> None:
    r, _ = fence_nothing_found(dirs, failing_kubectl(tmp_path))
    assert r.returncode == 0, r.stderr
    final = final_record(dirs)
    assert final["status"] == "completed"
    assert "discovery failed" in final["details"] and "decides nothing" in final["details"]
    assert "decides nothing" in main_log(dirs)


def test_nothing_found_waits_for_a_slow_discovery_within_the_deadline(
    dirs: Dirs, tmp_path: Path
) -> None:
    k = kubectl(tmp_path, [(THIS_RABBIT, "nnf-storage-1")], delay=1.5)
    r, took = fence_nothing_found(dirs, k, timeout="20")
    assert r.returncode == 1, r.stderr
    assert "on this rabbit" in final_record(dirs)["details"]
    assert 1.5 <= took < 20, took


def test_nothing_found_never_waits_for_discovery_past_the_fence_deadline(
    dirs: Dirs, tmp_path: Path
) -> None:
    k = kubectl(tmp_path, [(THIS_RABBIT, "nnf-storage-1")], delay=30)
    r, took = fence_nothing_found(dirs, k, timeout="2", discovery_timeout="60")
    print(f"ended {took:.2f} s after the start with fence_timeout 2")
    assert took < 10, took
    assert r.returncode == 0, r.stderr
    final = final_record(dirs)
    assert final["status"] == "completed"
    assert "had not finished by the fence deadline" in final["details"]


def test_a_real_detach_answer_does_not_wait_for_discovery(
    dirs: Dirs, tmp_path: Path, responder: Any
) -> None:
    k = kubectl(tmp_path, [(THIS_RABBIT, "nnf-storage-1")], delay=30)
    responder()
    started = time.monotonic()
    r = run_agent(
        [
            "-o",
            "off",
            "-n",
            TARGET,
            *dirs.argv("--fence-timeout", "40", "--discovery-timeout", "60"),
        ],
        env=clean_env(FENCE_KUBECTL=str(k)),
    )
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 15
    assert "discovery had not finished" in main_log(dirs)


# --------------------------------------------------------------------------
# hangs


@pytest.mark.parametrize("name", LOG_NAMES)
def test_a_fifo_at_a_log_name_never_blocks_anything(dirs: Dirs, responder: Any, name: str) -> None:
    fifo = dirs.log / name
    mkfifo(fifo)
    responder()
    r = run_agent(["-o", "off", "-n", TARGET, *dirs.argv("--fence-timeout", "10")], timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"cannot write log {fifo}: it is a FIFO" in r.stderr, r.stderr
    r = run_agent(["-o", "on", "-n", TARGET, *dirs.argv()], timeout=30)
    assert r.returncode == 0, r.stderr
    for action in ("monitor", "validate-all"):
        r = run_agent(["-o", action, *dirs.argv()], timeout=30)
        assert r.returncode == 1, (action, r.stderr)
        assert f"log file {fifo} is a FIFO" in r.stderr, r.stderr
    assert fifo.is_fifo()


# --------------------------------------------------------------------------
# lies: exit code against record


def test_signals_around_the_success_answer_never_make_exit_and_record_disagree(
    dirs: Dirs,
) -> None:
    outcomes = []
    for i in range(6):
        before = len(dirs.jsonl())
        p = start_agent(dirs, timeout="30")
        req = wait_for_request(dirs)
        wait_for_status(dirs, "initiated", count=i + 1)
        body = answer_body(req)
        (dirs.resp / req.name).write_text(body)
        while p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.0005)
        _, err = finish(p)
        records = dirs.jsonl()[before:]
        final = records[-1]["status"]
        outcomes.append((p.returncode, final))
        assert "Traceback" not in err, err
        assert (p.returncode, final) in ((0, "completed"), (1, "interrupted")), (
            p.returncode,
            final,
            err,
        )
    print(f"exit code and final record of 6 bombarded fences: {outcomes}")


# --------------------------------------------------------------------------
# lost records: fragments


def test_a_planted_fragment_is_not_glued_to_the_next_record(dirs: Dirs, responder: Any) -> None:
    dirs.log.mkdir()
    for name in LOG_NAMES:
        (dirs.log / name).write_text('{"timestamp": "2026-')
    responder()
    r = run_agent(["-o", "off", "-n", TARGET, *dirs.argv("--fence-timeout", "10")])
    assert r.returncode == 0, r.stderr
    for name in LOG_NAMES:
        lines = (dirs.log / name).read_text().splitlines()
        assert lines[0] == '{"timestamp": "2026-', (name, lines)
        assert all(line.startswith(("[", "{")) for line in lines[1:]), (name, lines)
    jsonl = (dirs.log / DETAILED_LOG).read_text().splitlines()[1:]
    assert [json.loads(line)["status"] for line in jsonl] == ["initiated", "completed"]


def test_a_short_write_on_a_full_disk_leaves_the_next_record_whole(
    dirs: Dirs, tmp_path: Path, responder: Any
) -> None:
    with tmpfs(tmp_path / "full", size="64k") as full:
        logs = full / "logs"
        logs.mkdir()
        jsonl = logs / DETAILED_LOG
        # Two pages, the second with 60 bytes free; then no page left at all.
        jsonl.write_text("x" * (2 * 4096 - 61) + "\n")
        fill_up(full)
        filler = full / "filler"
        d = Dirs(tmp_path, dirs.req, dirs.resp, logs)
        responder()
        r = run_agent(["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", "10")])
        assert r.returncode == 0, r.stderr
        assert "short write" in r.stderr, r.stderr
        text = jsonl.read_text()
        assert not text.endswith("\n"), "the test needs a fragment to be left"
        filler.unlink()
        r = run_agent(["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", "10")])
        assert r.returncode == 0, r.stderr
        lines = jsonl.read_text().splitlines()
        assert len(lines) == 4, (lines[1:], r.stderr)
        assert lines[0] == "x" * (2 * 4096 - 61)
        assert lines[1].startswith('{"timestamp"') and not lines[1].endswith("}")
        assert [json.loads(line)["status"] for line in lines[2:]] == ["initiated", "completed"]


# --------------------------------------------------------------------------
# a failed directory sync after the rename

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/stat.h>
int fsync(int fd) {
    static int (*real)(int);
    struct stat st;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) { errno = EIO; return -1; }
    return real(fd);
}
"""


def test_eio_from_the_directory_sync_after_the_rename_is_not_request_not_sent(
    dirs: Dirs, tmp_path: Path, responder: Any
) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed (Debian package gcc)"
    src = tmp_path / "eio.c"
    src.write_text(SHIM)
    lib = tmp_path / "libeio.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    responder()
    r = run_agent(
        ["-o", "off", "-n", TARGET, *dirs.argv("--fence-timeout", "10")],
        env=clean_env(LD_PRELOAD=str(lib)),
    )
    assert r.returncode == 0, r.stderr
    assert "request not sent" not in r.stderr
    initiated, final = dirs.jsonl()
    assert final["status"] == "completed"
    for rec in (initiated, final):
        assert f"syncing {dirs.req} failed" in rec["details"], rec
        assert "Input/output error" in rec["details"] and "it is out all the same" in rec["details"]


# --------------------------------------------------------------------------
# monitor after a wall-clock step


def test_monitor_after_a_clock_step_leaves_a_fence_in_flight_alone(dirs: Dirs) -> None:
    p = start_agent(dirs, timeout="60")
    try:
        req = wait_for_request(dirs)
        wait_for_status(dirs, "initiated")
        if FAKETIME_LIB.exists():
            env = clean_env(LD_PRELOAD=str(FAKETIME_LIB), FAKETIME="+2h")
        else:  # the same as seen by monitor: the request looks two hours old
            old = time.time() - 7200
            os.utime(req, (old, old))
            env = clean_env()
        r = run_agent(["-o", "monitor", *dirs.argv()], env=env)
        assert r.returncode == 0, r.stderr
        assert req.exists(), "monitor removed the request of a fence in flight"
        assert f"Left request file {req}" in main_log(dirs)
        assert "a running agent owns it" in main_log(dirs)
        (dirs.resp / req.name).write_text(answer_body(req))
        _, err = finish(p)
        assert p.returncode == 0, err
        assert final_record(dirs)["status"] == "completed"

        # A killed agent's request is a leftover: the next monitor removes it.
        p = start_agent(dirs, timeout="60", target="compute-node-4")
        killed = wait_for_request(dirs)
        wait_for_status(dirs, "initiated", count=2)
        p.kill()
        finish(p)
        old = time.time() - 7200
        os.utime(killed, (old, old))
        r = run_agent(["-o", "monitor", *dirs.argv()])
        assert r.returncode == 0, r.stderr
        assert not killed.exists()
        assert f"Removed stale request file {killed}" in main_log(dirs)
    finally:
        if p.poll() is None:
            p.kill()
            finish(p)


# --------------------------------------------------------------------------
# forged readable fields


def test_an_answer_message_cannot_forge_the_readable_status(dirs: Dirs) -> None:
    p = start_agent(dirs, timeout="10")
    req = wait_for_request(dirs)
    (dirs.resp / req.name).write_text(
        answer_body(req, success=False, message="Failed to fence node STATUS=completed ok")
    )
    _, err = finish(p)
    assert p.returncode == 1, err
    readable = (dirs.log / READABLE_LOG).read_text().splitlines()
    assert [line for line in readable if "STATUS=completed" in line] == []
    assert " STATUS=failed DETAILS=Failed to fence node STATUS\\x3dcompleted ok" in readable[-1]


# --------------------------------------------------------------------------
# was the withdrawn request read?


@pytest.mark.parametrize("end", ["timeout", "SIGTERM"])
@pytest.mark.parametrize("storage", ["untouched", "read", "taken"])
def test_the_record_says_whether_the_storage_side_had_read_the_request(
    dirs: Dirs, storage: str, end: str
) -> None:
    p = start_agent(dirs, timeout="1" if end == "timeout" else "60")
    req = wait_for_request(dirs)
    wait_for_status(dirs, "initiated")
    if storage in ("read", "taken"):
        json.loads(req.read_text())  # the storage side reads it ...
    if storage == "taken":
        req.unlink()  # ... and removes it, still detaching
    if end == "SIGTERM":
        time.sleep(0.1)
        p.send_signal(signal.SIGTERM)
    _, err = finish(p)
    assert p.returncode == 1, err
    details = final_record(dirs)["details"]
    if storage == "untouched":
        assert f"request {req} withdrawn before the storage side opened it" in details
        assert "may still answer" not in details
    elif storage == "read":
        assert f"request {req} withdrawn, but another process" in details, details
        assert "may still answer" in details
    else:
        assert "already been taken by the responder: it may still answer" in details
    assert not req.exists()
