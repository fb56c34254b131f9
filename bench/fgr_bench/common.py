"""What every section of the benchmark suite shares: the environment, scratch
directories, a minimal inotify watch, statistics, the responder's side of the
protocol and the ways agents and measured commands are started.

Nothing here is global state: the run's settings (which agent, how many
runs, where to write) travel in a :class:`Context` that the command line
builds and hands to each section.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent
DEFAULT_AGENT = BIN / "fence_gfs2_recorder"
DEFAULT_RESPONDER = BIN / "fence-gfs2-responder"
FENCE_DUMMY = "/usr/sbin/fence_dummy"
REPO = Path(__file__).resolve().parent.parent.parent
TARGET = "compute-node-3"


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------- environment

# Read by kubectl, which GFS2 discovery runs (the agent reads KUBECONFIG too).
OTHER_ENV = ("KUBECONFIG",)
# Any other variable of ours is also kept out, documented or not.
OUR_PREFIXES = ("FENCE_", "NNF_FENCE_")


@functools.cache
def agent_env_names() -> frozenset[str]:
    """Every environment variable the agent reads, as its engine lists them."""
    from fence_gfs2_recorder import _native

    return frozenset(_native.ENVIRONMENT) | frozenset(OTHER_ENV)


def is_ours(name: str) -> bool:
    return name in agent_env_names() or name.startswith(OUR_PREFIXES)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any of our variables, discovery off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not is_ours(k)}
    env["FENCE_KUBECTL"] = ""
    env.update(extra)
    return env


def clean_own_environment() -> None:
    """The same for this process (the in-process fence reads it)."""
    for k in list(os.environ):
        if is_ours(k):
            del os.environ[k]
    os.environ["FENCE_KUBECTL"] = ""


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- clock hygiene


def set_realtime(on: bool) -> bool:
    """Runs the harness's own stamps (rename, reap, observers) at SCHED_FIFO so
    that other jobs on the machine cannot delay them; children are reset to
    the normal policy at fork. Needs root; returns whether it applies."""
    try:
        if on:
            policy = os.SCHED_FIFO | os.SCHED_RESET_ON_FORK
            os.sched_setscheduler(0, policy, os.sched_param(10))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        return False
    return True


@contextmanager
def normal_priority(active: bool) -> Iterator[None]:
    """The in-process fence runs in harness threads: measure it unprivileged."""
    if active:
        set_realtime(False)
    try:
        yield
    finally:
        if active:
            set_realtime(True)


# --------------------------------------------------------------------------- statistics


def pct(values: list[float], q: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in milliseconds of values given in seconds."""
    ms = [v * 1000.0 for v in values_s]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "min": min(ms),
        "p50": pct(ms, 50),
        "p90": pct(ms, 90),
        "p99": pct(ms, 99),
        "max": max(ms),
        "mean": sum(ms) / len(ms),
    }


# --------------------------------------------------------------------------- inotify


class Inotify:
    """A minimal inotify watch on one directory (ctypes, Linux only)."""

    IN_MODIFY = 0x00000002
    IN_CLOSE_WRITE = 0x00000008
    IN_OPEN = 0x00000020
    IN_MOVED_TO = 0x00000080
    IN_Q_OVERFLOW = 0x00004000
    _HEADER = struct.Struct("iIII")

    def __init__(self, directory: Path, mask: int = IN_MOVED_TO | IN_CLOSE_WRITE) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.dir = directory
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = libc.inotify_add_watch(self.fd, os.fsencode(str(directory)), mask)
        if wd < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {directory}")
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)

    def close(self) -> None:
        os.close(self.fd)

    def events(self, timeout: float) -> list[str] | None:
        """Names seen within ``timeout`` s ([] on timeout, None on queue overflow)."""
        if not self.poller.poll(max(0, int(timeout * 1000))):
            return []
        try:
            buf = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        names: list[str] = []
        off = 0
        overflow = False
        while off < len(buf):
            _wd, mask, _cookie, length = self._HEADER.unpack_from(buf, off)
            off += self._HEADER.size
            raw = buf[off : off + length].rstrip(b"\0")
            off += length
            if mask & self.IN_Q_OVERFLOW:
                overflow = True
            elif raw:
                names.append(os.fsdecode(raw))
        return None if overflow else names

    def drain(self) -> None:
        while self.events(0):
            pass


