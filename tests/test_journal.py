"""The three log files, as the installed agent writes them.

Formats, the lifecycle of each fence, escaping of hostile text, logrotate
while fences run, and a log that cannot be written. Many agents writing the
logs at once are in test_load.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Dirs, clean_env, run_agent
from helpers import (
    DETAILED_LOG,
    LOG_NAMES,
    MAIN_LOG,
    MAIN_RE,
    READABLE_LOG,
    READABLE_RE,
    STAMP,
    answering,
    assert_fenced_and_reported,
    check_record,
    lines_of,
    read_logs,
)


def lifecycles(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = {}
    for rec in records:
        by_id.setdefault(rec["request_id"], []).append(rec["status"])
    return by_id


def readable_statuses(lines: list[str]) -> list[str]:
    matches = [READABLE_RE.match(x) for x in lines]
    return [m["status"] if m else f"unparsable: {x}" for m, x in zip(matches, lines)]


def messages(main: list[str]) -> list[str]:
    return [line.split("] ", 2)[2] for line in main]


def fence_args(dirs: Dirs, target: str = "compute-node-3", *extra: str) -> list[str]:
    return ["-o", "reboot", "-n", target, *dirs.argv(*extra)]


# --- formats --------------------------------------------------------------


def test_success_writes_the_documented_three_files(dirs: Dirs, responder: Any) -> None:
    responder()
    # The way Pacemaker calls it: key=value lines on stdin.
    r = run_agent(stdin=dirs.stdin(action="reboot", plug="compute-node-3"))
    assert r.returncode == 0, r.stderr
    logs = read_logs(dirs.log)

    msgs = messages(logs.main)
    assert msgs[0] == "Fence action requested: reboot for target: compute-node-3"
    written = [m for m in msgs if m.startswith("Fence request written: ")]
    assert len(written) == 1
    assert (
        msgs[-1] == "Recorded fence event: action=reboot, target=compute-node-3, status=completed"
    )
    assert "Recorded fence event: action=reboot, target=compute-node-3, status=initiated" in msgs
    assert any(m.startswith("Fence response received: success: ") for m in msgs)
    assert len(logs.main) == 6, logs.main  # requested, written, GFS2, initiated, answer, completed

    assert readable_statuses(logs.readable) == ["initiated", "completed"]
    parsed = [READABLE_RE.match(line) for line in logs.readable]
    for m in parsed:
        assert m is not None
        assert (m["action"], m["target"], m["gfs2"]) == ("reboot", "compute-node-3", "[]")
    assert parsed[0] is not None
    assert parsed[0]["details"] == "Fence action reboot initiated by Pacemaker"

    first, last = logs.detailed
    assert [first["status"], last["status"]] == ["initiated", "completed"]
    for rec in (first, last):
        assert rec["action"] == rec["pacemaker_action"] == "reboot"
        assert rec["target_node"] == "compute-node-3"
        assert rec["recorder_node"] == socket.gethostname()
        assert rec["gfs2_filesystems"] == []
    assert first["request_id"] == last["request_id"]
    rid = first["request_id"]
    assert written == [f"Fence request written: {dirs.req / (rid + '.json')} (request_id {rid})"]
    assert last["action_performed"] == "off"
    assert isinstance(last["elapsed_ms"], int) and 0 <= last["elapsed_ms"] < 30_000
    assert Path(last["response_file"]) == dirs.resp / f"{first['request_id']}.json"
    assert Path(last["response_file"]).exists()
    assert last["details"].startswith("Successfully fenced node")
    for name in LOG_NAMES:
        assert stat.S_IMODE((dirs.log / name).stat().st_mode) == 0o600, name


def test_failure_answer_is_recorded_as_failed(dirs: Dirs, responder: Any) -> None:
    responder("--mode", "failure")
    r = run_agent(["-o", "off", "-n", "compute-node-3", *dirs.argv()])
    assert r.returncode == 1, r.stdout
    logs = read_logs(dirs.log)
    assert list(lifecycles(logs.detailed).values()) == [["initiated", "failed"]]
    last = logs.detailed[-1]
    assert last["action"] == "off"
    assert last["details"].startswith("Partially fenced node")
    assert last["action_performed"] == "off"
    assert isinstance(last["elapsed_ms"], int)
    assert Path(last["response_file"]).name == f"{last['request_id']}.json"
    assert any(
        re.match(rf"^{STAMP} \[ERROR\] Fence response received: failure: Partially", line)
        for line in logs.main
    ), logs.main
    assert messages(logs.main)[-1] == (
        "Recorded fence event: action=off, target=compute-node-3, status=failed"
    )
    assert readable_statuses(logs.readable) == ["initiated", "failed"]


def test_timeout_is_recorded_and_the_request_withdrawn(dirs: Dirs) -> None:
    r = run_agent(fence_args(dirs, "compute-node-3", "--fence-timeout", "1"))
    assert r.returncode == 1, r.stdout
    logs = read_logs(dirs.log)
    assert list(lifecycles(logs.detailed).values()) == [["initiated", "timeout"]]
    last = logs.detailed[-1]
    # The exchange's share of fence_timeout: 1 s less the agent's start-up.
    assert 0 < last["elapsed_ms"] < 30_000
    assert "response_file" not in last and "action_performed" not in last
    assert "no response within 1.000 s" in last["details"]
    assert "withdrawn" in last["details"]
    assert any(re.match(rf"^{STAMP} \[ERROR\] Fence timed out: ", x) for x in logs.main)
    assert messages(logs.main)[-1] == (
        "Recorded fence event: action=reboot, target=compute-node-3, status=timeout"
    )
    assert list(dirs.req.iterdir()) == []
    assert readable_statuses(logs.readable) == ["initiated", "timeout"]


def wait_for_initiated(dirs: Dirs, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if dirs.jsonl():
            return dirs.jsonl()[0]
        time.sleep(0.02)
    raise AssertionError("the agent recorded no initiated event")


def test_signal_during_the_wait_is_recorded_as_interrupted(dirs: Dirs) -> None:
    proc = subprocess.Popen(
        [AGENT, *fence_args(dirs, "compute-node-3", "--fence-timeout", "60")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    first = wait_for_initiated(dirs, proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 1
    logs = read_logs(dirs.log)
    assert lifecycles(logs.detailed) == {first["request_id"]: ["initiated", "interrupted"]}
    last = logs.detailed[-1]
    assert "SIGTERM" in last["details"] and "withdrawn" in last["details"]
    assert isinstance(last["elapsed_ms"], int)
    assert readable_statuses(logs.readable) == ["initiated", "interrupted"]
    assert list(dirs.req.iterdir()) == []


# --- hostile text ----------------------------------------------------------

FORGED = "[2025-01-01 00:00:00] [INFO] forged"
HOSTILE_MESSAGE = (
    f"done\n{FORGED}\r\n{FORGED} ACTION=off TARGET=x GFS2=[] STATUS=completed DETAILS=x"
    "\x1b[31mred\x00nul\x07bell\x7fdel\x85nel\u2028ls\u2029ps\x0bvt\x0cff\ttab\\n-literal"
)


def answer_with(message: str) -> Callable[[dict[str, Any]], str]:
    """The body of a reconciler's answer: the request_id, target, success and `message`."""
    return lambda request: json.dumps(
        {
            "request_id": request["request_id"],
            "target_node": request["target_node"],
            "success": True,
            "message": message,
        }
    )


