"""Helpers shared by the test modules: processes and their groups read from
/proc, the three logs, an agent run in the background, a responder written in
the test, and small file systems to fill or make read-only.

Fixtures live in conftest.py; these are plain functions the modules import.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Dirs, clean_env

TARGET = "compute-node-3"
FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")

# ---------------------------------------------------------------- processes


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (None: no such process).

    Index 0 is the state, 1 the parent, 2 the process group, 19 the start time.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def parent_of(pid: int) -> int | None:
    fields = stat_fields(pid)
    return None if fields is None else int(fields[1])


def comm_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def live_group_members(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies aside)."""
    live = []
    for pid in all_pids():
        fields = stat_fields(pid)
        if fields is not None and int(fields[2]) == group and fields[0] != "Z":
            live.append(pid)
    return live


def assert_group_gone(group: int, within: float = 5.0) -> None:
    """Waits up to `within` seconds for every process of `group` to end."""
    end = time.monotonic() + within
    while live_group_members(group):
        assert time.monotonic() < end, f"process group {group}: {live_group_members(group)}"
        time.sleep(0.02)


# ---------------------------------------------------------------- the logs

MAIN_LOG = "fence-events.log"
READABLE_LOG = "fence-events-readable.log"
DETAILED_LOG = "fence-events-detailed.jsonl"
LOG_NAMES = (MAIN_LOG, READABLE_LOG, DETAILED_LOG)


def lines_of(path: Path, strict: bool = True) -> list[str]:
    """The lines of a log; fails if any record is not exactly one line.

    `strict`: not even the breaks str.splitlines() honours besides \\n
    (\\r, \\x0b, \\x0c, \\x1c-\\x1e, \\x85, U+2028, U+2029).
    """
    if not path.exists():
        return []
    text = path.read_bytes().decode("utf-8")
    assert text == "" or text.endswith("\n"), f"{path.name}: last record unterminated"
    lines = text.split("\n")[:-1]
    if strict:
        assert text.splitlines() == lines, f"{path.name}: a record holds a line break: {text!r}"
    return lines


def records_of(path: Path) -> list[dict[str, Any]]:
    """The records of a detailed log (JSON Lines are split at \\n only)."""
    return [json.loads(line) for line in lines_of(path, strict=False)]


STAMP = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]"
MAIN_RE = re.compile(rf"^{STAMP} \[(INFO|WARNING|ERROR|DEBUG)\] .+$")
STATUSES = "initiated|completed|failed|timeout|interrupted|unfenced|already_unfenced"
READABLE_RE = re.compile(
    rf"^{STAMP} ACTION=(?P<action>\S+) TARGET=(?P<target>\S+) GFS2=(?P<gfs2>\[[^\]]*\]) "
    rf"STATUS=(?P<status>{STATUSES}) DETAILS=(?P<details>.*)$"
)
UTC_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
COMMON_KEYS = {
    "timestamp",
    "action",
    "target_node",
    "status",
    "details",
    "recorder_node",
    "pacemaker_action",
    "gfs2_filesystems",
}


@dataclass
class Logs:
    main: list[str]
    readable: list[str]
    detailed: list[dict[str, Any]]


def read_logs(log_dir: Path, readable_strict: bool = True) -> Logs:
    """Reads the three logs and checks every line's format."""
    main = lines_of(log_dir / MAIN_LOG)
    for line in main:
        assert MAIN_RE.match(line), f"main log line: {line!r}"
    readable = lines_of(log_dir / READABLE_LOG)
    if readable_strict:
        for line in readable:
            assert READABLE_RE.match(line), f"readable log line: {line!r}"
    # JSON Lines are split at \\n only (test_journal has a test of Unicode line breaks).
    detailed = records_of(log_dir / DETAILED_LOG)
    for rec in detailed:
        check_record(rec)
    return Logs(main, readable, detailed)


def check_record(rec: dict[str, Any]) -> None:
    """The fields every detailed record has, and their formats."""
    assert rec.keys() >= COMMON_KEYS, rec
    assert UTC_RE.match(rec["timestamp"]), rec
    assert rec["status"] in STATUSES.split("|"), rec
    assert isinstance(rec["gfs2_filesystems"], list), rec
    assert all(isinstance(g, str) for g in rec["gfs2_filesystems"]), rec
    assert rec["recorder_node"], rec
    if rec["status"] == "initiated":
        assert UUID_RE.match(rec["request_id"]), rec
        assert not {"action_performed", "elapsed_ms", "response_file"} & rec.keys(), rec