def is_request_name(name: str) -> bool:
    return name.endswith(".json") and not name.startswith(".")


def wait_for_request(watch: Inotify, known: set[str], timeout: float) -> str | None:
    """The first request name that appears and is not in ``known``."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        names = watch.events(min(left, 0.5))
        if names is None:  # overflow: look at the directory itself
            names = [e.name for e in os.scandir(watch.dir)]
        for n in names:
            if is_request_name(n) and n not in known and (watch.dir / n).exists():
                return n


# --------------------------------------------------------------------------- files


@dataclass
class Dirs:
    root: Path
    req: Path = field(init=False)
    resp: Path = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.req = self.root / "requests"
        self.resp = self.root / "responses"
        self.log = self.root / "logs"
        for d in (self.req, self.resp, self.log):
            d.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [
            "--request-dir",
            str(self.req),
            "--response-dir",
            str(self.resp),
            "--log-dir",
            str(self.log),
        ]

    def final_records(self) -> list[dict[str, Any]]:
        path = self.log / "fence-events-detailed.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("status") != "initiated":
                out.append(rec)
        return out


def write_atomic(directory: Path, name: str, data: bytes, fsync: bool = True) -> None:
    """Dot-temp, (fsync), rename: the way both ends of the protocol write."""
    tmp = directory / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, directory / name)


def response_body(request: dict[str, Any]) -> bytes:
    body = dict(request)
    body["success"] = True
    body["message"] = "Successfully fenced node by deleting 1 GFS2 storage groups (bench)"
    body["action_performed"] = "off"
    return (json.dumps(body, indent=2) + "\n").encode()


def answer(dirs: Dirs, name: str, stamp_before: bool = False) -> float:
    """Answers one request like the reconciler's normal path; returns the
    monotonic time taken right after the rename of the response into place
    (or right before it with ``stamp_before``: os.rename releases the GIL, so
    an in-process waiter can run before this thread takes its stamp)."""
    request = json.loads((dirs.req / name).read_bytes())
    data = response_body(request)
    tmp = dirs.resp / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    before = time.monotonic()
    os.rename(tmp, dirs.resp / name)
    return before if stamp_before else time.monotonic()


def remove_quietly(path: Path) -> None:
    with suppress(FileNotFoundError):
        path.unlink()


# --------------------------------------------------------------------------- processes


@dataclass
class Exited:
    rc: int
    t_exit: float
    maxrss_kib: int
    cpu_s: float


def reap(proc: subprocess.Popen[bytes]) -> Exited:
    """Waits for one child with wait4, so its own rusage comes back too."""
    _pid, status, ru = os.wait4(proc.pid, 0)
    t = time.monotonic()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exited(proc.returncode, t, ru.ru_maxrss, ru.ru_utime + ru.ru_stime)


def kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        try:
            proc.kill()
            reap(proc)
        except (ProcessLookupError, ChildProcessError):
            pass


def spawn_agent(
    agent: str,
    dirs: Dirs,
    extra: list[str],
    env: dict[str, str],
    stderr: IO[bytes],
    target: str = TARGET,
    stdout: bool = False,
) -> subprocess.Popen[bytes]:
    argv = [agent, "-o", "reboot", "-n", target, *dirs.argv(), "--fence-timeout", "30", *extra]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
        stderr=stderr,
        env=env,
    )


@dataclass
class AnswerSplit:
    """The answer -> exit time of one agent process, in its parts (seconds),
    each stamped by the harness as it sees it happen."""

    wake_s: float  # response renamed into place -> the agent opens it
    record_s: float  # -> its final record is appended to the detailed log
    report_s: float  # -> its result line reaches stdout (Python's part)
    exit_s: float  # -> the process is reaped (exit, kernel teardown)

    PARTS = ("wake", "record", "report", "exit")

    def parts(self) -> dict[str, float]:
        return {p: getattr(self, f"{p}_s") for p in self.PARTS}


@dataclass
class ProcessFence:
    latency_s: float  # response renamed into place -> agent reaped
    wall_s: float  # spawn -> agent reaped
    split: AnswerSplit | None = None


DETAILED_LOG = "fence-events-detailed.jsonl"


class AnswerWatch:
    """What the harness watches to split answer -> exit: opens in the response
    directory and appends to the detailed log (one series' directories)."""

    def __init__(self, dirs: Dirs) -> None:
        self.opens = Inotify(dirs.resp, Inotify.IN_OPEN)
        self.appends = Inotify(dirs.log, Inotify.IN_MODIFY)

    def drain(self) -> None:
        self.opens.drain()
        self.appends.drain()

    def close(self) -> None:
        self.opens.close()
        self.appends.close()


def stamp_answer(
    proc: subprocess.Popen[bytes], watch: AnswerWatch, name: str, t_answer: float
) -> tuple[Exited, AnswerSplit | None]:
    """Stamps, after the answer, the agent opening it, its final record and its
    result line on stdout, then reaps it. None if a stamp is missing."""
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    poller = select.poll()
    for fd in (watch.opens.fd, watch.appends.fd, out):
        poller.register(fd, select.POLLIN)
    stamps: dict[str, float] = {}
    end = time.monotonic() + 60.0
    while "report" not in stamps and time.monotonic() < end:
        for fd, _ in poller.poll(1000):
            now = time.monotonic()
            if fd == watch.opens.fd:
                if name in (watch.opens.events(0) or []):
                    stamps.setdefault("wake", now)
            elif fd == watch.appends.fd:
                if DETAILED_LOG in (watch.appends.events(0) or []) and "wake" in stamps:
                    stamps.setdefault("record", now)
            elif os.read(out, 4096):
                stamps.setdefault("report", now)
            else:  # end of output: the agent is exiting
                stamps.setdefault("report", now)
                stamps.setdefault("eof", now)
    ex = reap(proc)
    if not {"wake", "record", "report"} <= stamps.keys() or "eof" in stamps:
        return ex, None
    return ex, AnswerSplit(
        wake_s=stamps["wake"] - t_answer,
        record_s=stamps["record"] - stamps["wake"],
        report_s=stamps["report"] - stamps["record"],
        exit_s=ex.t_exit - stamps["report"],
    )


# The harness answers this long after the request appears: the agent has then
# finished publishing (fsync, initiated record) and is waiting, as it is when
# a real detach answers (those take far longer). Answering sooner would time
# the agent's own publishing, not its answer path.
ANSWER_AFTER_S = 0.05


def one_process_fence(
    ctx: Context,
    dirs: Dirs,
    watch: Inotify,
    extra: list[str],
    env: dict[str, str],
    delay: float = ANSWER_AFTER_S,
    split: AnswerWatch | None = None,
    agent: str | None = None,
) -> ProcessFence:
    """One agent process (``agent``, else the run's); the harness answers its
    request after ``delay`` s. With ``split``, the answer -> exit time is also
    stamped in its parts."""
    watch.drain()
    if split is not None:
        split.drain()
    t_spawn = time.monotonic()
    proc = spawn_agent(agent or ctx.agent, dirs, extra, env, ctx.errlog, stdout=split is not None)
    parts = None
    try:
        name = wait_for_request(watch, set(), 30.0)
        if name is None:
            raise BenchError("the agent wrote no request within 30 s (see agent-stderr.log)")
        if delay > 0:
            time.sleep(delay)
        t_answer = answer(dirs, name)
        # Then the request goes, as nnf-sos removes it after answering: a
        # polling agent looks the answer up only once its request is gone.
        remove_quietly(dirs.req / name)
        if split is None:
            ex = reap(proc)
        else:
            ex, parts = stamp_answer(proc, split, name, t_answer)
    finally:
        kill_quietly(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if ex.rc != 0:
        raise BenchError(f"agent exited {ex.rc} (see agent-stderr.log)")
    return ProcessFence(ex.t_exit - t_answer, ex.t_exit - t_spawn, parts)


def floor_probe() -> float:
    """Event -> exit of a minimal Python process (-S -I, no imports): the
    floor any process-based answer path pays on this machine at this load."""
    code = "import sys; sys.stdout.write('r'); sys.stdout.flush(); sys.stdin.read(1)"
    proc = subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdout.read(1)  # it is about to block on its stdin
        proc.stdin.write(b"x")
        proc.stdin.flush()
        t = time.monotonic()
        ex = reap(proc)
    finally:
        kill_quietly(proc)
        proc.stdin.close()
        proc.stdout.close()
    return ex.t_exit - t


@dataclass
class FloorSplit:
    wake_s: float  # file renamed into the watched directory -> the probe writes
    exit_s: float  # -> the probe is reaped


# A bare interpreter woken as the agent is: by inotify, on a file renamed
# into a directory it watches; it removes its watch at once (the agent's
# watcher does so as it wakes), says so on stdout and ends with os._exit.
FLOOR_INOTIFY = (
    "import ctypes, os, sys\n"
    "libc = ctypes.CDLL(None)\n"
    "fd = libc.inotify_init1(0o2000000)\n"
    "wd = libc.inotify_add_watch(fd, os.fsencode(sys.argv[1]), 0x80)\n"
    "os.write(1, b'r')\n"
    "os.read(fd, 4096)\n"
    "libc.inotify_rm_watch(fd, wd)\n"
    "os.write(1, b'w')\n"
    "os._exit(0)\n"
)


def floor_inotify_probe(directory: Path) -> FloorSplit:
    """The floor of the agent's answer path: rename -> wake -> exit of a
    minimal Python process (-S -I) waiting on inotify in ``directory``."""
    proc = subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", FLOOR_INOTIFY, str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        if proc.stdout.read(1) != b"r":
            raise BenchError("the floor probe did not start")
        tmp = directory / ".floor.tmp"
        tmp.write_bytes(b"x")
        os.rename(tmp, directory / "floor")
        t = time.monotonic()
        proc.stdout.read(1)
        t_wake = time.monotonic()
        ex = reap(proc)
    finally:
        kill_quietly(proc)
        proc.stdout.close()
    remove_quietly(directory / "floor")
    return FloorSplit(t_wake - t, ex.t_exit - t_wake)


# Linux counts the RSS a child had before exec (its copy of the parent) in its
# ru_maxrss, so children of the harness would report at least the harness's
# own size. Measured commands are therefore started by this small spawner.
RSS_SPAWNER = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_, status, ru = os.wait4(pid, 0)\n"
    "sys.stdout.write(str(ru.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def spawn_measured(
    argv: list[str], env: dict[str, str], stderr: IO[bytes]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-S", "-I", "-c", RSS_SPAWNER, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )


def measured_maxrss(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    if reap(proc).rc != 0:
        raise BenchError("a measured command failed (see agent-stderr.log)")
    return int(out)


# --------------------------------------------------------------------------- the run


@dataclass
class Context:
    """One run of the suite: what it measures, where, and what it found."""

    work: Path
    runs: int
    poll_runs: int
    warmup: int
    seed: int
    errlog: IO[bytes]
    agent: str = str(DEFAULT_AGENT)
    responder: str = str(DEFAULT_RESPONDER)
    realtime: bool = False
    # Seconds after the request appears that the latency section answers it
    # (uniformly random between the two).
    answer_after: tuple[float, float] = (0.0, ANSWER_AFTER_S)
    # Other builds of the agent, measured fence by fence beside this one.
    baseline_agents: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def fresh(self, tag: str) -> Dirs:
        d = self.work / tag
        if d.exists():
            shutil.rmtree(d)
        return Dirs(d)

    def row(
        self, section: str, metric: str, figure: str, target: str, met: bool | None, note: str = ""
    ) -> None:
        self.rows.append(
            {
                "section": section,
                "metric": metric,
                "figure": figure,
                "target": target,
                "met": met,
                "note": note,
            }
        )