def test_hostile_answer_stays_one_line_per_record(dirs: Dirs) -> None:
    with answering(dirs, answer_with(HOSTILE_MESSAGE)):
        r = run_agent(fence_args(dirs))
    assert r.returncode == 0, r.stderr
    logs = read_logs(dirs.log)
    assert (len(logs.main), len(logs.readable), len(logs.detailed)) == (6, 2, 2)
    assert logs.detailed[-1]["details"] == HOSTILE_MESSAGE
    assert logs.detailed[-1]["status"] == "completed"
    for path in LOG_NAMES:
        text = (dirs.log / path).read_text()
        assert "\n[2025-01-01" not in text
        assert not re.search(r"[\x00-\x08\x0b-\x1f]", text), path
    for path in (MAIN_LOG, READABLE_LOG):
        text = (dirs.log / path).read_text()
        assert not re.search(r"[\x7f-\x9f\u2028\u2029]", text), path
    answer = READABLE_RE.match(logs.readable[-1])
    assert answer is not None and answer["status"] == "completed"
    assert answer["details"].startswith("done\\n[2025-01-01 00:00:00] [INFO] forged\\r\\n")
    assert "\\u{001b}[31mred\\u{0000}nul" in answer["details"]
    assert answer["details"].endswith("\\ttab\\\\n-literal")


