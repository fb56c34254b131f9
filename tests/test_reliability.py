"""Reliability and security, case by case: faults of the responder, the
signals Pacemaker sends, broken or hostile directories, clocks and inotify,
and hostile targets, responses and settings.

Most cases drive the installed agent as a process; a few call the native
module in-process where argv or stdin cannot carry the input (NUL, newline).
docs/RELIABILITY.md lists every case with its expected behaviour.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import AGENT, Dirs, clean_env, run_agent
from fence_gfs2_recorder import _native
from helpers import (
    DETAILED_LOG,
    FAKETIME_LIB,
    LOG_NAMES,
    MAIN_LOG,
    READABLE_LOG,
    TARGET,
    answer_body,
    assert_fenced_and_reported,
    fill_up,
    final_record,
    finish,
    main_log,
    remount_read_only,
    start_agent,
    statuses,
    tmpfs,
    wait_for_request,
    wait_for_status,
)

# --------------------------------------------------------------------------
# helpers


def dot_temps(*dirs: Path) -> list[Path]:
    return [p for d in dirs if d.is_dir() for p in d.iterdir() if p.name.startswith(".")]


def tree(root: Path) -> set[str]:
    """Every path under root (files, links, directories), relative."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def native_settings(d: Dirs, **extra: str) -> _native.Settings:
    return _native.resolve_settings(
        request_dir=str(d.req),
        response_dir=str(d.resp),
        log_dir=str(d.log),
        kubectl_path="",
        **{"fence_timeout": "1", **extra},
    )


# --------------------------------------------------------------------------
# faults: the responder


def test_partial_response_then_the_responder_dies(dirs: Dirs) -> None:
    """Half an answer and nothing more: a timeout that says why, never success."""
    started = time.monotonic()
    p = start_agent(dirs, timeout="2")
    req = wait_for_request(dirs)
    half = answer_body(req)[:30]
    (dirs.resp / req.name).write_text(half)
    _, err = finish(p)
    took = time.monotonic() - started
    assert p.returncode == 1, err
    assert "no answer" in err
    assert 2.0 <= took < 30, took
    final = final_record(dirs)
    assert final["status"] == "timeout"
    assert "unreadable" in final["details"], final["details"]
    # The exchange's share of fence_timeout (2 s less the agent's start-up).
    assert final["elapsed_ms"] >= 1000
    assert statuses(dirs) == ["initiated", "timeout"]
    assert not req.exists(), "the unanswered request is withdrawn"
    assert (dirs.resp / req.name).read_text() == half, "the response is never touched"