def statuses(d: Dirs) -> list[str]:
    return [r["status"] for r in d.jsonl()]


def final_record(d: Dirs, lifecycle: list[str] | None = None) -> dict[str, Any]:
    """The last journal record; with `lifecycle`, the statuses of all must be those."""
    records = d.jsonl()
    assert records, "no journal record"
    if lifecycle is not None:
        assert [r["status"] for r in records] == lifecycle, records
    return records[-1]


def main_log(d: Dirs) -> str:
    return (d.log / MAIN_LOG).read_text()


def assert_fenced_and_reported(r: subprocess.CompletedProcess[str], d: Dirs) -> None:
    """The fence succeeded although no log could be written, and each log
    file is reported once on stderr, however many records it missed."""
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Success: {TARGET} fenced"), r.stdout
    assert len(d.responses()) == 1
    reports = [x for x in r.stderr.splitlines() if "cannot write log" in x]
    for name in LOG_NAMES:
        assert len([x for x in reports if f"/{name}:" in x]) == 1, r.stderr


# ---------------------------------------------------------------- an agent in the background


def start_agent(
    d: Dirs,
    *extra: str,
    action: str = "off",
    target: str = TARGET,
    timeout: str = "2",
    env: dict[str, str] | None = None,
    prefix: list[str] | None = None,
) -> subprocess.Popen[str]:
    """Starts a fence in the background, as Pacemaker's fencer does."""
    argv = [*(prefix or []), AGENT, "-o", action, "-n", target]
    argv += d.argv("--fence-timeout", timeout, *extra)
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else clean_env(),
    )


def finish(p: subprocess.Popen[str], within: float = 60) -> tuple[str, str]:
    try:
        return p.communicate(timeout=within)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def request_names(d: Dirs) -> set[str]:
    """The requests in the request directory (dot-temps aside)."""
    return {p.name for p in d.req.iterdir() if p.name.endswith(".json") and p.name[0] != "."}