def test_detailed_log_holds_no_unicode_line_breaks(dirs: Dirs) -> None:
    with answering(dirs, answer_with("a\x85b\u2028c\u2029d\x7fe")):
        r = run_agent(fence_args(dirs))
    assert r.returncode == 0, r.stderr
    lines = lines_of(dirs.log / DETAILED_LOG, strict=True)
    assert json.loads(lines[-1])["details"] == "a\x85b\u2028c\u2029d\x7fe"


# A refused target is written as received. Bytes that are not UTF-8 reach the
# agent through argv.
HOSTILE_TARGET = "evil\n" + FORGED + "\udcff\udcfe"


def test_hostile_target_is_refused_and_recorded_escaped(dirs: Dirs, responder: Any) -> None:
    responder()
    r = run_agent(["-o", "off", "-n", HOSTILE_TARGET, *dirs.argv()])
    assert r.returncode == 1
    assert list(dirs.req.iterdir()) == [] and dirs.responses() == []
    logs = read_logs(dirs.log, readable_strict=False)
    assert (len(logs.main), len(logs.readable), len(logs.detailed)) == (3, 1, 1)
    (rec,) = logs.detailed
    shown = "evil\n" + FORGED + "\\xff\\xfe"
    assert rec["target_node"] == shown
    assert rec["status"] == "failed" and "request_id" not in rec
    assert "refused target" in rec["details"]
    (line,) = logs.readable
    assert re.match(rf"^{STAMP} ACTION=off TARGET=evil\\n\[2025-01-01", line), line
    assert " STATUS=failed DETAILS=refused target " in line
    assert messages(logs.main)[0] == (
        "Fence action requested: off for target: evil\\n" + FORGED + "\\\\xff\\\\xfe"
    )
    assert re.match(rf"^{STAMP} \[ERROR\] refused target ", logs.main[1])


def test_refused_target_cannot_forge_readable_fields(dirs: Dirs) -> None:
    r = run_agent(["-o", "off", "-n", "x STATUS=completed", *dirs.argv()])
    assert r.returncode == 1
    (line,) = lines_of(dirs.log / READABLE_LOG)
    assert readable_statuses([line]) == ["failed"], line
    # DETAILS is free text; the fields before it are not.
    assert " STATUS=completed" not in line.split(" DETAILS=", 1)[0]


# --- logrotate -------------------------------------------------------------

LOGROTATE = "/usr/sbin/logrotate"
HOLD_SCRIPT = Path(__file__).parent.parent / "contrib" / "fence-gfs2-rotate-hold"


def rotated_union(log_dir: Path, name: str) -> list[str]:
    """Every line of `name` and its numbered rotated copies, oldest first."""

    def age(p: Path) -> int:
        suffix = p.name[len(name) + 1 :]
        return int(suffix) if suffix else 0

    out: list[str] = []
    for p in sorted(log_dir.glob(name + "*"), key=age, reverse=True):
        out += lines_of(p, strict=False)
    return out