@pytest.mark.parametrize("completion", ["rewrite", "rename"])
def test_partial_response_completed_before_the_deadline_succeeds(
    dirs: Dirs, completion: str
) -> None:
    p = start_agent(dirs, timeout="10")
    req = wait_for_request(dirs)
    body = answer_body(req)
    path = dirs.resp / req.name
    path.write_text(body[: len(body) // 2])
    time.sleep(0.5)
    if completion == "rewrite":
        with path.open("w") as f:
            f.write(body)
    else:
        tmp = dirs.resp / f".{req.name}.tmp"
        tmp.write_text(body)
        os.replace(tmp, path)
    out, err = finish(p)
    assert p.returncode == 0, err
    assert out.startswith(f"Success: {TARGET} fenced (off)")
    assert statuses(dirs) == ["initiated", "completed"]
    assert final_record(dirs)["response_file"] == str(path)


# --------------------------------------------------------------------------
# faults: the attempt ends without an answer


@pytest.mark.parametrize("taken", [False, True], ids=["untaken", "taken-by-responder"])
def test_timeout_withdraws_an_untaken_request_and_leaves_no_temp(dirs: Dirs, taken: bool) -> None:
    p = start_agent(dirs, timeout="1")
    req = wait_for_request(dirs)
    if taken:
        req.unlink()  # the responder read it and is working on it
    _, err = finish(p)
    assert p.returncode == 1, err
    final = final_record(dirs)
    assert final["status"] == "timeout"
    if taken:
        assert "already been taken by the responder" in final["details"]
    else:
        assert f"request {req} withdrawn" in final["details"]
    assert list(dirs.req.iterdir()) == []
    assert dot_temps(dirs.req, dirs.resp) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_the_wait_within_200_ms(dirs: Dirs, sig: signal.Signals) -> None:
    p = start_agent(dirs, timeout="60")
    req = wait_for_request(dirs)
    wait_for_status(dirs, "initiated")
    time.sleep(0.2)  # well inside the wait
    sent = time.monotonic()
    p.send_signal(sig)
    p.wait(timeout=30)
    took = time.monotonic() - sent
    _, err = finish(p)
    print(f"{sig.name}: {took * 1000:.1f} ms from kill to exit")
    assert p.returncode == 1, err
    assert took < 1.0, f"{sig.name} took {took:.3f} s"
    final = final_record(dirs)
    assert final["status"] == "interrupted"
    assert sig.name in final["details"]
    assert f"request {req} withdrawn" in final["details"]
    assert final["elapsed_ms"] < 60_000
    assert list(dirs.req.iterdir()) == []
    assert dot_temps(dirs.req, dirs.resp) == []


def test_sigkilled_leftovers_are_removed_by_monitor_but_attempts_in_flight_are_not(
    dirs: Dirs,
) -> None:
    p = start_agent(dirs, timeout="60")
    req = wait_for_request(dirs)
    wait_for_status(dirs, "initiated")
    p.kill()
    finish(p)
    assert p.returncode == -signal.SIGKILL
    # A SIGKILL leaves at most the request (and, mid-write, its dot-temp).
    assert [x.name for x in dirs.req.iterdir()] == [req.name]
    assert statuses(dirs) == ["initiated"], "the trace a killed agent leaves"
    tmp = dirs.req / f".{req.name}.tmp"
    tmp.write_text('{"request_id": ')
    unrelated = dirs.req / "notes.txt"
    unrelated.write_text("not ours")
    old = time.time() - 60
    for x in (req, tmp, unrelated):
        os.utime(x, (old, old))

    live = start_agent(dirs, timeout="60", target="compute-node-4")
    try:
        live_req = wait_for_request(dirs, ignore={req.name})
        r = run_agent(["-o", "monitor", *dirs.argv("--fence-timeout", "1", "--stale-age", "2")])
        assert r.returncode == 0, r.stderr
        assert not req.exists() and not tmp.exists()
        assert unrelated.exists(), "only request and dot-temp names are cleaned"
        assert live_req.exists(), "a young request of an attempt in flight is never touched"
        log = main_log(dirs)
        assert f"Removed stale request file {req}" in log
        assert f"Removed stale request file {tmp}" in log
        assert str(live_req) not in log.split("Removed stale", 1)[1]
        # The attempt in flight goes on and gets its answer.
        (dirs.resp / live_req.name).write_text(answer_body(live_req))
        _, err = finish(live)
        assert live.returncode == 0, err
    finally:
        if live.poll() is None:
            live.kill()
            finish(live)


# --------------------------------------------------------------------------
# faults: the directories


@pytest.mark.parametrize("which", ["request", "response"])
@pytest.mark.parametrize("state", ["missing", "a-file"])
def test_unusable_directory_is_named_and_fails_the_fence(
    tmp_path: Path, which: str, state: str
) -> None:
    d = Dirs(tmp_path, tmp_path / "req", tmp_path / "resp", tmp_path / "log")
    d.req.mkdir()
    d.resp.mkdir()
    bad = d.req if which == "request" else d.resp
    bad.rmdir()
    if state == "a-file":
        bad.write_text("not a directory")
    r = run_agent(["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    assert str(bad) in r.stderr, r.stderr
    assert "request not sent" in r.stderr
    [record] = d.jsonl()
    assert record["status"] == "failed" and str(bad) in record["details"]
    other = d.resp if which == "request" else d.req
    assert list(other.iterdir()) == [], "nothing is written anywhere"
    # status cannot tell when the response directory is unusable.
    r = run_agent(["-o", "status", "-n", TARGET, *d.argv()])
    if which == "response":
        assert r.returncode == 1 and str(bad) in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
    # monitor creates a missing directory, and reports one that is a file.
    r = run_agent(["-o", "monitor", *d.argv()])
    if state == "missing":
        assert r.returncode == 0, r.stderr
        assert bad.is_dir()
    else:
        # The message names the path ("cannot create directory ...: File exists").
        assert r.returncode == 1
        assert str(bad) in r.stderr, r.stderr


def test_response_directory_replaced_by_a_file_during_the_wait(dirs: Dirs) -> None:
    p = start_agent(dirs, timeout="2")
    wait_for_status(dirs, "initiated")
    shutil.rmtree(dirs.resp)
    dirs.resp.write_text("a file now")
    _, err = finish(p)
    assert p.returncode == 1, err
    final = final_record(dirs)
    assert final["status"] == "timeout"
    assert "cannot read response" in final["details"] and str(dirs.resp) in final["details"]
    r = run_agent(["-o", "monitor", *dirs.argv()])
    assert r.returncode == 1 and str(dirs.resp) in r.stderr, r.stderr


def test_read_only_directories(dirs: Dirs, tmp_path: Path, responder: Any) -> None:
    with tmpfs(tmp_path / "ro") as ro:
        req = ro / "requests"
        req.mkdir()
        logs = ro / "logs"
        logs.mkdir()
        remount_read_only(ro)
        d = Dirs(tmp_path, req, dirs.resp, tmp_path / "logs")
        r = run_agent(["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", "2")])
        assert r.returncode == 1
        assert f"cannot write {req}/" in r.stderr and "Read-only file system" in r.stderr
        [record] = d.jsonl()
        assert record["status"] == "failed" and str(req) in record["details"]
        r = run_agent(["-o", "monitor", *d.argv()])
        assert r.returncode == 1
        assert f"directory {req} is not readable and writable" in r.stderr, r.stderr
        assert "Read-only file system" in r.stderr
        r = run_agent(["-o", "validate-all", *d.argv()])
        assert r.returncode == 1 and str(req) in r.stderr

        # A read-only log directory never changes a fence's outcome.
        responder()
        d2 = Dirs(tmp_path, dirs.req, dirs.resp, logs)
        r = run_agent(["-o", "off", "-n", TARGET, *d2.argv("--fence-timeout", "10")])
        assert r.returncode == 0, r.stderr
        assert f"cannot write log {logs}/" in r.stderr and "Read-only file system" in r.stderr
        assert len(dirs.responses()) == 1


@pytest.fixture
def full_requests(tmp_path: Path) -> Iterator[Dirs]:
    """Directories whose request directory is on a full file system."""
    with tmpfs(tmp_path / "full", size="16k") as full:
        req = full / "requests"
        req.mkdir()
        fill_up(full)
        d = Dirs(tmp_path, req, tmp_path / "responses", tmp_path / "logs")
        d.resp.mkdir()
        yield d


def test_full_file_system_fails_the_request_naming_the_path(full_requests: Dirs) -> None:
    d, req = full_requests, full_requests.req
    r = run_agent(["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    assert f"cannot write {req}/" in r.stderr, r.stderr
    assert "No space left on device" in r.stderr
    [record] = d.jsonl()
    assert record["status"] == "failed" and str(req) in record["details"]
    assert list(req.iterdir()) == [], "no request and no dot-temp is left"


def test_full_log_file_system_never_changes_the_outcome(
    dirs: Dirs, tmp_path: Path, responder: Any
) -> None:
    with tmpfs(tmp_path / "full", size="16k") as full:
        logs = full / "logs"
        logs.mkdir()
        fill_up(full)
        d = Dirs(tmp_path, dirs.req, dirs.resp, logs)
        responder()
        r = run_agent(["-o", "off", "-n", TARGET, *d.argv("--fence-timeout", "10")])
        assert_fenced_and_reported(r, d)
        assert "cannot write log" in r.stderr and "No space left on device" in r.stderr


def test_monitor_reports_a_full_request_file_system(full_requests: Dirs) -> None:
    r = run_agent(["-o", "monitor", *full_requests.argv()])
    assert r.returncode == 1
    assert str(full_requests.req) in r.stderr and "full" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# faults: clocks and inotify


def test_wall_clock_jumps_do_not_move_the_deadline(dirs: Dirs, tmp_path: Path) -> None:
    """Realtime jumps two hours forward, then two hours back, during the wait."""
    if not FAKETIME_LIB.exists():
        pytest.skip(f"libfaketime not installed ({FAKETIME_LIB}; Debian package faketime)")
    spec = tmp_path / "faketime.spec"
    spec.write_text("+0\n")
    env = clean_env(
        LD_PRELOAD=str(FAKETIME_LIB),
        FAKETIME_TIMESTAMP_FILE=str(spec),
        FAKETIME_NO_CACHE="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )
    p = start_agent(dirs, timeout="3", env=env)
    wait_for_status(dirs, "initiated")
    seen = time.monotonic()
    spec.write_text("+2h\n")  # a deadline on the wall clock would pass now
    time.sleep(1.0)
    spec.write_text("-2h\n")  # ... and now lie two hours ahead
    _, err = finish(p, within=60)
    took = time.monotonic() - seen
    assert p.returncode == 1, err
    initiated, final = dirs.jsonl()
    assert final["status"] == "timeout"
    # The exchange's share of fence_timeout (3 s less the agent's start-up).
    assert 2000 <= final["elapsed_ms"] < 8000, final
    assert took < 10, took
    # The jump really happened inside the agent: its wall clock went back 2 h.
    stamps = [
        datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00")) for r in (initiated, final)
    ]
    assert (stamps[0] - stamps[1]).total_seconds() > 3600, stamps


def test_forced_polling_finds_an_answer_written_in_place(dirs: Dirs) -> None:
    p = start_agent(dirs, "--force-poll", "yes", "--poll-interval", "0.1", timeout="10")
    req = wait_for_request(dirs)
    body = answer_body(req)
    path = dirs.resp / req.name
    path.write_text(body[:20])
    time.sleep(0.3)
    path.write_text(body)
    _, err = finish(p)
    assert p.returncode == 0, err
    assert statuses(dirs) == ["initiated", "completed"]
    assert "cannot watch" not in main_log(dirs)


def test_watcher_start_failure_falls_back_to_polling(dirs: Dirs, responder: Any) -> None:
    """No inotify instance can be had (limit 0 in a user namespace of our own)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c",
         "echo 0 > /proc/sys/user/max_inotify_instances"],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"cannot lower the inotify limit in a user namespace: {probe.stderr.strip()}")
    responder()
    limited = [
        "unshare",
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        'echo 0 > /proc/sys/user/max_inotify_instances && exec "$@"',
        "sh",
    ]
    p = start_agent(dirs, "--poll-interval", "0.1", timeout="10", prefix=limited)
    _, err = finish(p)
    assert p.returncode == 0, err
    log = main_log(dirs)
    assert f"cannot watch {dirs.resp}" in log, log
    assert "polling every 0.100 s instead" in log
    assert statuses(dirs) == ["initiated", "completed"]


# --------------------------------------------------------------------------
# hostile input: targets


HOSTILE_TARGETS = [
    "..",
    ".",
    "a/b",
    "../../etc/passwd",
    "a\\b",
    "a b",
    "a\tb",
    "$(touch {tmp}/pwned)",
    "`touch {tmp}/pwned`",
    "a;touch {tmp}/pwned",
    "x" * 300,
    "nöde-3",
    "узел",
]


@pytest.mark.parametrize("raw", HOSTILE_TARGETS, ids=lambda t: repr(t)[:40])
def test_hostile_target_on_the_command_line_is_refused(dirs: Dirs, raw: str) -> None:
    target = raw.format(tmp=dirs.root)
    before = tree(dirs.root)
    r = run_agent(["-o", "off", "-n", target, *dirs.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    assert "refused" in r.stderr and "the target node name" in r.stderr, r.stderr
    check_one_escaped_refusal(dirs, before, target)


def run_agent_bytes(argv: list[bytes]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([AGENT.encode(), *argv], capture_output=True, env=clean_env(), timeout=60)


def test_hostile_target_with_invalid_utf8_in_argv_is_refused(dirs: Dirs) -> None:
    before = tree(dirs.root)
    argv = [b"-o", b"off", b"-n", b"node-\xff\xfe"]
    r = run_agent_bytes(argv + [a.encode() for a in dirs.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    check_one_escaped_refusal(dirs, before, "node-\\xff\\xfe", raw_text=False)
    assert "not valid UTF-8" in dirs.jsonl()[0]["details"]


def test_hostile_target_with_a_newline_in_argv_is_refused(dirs: Dirs) -> None:
    before = tree(dirs.root)
    target = "x\n2026-01-01 00:00:00,000 INFO: Success: forged"
    r = run_agent(["-o", "off", "-n", target, *dirs.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    check_one_escaped_refusal(dirs, before, target)


BAD_UTF8 = b"node-\xff\xfe"
FORGING = b"x\n2026-01-01 00:00:00,000 INFO: Success: forged"


@pytest.mark.parametrize(
    ("action", "target", "why"),
    [
        ("off", BAD_UTF8, "not valid UTF-8"),
        ("status", BAD_UTF8, "not valid UTF-8"),
        ("on", BAD_UTF8, "not valid UTF-8"),
        ("off", FORGING, "contains '\\n'"),
        ("status", FORGING, "contains '\\n'"),
        ("on", FORGING, "contains '\\n'"),
    ],
    ids=["off-invalid-utf8", "status-invalid-utf8", "on-invalid-utf8", "off-newline",
         "status-newline", "on-newline"],
)  # fmt: skip
def test_hostile_target_gives_one_clear_line_on_stderr(
    dirs: Dirs, action: str, target: bytes, why: str
) -> None:
    argv = [b"-o", action.encode(), b"-n", target]
    r = run_agent_bytes(argv + [a.encode() for a in dirs.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    err = r.stderr.decode("utf-8", "backslashreplace")
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert "forged" not in err or "\\n2026" in err, err
    assert why in err, err
    if action != "status":
        [record] = dirs.jsonl()
        assert record["status"] == "failed" and why in record["details"], record


def test_hostile_target_with_nul_on_stdin_is_refused(dirs: Dirs) -> None:
    before = tree(dirs.root)
    r = run_agent(stdin=dirs.stdin(action="off", port="a\0b", fence_timeout="2"))
    assert r.returncode == 1
    assert "refused" in r.stderr and "\\0" in r.stderr, r.stderr
    check_one_escaped_refusal(dirs, before, "a\0b")


def test_empty_target_is_refused_with_one_record(dirs: Dirs) -> None:
    before = tree(dirs.root)
    r = run_agent(["-o", "off", "-n", "", *dirs.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    assert "refused" in r.stderr and "the target node name is empty" in r.stderr, r.stderr
    check_one_escaped_refusal(dirs, before, "")


@pytest.mark.parametrize(
    "raw",
    [b"a\nb", b"a\0b", b"evil\n[2025-01-01 00:00:00] [INFO] forged", b"a\rb", b"\x1b[31mred"],
    ids=["newline", "nul", "forged-line", "cr", "escape"],
)
def test_hostile_target_in_process_is_refused_and_recorded_escaped(dirs: Dirs, raw: bytes) -> None:
    before = tree(dirs.root)
    result = _native.fence(native_settings(dirs), "off", raw)
    assert result.kind == "refused" and not result.success
    assert "the target node name contains" in result.message
    check_one_escaped_refusal(dirs, before, raw.decode())
    for name in (MAIN_LOG, READABLE_LOG):
        text = (dirs.log / name).read_text()
        assert "forged" not in text or "\\n[2025" in text
        assert "\x1b" not in text and "\r" not in text


def check_one_escaped_refusal(
    d: Dirs, before: set[str], target: str, raw_text: bool = True
) -> None:
    """Exactly one failed record naming the target, escaped; nothing else written."""
    [record] = d.jsonl()
    assert record["status"] == "failed"
    shown = target.replace("\\", "\\\\") if raw_text else target
    assert record["target_node"] == shown
    assert "request_id" not in record
    readable = (d.log / READABLE_LOG).read_text()
    assert readable.count("\n") == 1 and readable.endswith("\n"), readable
    assert "STATUS=failed" in readable
    main = main_log(d).splitlines()
    assert all(line.startswith("[") for line in main), main
    assert list(d.req.iterdir()) == [] and list(d.resp.iterdir()) == []
    new = tree(d.root) - before
    assert new <= {"logs", *(f"logs/{n}" for n in os.listdir(d.log))}, new
    # Besides the logs, only the journal's rotation lock (empty).
    assert {p.split("/")[-1] for p in new if p != "logs"} <= {*LOG_NAMES, ".fence-events.lock"}
    assert not (d.root / "pwned").exists()


# --------------------------------------------------------------------------
# hostile input: responses


def plant_text(text: str | bytes) -> Callable[[Path, Path], None]:
    def plant(path: Path, _request: Path) -> None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())

    return plant


def plant_body(**fields: Any) -> Callable[[Path, Path], None]:
    def plant(path: Path, request: Path) -> None:
        body = json.loads(answer_body(request, **fields))
        for k, v in list(body.items()):
            if v is None:
                del body[k]
        path.write_text(json.dumps(body))

    return plant


def plant_big(path: Path, request: Path) -> None:
    body = json.loads(answer_body(request))
    body["padding"] = "x" * (2 * 1024 * 1024)
    path.write_text(json.dumps(body))


def plant_shadow_link(path: Path, _request: Path) -> None:
    path.symlink_to("/etc/shadow")


def plant_directory(path: Path, _request: Path) -> None:
    path.mkdir()
    (path / "x").write_text('{"success": true}')


def plant_fifo(path: Path, _request: Path) -> None:
    os.mkfifo(path)


def plant_duplicate(path: Path, request: Path) -> None:
    rid = json.loads(request.read_text())["request_id"]
    path.write_text(f'{{"request_id": "{rid}", "success": false, "success": true}}')


def plant_deep(path: Path, request: Path) -> None:
    rid = json.loads(request.read_text())["request_id"]
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text(f'{{"request_id": "{rid}", "success": true, "x": {deep}}}')


HOSTILE_RESPONSES: list[tuple[str, Callable[[Path, Path], None], int, str, str]] = [
    # (id, planter, exit code, final status, text in the details)
    ("empty-forever", plant_text(""), 1, "timeout", "unreadable: response file is empty"),
    ("2-MiB", plant_big, 1, "timeout", "larger than 1048576"),
    ("symlink-to-shadow", plant_shadow_link, 1, "timeout", "it is a symbolic link"),
    ("directory", plant_directory, 1, "timeout", "it is a directory"),
    ("fifo", plant_fifo, 1, "timeout", "it is a FIFO"),
    ("invalid-utf8", plant_text(b'{"success": true, "message": "\xff\xfe"}'), 1, "timeout",
     "unreadable"),
    ("json-array", plant_text('[{"success": true}]'), 1, "timeout", "not an object"),
    ("json-null", plant_text("null"), 1, "timeout", "not an object"),
    ("success-string", plant_body(success="true"), 1, "failed", "done"),
    ("success-one", plant_body(success=1), 1, "failed", "done"),
    ("status-uppercase", plant_body(success=None, status="SUCCESS"), 1, "failed", "done"),
    ("missing-request-id", plant_body(request_id=None), 0, "completed", "done"),
    ("another-target", plant_body(target_node="compute-node-9"), 1, "failed",
     'a success for target_node "compute-node-9", not for compute-node-3'),
    ("no-target", plant_body(target_node=None), 1, "failed",
     "a success for no target_node, not for compute-node-3"),
    ("other-request-id", plant_body(request_id="00000000-0000-4000-8000-000000000000"), 1,
     "timeout", "ignored"),
    ("duplicate-keys", plant_duplicate, 1, "failed", "duplicate key"),
    ("deeply-nested", plant_deep, 1, "timeout", "unreadable"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("planter", "code", "status", "detail"),
    [c[1:] for c in HOSTILE_RESPONSES],
    ids=[c[0] for c in HOSTILE_RESPONSES],
)
def test_hostile_response(
    dirs: Dirs,
    planter: Callable[[Path, Path], None],
    code: int,
    status: str,
    detail: str,
) -> None:
    shadow = Path("/etc/shadow")
    shadow_sum = hashlib.sha256(shadow.read_bytes()).hexdigest() if shadow.exists() else None
    started = time.monotonic()
    p = start_agent(dirs, timeout="1")
    req = wait_for_request(dirs)
    planter(dirs.resp / req.name, req)
    _, err = finish(p, within=30)
    took = time.monotonic() - started
    assert p.returncode == code, err
    assert took < 20, f"the agent must not block: {took:.1f} s"
    final = final_record(dirs)
    assert final["status"] == status, final
    assert detail in final["details"], final["details"]
    assert statuses(dirs) == ["initiated", status]
    if status == "timeout":
        assert "no answer" in err and not req.exists()
    if status == "failed":
        assert "the storage side answered failure" in err
        assert detail in err
    if shadow_sum is not None:
        assert hashlib.sha256(shadow.read_bytes()).hexdigest() == shadow_sum
        first = shadow.read_text().splitlines()[0]
        for log in dirs.log.iterdir():
            assert first not in log.read_text()
    assert dot_temps(dirs.req) == []


# --------------------------------------------------------------------------
# hostile input: settings


SettingsCase = tuple[list[str], dict[str, str], str, str]
# (options, environment, the setting named, the value quoted)


def by_option(option: str, *values: str) -> list[SettingsCase]:
    return [([option, v], {}, option[2:].replace("-", "_"), v) for v in values]


def by_environment(variable: str, *values: str) -> list[SettingsCase]:
    return [([], {variable: v}, variable, v) for v in values]


SETTINGS_CASES: list[SettingsCase] = [
    *by_option("--fence-timeout", "abc", "0", "-5", "99999999", "nan", "inf", "86401", "0.5"),
    *by_environment("FENCE_TIMEOUT", "abc", "0"),
    *by_option("--request-dir", "relative/req"),
    *by_option("--response-dir", ""),
    *by_environment("NNF_FENCE_REQUEST_DIR", "req", "./req"),
    *by_environment("NNF_FENCE_RESPONSE_DIR", "x/y"),
    *by_environment("LOG_DIR", "logs", ""),
    *by_environment("FENCE_LOG", "main.log", "logs/main.log", ""),
    *by_option("--poll-interval", "0", "soon", "61", "0.001"),
    *by_environment("FENCE_POLL_INTERVAL", "-1"),
    *by_option("--force-poll", "maybe"),
    *by_environment("FENCE_FORCE_POLL", "maybe", "2"),
    *by_option("--kubectl-path", "bin/kubectl"),
    *by_environment("FENCE_KUBECTL", "bin/kubectl"),
    *by_option("--discovery-timeout", "0", "abc", "301"),
    *by_environment("FENCE_DISCOVERY_TIMEOUT", "-1", "x"),
    *by_option("--log-mode", "0777", "0o1600", "rw-------"),
    *by_environment("FENCE_LOG_MODE", "rw", "0777", "0400", ""),
    *by_option("--stale-age", "abc", "0", "-3"),
    *by_environment("FENCE_STALE_AGE", "soon"),
    # stale_age must be longer than fence_timeout.
    (["--fence-timeout", "10", "--stale-age", "10"], {}, "stale_age", "10"),
    (["--fence-timeout", "10"], {"FENCE_STALE_AGE": "5"}, "FENCE_STALE_AGE", "5"),
]
SETTINGS_IDS = [
    f"{'/'.join(a) or '-'}|{'/'.join(f'{k}={v}' for k, v in e.items()) or '-'}"
    for a, e, _, _ in SETTINGS_CASES
]


@pytest.mark.parametrize(("args", "env", "named", "value"), SETTINGS_CASES, ids=SETTINGS_IDS)
def test_invalid_setting_is_named_with_its_value(
    dirs: Dirs, args: list[str], env: dict[str, str], named: str, value: str
) -> None:
    base = {"--request-dir": str(dirs.req), "--response-dir": str(dirs.resp)}
    base["--log-dir"] = str(dirs.log)
    # An option given by the case replaces the base one.
    for k in args:
        base.pop(k, None)
    # An environment value only counts when no option overrides it.
    env_overrides = {
        "NNF_FENCE_REQUEST_DIR": "--request-dir",
        "NNF_FENCE_RESPONSE_DIR": "--response-dir",
        "LOG_DIR": "--log-dir",
    }
    for k in env:
        base.pop(env_overrides.get(k, ""), None)
    argv = ["-o", "off", "-n", TARGET, *[x for kv in base.items() for x in kv], *args]
    r = run_agent(argv, env=clean_env(**env))
    assert r.returncode == 1
    assert named in r.stderr and f'"{value}"' in r.stderr, r.stderr
    assert "invalid" in r.stderr
    assert list(dirs.req.iterdir()) == [], "nothing is written with a bad setting"
    assert not dirs.log.exists()
    # validate-all and monitor name it the same way.
    for action in ("validate-all", "monitor"):
        argv[1] = action
        r = run_agent([a for a in argv if a not in ("-n", TARGET)], env=clean_env(**env))
        assert r.returncode == 1 and named in r.stderr, (action, r.stderr)


@pytest.mark.parametrize(("args", "env", "named", "value"), SETTINGS_CASES, ids=SETTINGS_IDS)
def test_invalid_setting_is_named_with_its_source_in_process(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], named: str, value: str
) -> None:
    """The same table through resolve_settings: SettingsError.errors names the
    setting, where its value came from, and the value."""
    options = {args[i][2:].replace("-", "_"): args[i + 1] for i in range(0, len(args), 2)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(_native.SettingsError) as e:
        _native.resolve_settings(**options)
    if named in env:
        source = f"environment variable {named}"
        found = [(s, v) for s, where, v, _ in e.value.errors if where == source]
    else:
        found = [(s, v) for s, where, v, _ in e.value.errors if where == "option" and s == named]
    assert [v for _, v in found] == [value], e.value.errors
    assert all(reason for *_, reason in e.value.errors)


def test_settings_from_stdin_are_named_as_well(dirs: Dirs) -> None:
    for key, value in (("fence_timeout", "soon"), ("stale_age", "x"), ("log_mode", "777")):
        r = run_agent(stdin=dirs.stdin(action="off", port=TARGET, **{key: value}))
        assert r.returncode == 1
        assert key in r.stderr and f'"{value}"' in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []


def test_a_bad_force_poll_value_on_stdin_is_an_error_naming_it(dirs: Dirs) -> None:
    """force_poll takes a value the engine checks: nothing is dropped silently."""
    r = run_agent(
        stdin=dirs.stdin(action="off", port=TARGET, force_poll="maybe", fence_timeout="1")
    )
    assert r.returncode == 1
    assert 'force_poll "maybe"' in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []


def test_same_request_and_response_directory_is_refused(dirs: Dirs) -> None:
    r = run_agent(
        ["-o", "off", "-n", TARGET, "--request-dir", str(dirs.req), "--response-dir",
         str(dirs.req), "--log-dir", str(dirs.log)]
    )  # fmt: skip
    assert r.returncode == 1
    assert "response_dir" in r.stderr and "must differ from request_dir" in r.stderr


@pytest.mark.parametrize("field", ["request_dir", "response_dir", "log_dir", "kubectl_path"])
def test_nul_in_a_path_setting_is_refused(field: str) -> None:
    with pytest.raises(_native.SettingsError) as e:
        _native.resolve_settings(**{field: "/a\0b"})
    [(setting, source, value, reason)] = e.value.errors
    assert (setting, source, value) == (field, "option", "/a\0b") and "NUL" in reason


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(_native.SettingsError) as e:
        _native.resolve_settings(
            request_dir="rel",
            fence_timeout="x",
            stale_age="y",
            discovery_timeout="z",
            log_mode="0777",
        )
    assert [(setting, source, value) for setting, source, value, _ in e.value.errors] == [
        ("request_dir", "option", "rel"),
        ("fence_timeout", "option", "x"),
        ("discovery_timeout", "option", "z"),
        ("log_mode", "option", "0777"),
        ("stale_age", "option", "y"),
    ]
    assert all(reason for *_, reason in e.value.errors)
    # str() gives one line per bad setting, each naming it and its value.
    lines = str(e.value).splitlines()
    assert len(lines) == 5 and lines[0] == 'invalid request_dir "rel": must be an absolute path'


def test_a_bad_setting_from_the_environment_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FENCE_TIMEOUT", "soon")
    with pytest.raises(_native.SettingsError) as e:
        _native.resolve_settings()
    [(setting, source, value, _)] = e.value.errors
    assert (setting, source, value) == (
        "fence_timeout",
        "environment variable FENCE_TIMEOUT",
        "soon",
    )


def test_validate_all_prints_one_line_per_bad_setting(dirs: Dirs) -> None:
    r = run_agent(
        ["-o", "validate-all", "--request-dir", "rel", "--fence-timeout", "x",
         "--response-dir", str(dirs.resp), "--log-dir", str(dirs.log)],
        env=clean_env(FENCE_LOG_MODE="0777"),
    )  # fmt: skip
    assert r.returncode == 1
    failed = [line for line in r.stderr.splitlines() if "Failed: invalid" in line]
    assert len(failed) == 3, r.stderr
    assert 'request_dir "rel"' in failed[0] and 'fence_timeout "x"' in failed[1]
    assert 'log_mode (from environment variable FENCE_LOG_MODE) "0777"' in failed[2]


def test_an_unreadable_response_directory_is_file_not_found(tmp_path: Path) -> None:
    """io errors keep their kind: a missing directory is FileNotFoundError."""
    s = _native.resolve_settings(
        request_dir=str(tmp_path / "req"), response_dir=str(tmp_path / "gone"), kubectl_path=""
    )
    with pytest.raises(FileNotFoundError):
        _native.is_fenced(s, b"compute-node-3")
    with pytest.raises(FileNotFoundError):
        _native.fenced_targets(s)


# --------------------------------------------------------------------------
# hostile input: planted symlinks, and the file modes


def test_symlinks_planted_at_the_log_names_are_not_followed(
    dirs: Dirs, tmp_path: Path, responder: Any
) -> None:
    victims = tmp_path / "victims"
    victims.mkdir()
    dirs.log.mkdir()
    for name in LOG_NAMES:
        (victims / name).write_text("precious\n")
        (dirs.log / name).symlink_to(victims / name)
    responder()
    r = run_agent(["-o", "off", "-n", TARGET, *dirs.argv("--fence-timeout", "10")])
    assert_fenced_and_reported(r, dirs)
    for name in LOG_NAMES:
        assert (victims / name).read_text() == "precious\n"
        assert (dirs.log / name).is_symlink()
        assert f"cannot write log {dirs.log / name}" in r.stderr, r.stderr
    # FENCE_LOG pointing at a symlink: the same.
    link = tmp_path / "main-link.log"
    link.symlink_to(victims / MAIN_LOG)
    r = run_agent(
        ["-o", "off", "-n", TARGET, *dirs.argv("--fence-timeout", "10")],
        env=clean_env(FENCE_LOG=str(link)),
    )
    assert r.returncode == 0, r.stderr
    assert (victims / MAIN_LOG).read_text() == "precious\n"


def test_file_modes(dirs: Dirs) -> None:
    p = start_agent(dirs, timeout="10")
    req = wait_for_request(dirs)
    assert req.stat().st_mode & 0o777 == 0o644, "requests are readable by the responder"
    (dirs.resp / req.name).write_text(answer_body(req, target_node=TARGET))
    _, err = finish(p)
    assert p.returncode == 0, err
    r = run_agent(["-o", "on", "-n", TARGET, *dirs.argv()])
    assert r.returncode == 0, r.stderr
    [kept] = (dirs.log / "unfenced").iterdir()
    assert kept.stat().st_mode & 0o777 == 0o600
    for name in LOG_NAMES:
        assert (dirs.log / name).stat().st_mode & 0o777 == 0o600, name
    # log_mode widens new logs only as far as asked.
    d2 = Dirs(dirs.root, dirs.req, dirs.resp, dirs.root / "logs-0640")
    r = run_agent(["-o", "on", "-n", TARGET, *d2.argv("--log-mode", "0640")])
    assert r.returncode == 0, r.stderr
    assert (d2.log / DETAILED_LOG).stat().st_mode & 0o777 == 0o640