def wait_for_request(d: Dirs, ignore: set[str] | None = None, within: float = 20) -> Path:
    """The request file of the agent just started (not one in `ignore`)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        new = request_names(d) - (ignore or set())
        if new:
            return d.req / sorted(new)[0]
        time.sleep(0.005)
    raise AssertionError(f"no request appeared in {d.req} within {within} s")


def wait_for_status(d: Dirs, status: str, count: int = 1, within: float = 20) -> None:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if sum(1 for r in d.jsonl() if r["status"] == status) >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"no {status!r} record within {within} s: {d.jsonl()}")


def answer_body(request: Path, **fields: Any) -> str:
    """A success answer to `request`, as the bundled responder writes it."""
    body = json.loads(request.read_text())
    body.update({"success": True, "message": "done", "action_performed": "off"})
    body.update(fields)
    return json.dumps(body, indent=2) + "\n"


# ---------------------------------------------------------------- a responder written in the test


def success(message: str = "done", **fields: Any) -> Callable[[dict[str, Any]], str]:
    """A body: the request echoed back with success, `message` and `fields`."""
    return lambda request: json.dumps({**request, "success": True, "message": message, **fields})


@contextlib.contextmanager
def answering(
    d: Dirs,
    body: Callable[[dict[str, Any]], str],
    *,
    first_only: bool = False,
    new_only: bool = False,
    take: bool = True,
    in_place: bool = False,
    delay: float = 0.0,
    poll: float = 0.01,
) -> Iterator[list[float]]:
    """A responder thread for answers the bundled one cannot give.

    Every request (or the first only; or only those not there yet when it
    starts) is answered at its own name with `body(request)`, after `delay`
    seconds: written to a dot-temp and renamed into place, the way the
    reconciler writes, or `in_place` in two writes 50 ms apart, the way
    nnf-sos's in-place path does. `take`: the request is deleted after the
    answer, as the storage side does. Yields the monotonic times at which each
    answer was complete; on leaving, the thread is stopped and joined, and
    what it raised is raised here.
    """
    stop = threading.Event()
    answered: list[float] = []
    failed: list[BaseException] = []
    done = request_names(d) if new_only else set()

    def answer(name: str) -> bool:
        try:
            request = json.loads((d.req / name).read_text())
        except (OSError, ValueError):
            return False  # gone, or not complete yet
        time.sleep(delay)
        text = body(request)
        path = d.resp / name
        if in_place:
            with path.open("w") as f:
                f.write(text[:25])
                f.flush()
                time.sleep(0.05)
                f.write(text[25:])
        else:
            tmp = d.resp / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, path)
        answered.append(time.monotonic())
        if take:
            (d.req / name).unlink()
        return True

    def run() -> None:
        try:
            while not stop.is_set():
                for name in sorted(request_names(d) - done):
                    if answer(name):
                        done.add(name)
                        if first_only:
                            return
                stop.wait(poll)
        except BaseException as e:
            failed.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield answered
    finally:
        stop.set()
        t.join(timeout=30)
    if failed:
        raise failed[0]


# ---------------------------------------------------------------- kubectl as it finds its config

NOT_CONFIGURED = (
    "The connection to the server localhost:8080 was refused - did you specify the right host "
    "or port?"
)


def config_finding_kubectl(directory: Path, data: Path, environ_dump: Path | None = None) -> Path:
    """A stand-in kubectl that finds its config as the real one does: the file
    named by ``--kubeconfig`` (an error if it is missing), else ``KUBECONFIG``,
    else ``$HOME/.kube/config``; without one it fails as kubectl does when it
    falls back to localhost:8080. With a config it prints `data`. With
    `environ_dump`, it first copies its parent's (the agent's) environment there.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kubectl"
    # Copied whole, then renamed: a reader never sees half of it.
    dump = (
        f"cat /proc/$PPID/environ > '{environ_dump}.$$' && "
        f"mv '{environ_dump}.$$' '{environ_dump}'\n"
        if environ_dump
        else ""
    )
    path.write_text(
        "#!/bin/sh\n"
        f"{dump}"
        "config=\n"
        'if [ "$1" = --kubeconfig ]; then\n'
        "    config=$2; shift 2\n"
        '    [ -f "$config" ] || { echo "error: stat $config: no such file or directory" >&2; '
        "exit 1; }\n"
        'elif [ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ]; then config=$KUBECONFIG\n'
        'elif [ -n "${HOME:-}" ] && [ -f "$HOME/.kube/config" ]; then config=$HOME/.kube/config\n'
        "fi\n"
        '[ "$*" = "get nnfnodeblockstorages -A -o json" ] || '
        '{ echo "unexpected arguments: $*" >&2; exit 64; }\n'
        f'[ -n "$config" ] || {{ echo "{NOT_CONFIGURED}" >&2; exit 1; }}\n'
        f"exec cat '{data}'\n"
    )
    path.chmod(0o755)
    return path


def storages_on(rabbit: str, directory: Path) -> Path:
    """The sample NnfNodeBlockStorages (compute-node-3, -4, -5), held by `rabbit`."""
    from conftest import DATA

    text = (DATA / "nnfnodeblockstorages.json").read_text()
    assert "rabbit-node-1" in text
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"storages-on-{rabbit}.json"
    out.write_text(text.replace('"rabbit-node-1"', json.dumps(rabbit)))
    return out


def kubeconfig(path: Path) -> Path:
    """A kubeconfig file (its content only matters to a real kubectl)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    return path


# ---------------------------------------------------------------- small file systems


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "64k") -> Iterator[Path]:
    """A small tmpfs mounted at `where` (root only); skips the test if mounting fails."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where: Path) -> None:
    r = subprocess.run(["mount", "-o", "remount,ro", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot remount {where} read-only: {r.stderr.strip()}")


def fill_up(fs_root: Path) -> None:
    """Writes to a filler file until the file system says it is full."""
    fd = os.open(fs_root / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        chunk = b"\0" * 1024
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                break
        # Also fill the last partial page.
        while True:
            try:
                os.write(fd, b"\0")
            except OSError:
                break
    finally:
        os.close(fd)