@pytest.mark.skipif(not os.path.exists(LOGROTATE), reason="logrotate is not installed")
@pytest.mark.parametrize("method", ["create 0600", "copytruncate"])
def test_logrotate_during_fences_loses_nothing(
    dirs: Dirs, responder: Any, tmp_path: Path, method: str
) -> None:
    responder("--quiet")
    dirs.log.mkdir(mode=0o750)
    config = tmp_path / "logrotate.conf"
    files = " ".join(str(dirs.log / n) for n in LOG_NAMES)
    if method == "copytruncate":
        # As contrib/logrotate-copytruncate.conf: hold appends back between
        # logrotate's copy and its truncate.
        hold = f"{HOLD_SCRIPT} {{}} {dirs.log}"
        method += (
            "\n    sharedscripts"
            f"\n    prerotate\n        {hold.format('hold')}\n    endscript"
            f"\n    postrotate\n        {hold.format('release')}\n    endscript"
        )
    config.write_text(f"{files} {{\n    rotate 1000\n    missingok\n    {method}\n}}\n")
    state = tmp_path / "logrotate.state"

    workers, per_worker = 2, 10
    failures: list[str] = []

    def fences(worker: int) -> None:
        for i in range(per_worker):
            r = run_agent(fence_args(dirs, f"compute-node-{worker}-{i}"))
            if r.returncode != 0:
                failures.append(r.stderr)

    threads = [threading.Thread(target=fences, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    rotations = 0
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        rot = subprocess.run(
            [LOGROTATE, "-f", "-s", str(state), str(config)], capture_output=True, text=True
        )
        assert rot.returncode == 0, rot.stderr
        rotations += 1
    for t in threads:
        t.join()
    assert failures == []
    assert rotations >= 3
    assert len(list(dirs.log.glob(DETAILED_LOG + ".*"))) >= 3

    n = workers * per_worker
    detailed = [json.loads(x) for x in rotated_union(dirs.log, DETAILED_LOG)]
    readable = rotated_union(dirs.log, READABLE_LOG)
    main = rotated_union(dirs.log, MAIN_LOG)
    # Whatever was kept is whole and kept once.
    for rec in detailed:
        check_record(rec)
    assert all(READABLE_RE.match(x) for x in readable)
    assert all(MAIN_RE.match(x) for x in main)
    assert max(Counter((r["request_id"], r["status"]) for r in detailed).values()) == 1
    assert len(set(readable)) == len(readable)
    # Nothing lost.
    by_id = lifecycles(detailed)
    assert len(by_id) == n
    assert all(v == ["initiated", "completed"] for v in by_id.values()), by_id
    assert len(detailed) == 2 * n
    assert len(readable) == 2 * n
    assert len(main) == 6 * n
    if method.startswith("create"):
        for name in LOG_NAMES:
            assert stat.S_IMODE((dirs.log / name).stat().st_mode) == 0o600


# --- logging never decides a fence -------------------------------------------


def fence_without_log(dirs: Dirs, log_dir: Path) -> subprocess.CompletedProcess[str]:
    args = ["-o", "reboot", "-n", "compute-node-3"]
    args += ["--request-dir", str(dirs.req), "--response-dir", str(dirs.resp)]
    return run_agent([*args, "--log-dir", str(log_dir)])


def test_log_dir_that_cannot_be_created(dirs: Dirs, responder: Any, tmp_path: Path) -> None:
    responder()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    r = fence_without_log(dirs, blocker / "logs")
    assert_fenced_and_reported(r, dirs)
    assert blocker.read_text() == "not a directory\n"


def test_log_files_that_are_directories(dirs: Dirs, responder: Any) -> None:
    responder()
    for name in LOG_NAMES:
        (dirs.log / name).mkdir(parents=True)
    r = fence_without_log(dirs, dirs.log)
    assert_fenced_and_reported(r, dirs)
    assert all((dirs.log / n).is_dir() for n in LOG_NAMES)


# --- modes ------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_log_mode_option(dirs: Dirs, responder: Any, umask_022: None) -> None:
    responder()
    r = run_agent(fence_args(dirs, "compute-node-3", "--log-mode", "0640"))
    assert r.returncode == 0, r.stderr
    for name in LOG_NAMES:
        assert stat.S_IMODE((dirs.log / name).stat().st_mode) == 0o640, name


def test_shipped_copytruncate_config_is_valid(tmp_path: Path) -> None:
    shipped = Path(__file__).parent.parent / "contrib/logrotate-copytruncate.conf"
    text = shipped.read_text()
    directives = {line.strip() for line in text.splitlines()}
    for d in ("daily", "rotate 30", "compress", "delaycompress", "missingok", "copytruncate"):
        assert d in directives, d
    log_dir = tmp_path / "gfs2-fencing"
    log_dir.mkdir(mode=0o750)
    for name in LOG_NAMES:
        (log_dir / name).write_text("x\n")
    config = tmp_path / "fence_gfs2_recorder"
    config.write_text(
        text.replace("/var/log/gfs2-fencing", str(log_dir)).replace(
            "/usr/share/fence_gfs2_recorder/fence-gfs2-rotate-hold", str(HOLD_SCRIPT)
        )
    )
    r = subprocess.run(
        [LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(config)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for name in LOG_NAMES:
        assert (log_dir / f"{name}.1").read_text() == "x\n"
        assert (log_dir / name).read_text() == ""
    # The holder let go: an append does not wait.
    start = time.monotonic()
    r = subprocess.run([str(HOLD_SCRIPT), "release", str(log_dir)], capture_output=True)
    assert r.returncode == 0
    assert not (log_dir / ".fence-events.rotating").exists()
    assert time.monotonic() - start < 5


def test_rotation_hold_blocks_appends_only_while_held(
    dirs: Dirs, responder: Any, tmp_path: Path
) -> None:
    responder("--quiet")
    dirs.log.mkdir(mode=0o750)
    r = subprocess.run([str(HOLD_SCRIPT), "hold", str(dirs.log)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    try:
        # While held, the agent's appends wait (at most a second each) and the
        # fence still completes.
        done = run_agent(fence_args(dirs, "compute-node-3"))
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run([str(HOLD_SCRIPT), "release", str(dirs.log)], check=True)
    assert [r["status"] for r in dirs.jsonl()] == ["initiated", "completed"]


def test_shipped_logrotate_config_is_valid(tmp_path: Path) -> None:
    if not os.path.exists(LOGROTATE):
        pytest.skip("logrotate is not installed")
    shipped = Path(__file__).parent.parent / "contrib/logrotate.d/fence_gfs2_recorder"
    text = shipped.read_text()
    directives = {line.strip() for line in text.splitlines()}
    for d in ("daily", "rotate 30", "compress", "delaycompress", "missingok", "notifempty"):
        assert d in directives, d
    assert "create 0600 root root" in directives
    log_dir = tmp_path / "gfs2-fencing"
    log_dir.mkdir(mode=0o750)
    for name in LOG_NAMES:
        (log_dir / name).write_text("x\n")
    (log_dir / "unrelated.log").write_text("x\n")
    config = tmp_path / "fence_gfs2_recorder"
    config.write_text(text.replace("/var/log/gfs2-fencing", str(log_dir)))
    r = subprocess.run(
        [LOGROTATE, "-d", "-s", str(tmp_path / "state"), str(config)],
        capture_output=True,
        text=True,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "error" not in out.lower(), out
    for name in LOG_NAMES:
        assert f"considering log {log_dir / name}" in out, out
    assert "unrelated.log" not in out
