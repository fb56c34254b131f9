"""Benchmark suite of fence_gfs2_recorder.

Run it through ``bench/run.sh`` (``make bench``). It measures, in one run:

1. answer latency (rename of the response into place -> agent exit / return)
2. start-up of ``-o monitor`` and ``-o metadata`` against ``fence_dummy``
3. bursts of concurrent agents against ``fence-gfs2-responder``
4. answer latency in crowded request and response directories
5. the cost of GFS2 discovery with a slow stand-in kubectl
6. peak RSS of the agent against ``fence_dummy``
7. journal records per second, 1 and 32 writers

It prints a table and writes a JSON file with every figure. The harness plays
the responder itself where latency is measured, so both ends of the interval
are taken by the same clock in the same process.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import resource
import select
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

BIN = Path(sys.executable).parent
AGENT = str(BIN / "fence_gfs2_recorder")
RESPONDER = str(BIN / "fence-gfs2-responder")
FENCE_DUMMY = "/usr/sbin/fence_dummy"
REPO = Path(__file__).resolve().parent.parent
TARGET = "compute-node-3"

# Every variable the agent reads: none of them may leak in from the caller.
OUR_ENV = (
    "NNF_FENCE_REQUEST_DIR",
    "NNF_FENCE_RESPONSE_DIR",
    "LOG_DIR",
    "FENCE_LOG",
    "FENCE_TIMEOUT",
    "FENCE_POLL_INTERVAL",
    "FENCE_FORCE_POLL",
    "FENCE_KUBECTL",
    "FENCE_DISCOVERY_TIMEOUT",
    "FENCE_LOG_MODE",
    "KUBECONFIG",
)


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OUR_ENV and not k.startswith("FENCE_")}
    env["FENCE_KUBECTL"] = ""
    env.update(extra)
    return env


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

    IN_CLOSE_WRITE = 0x00000008
    IN_MOVED_TO = 0x00000080
    IN_Q_OVERFLOW = 0x00004000
    _HEADER = struct.Struct("iIII")

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.dir = directory
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = libc.inotify_add_watch(
            self.fd, os.fsencode(str(directory)), self.IN_MOVED_TO | self.IN_CLOSE_WRITE
        )
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
    dirs: Dirs, extra: list[str], env: dict[str, str], stderr: IO[bytes], target: str = TARGET
) -> subprocess.Popen[bytes]:
    argv = [AGENT, "-o", "reboot", "-n", target, *dirs.argv(), "--fence-timeout", "30", *extra]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
    )


@dataclass
class ProcessFence:
    latency_s: float  # response renamed into place -> agent reaped
    wall_s: float  # spawn -> agent reaped


class BenchError(RuntimeError):
    pass


# The harness answers this long after the request appears: the agent has then
# finished publishing (fsync, initiated record) and is waiting, as it is when
# a real detach answers (those take far longer). Answering sooner would time
# the agent's own publishing, not its answer path.
ANSWER_AFTER_S = 0.05


def one_process_fence(
    dirs: Dirs,
    watch: Inotify,
    extra: list[str],
    env: dict[str, str],
    errlog: IO[bytes],
    delay: float = ANSWER_AFTER_S,
) -> ProcessFence:
    """One agent process; the harness answers its request after ``delay`` s."""
    watch.drain()
    t_spawn = time.monotonic()
    proc = spawn_agent(dirs, extra, env, errlog)
    try:
        name = wait_for_request(watch, set(), 30.0)
        if name is None:
            raise BenchError("the agent wrote no request within 30 s (see agent-stderr.log)")
        if delay > 0:
            time.sleep(delay)
        t_answer = answer(dirs, name)
        ex = reap(proc)
    finally:
        kill_quietly(proc)
    if ex.rc != 0:
        raise BenchError(f"agent exited {ex.rc} (see agent-stderr.log)")
    remove_quietly(dirs.req / name)  # the responder's clean-up, off the clock
    return ProcessFence(ex.t_exit - t_answer, ex.t_exit - t_spawn)


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


# --------------------------------------------------------------------------- 1. latency


@dataclass
class Bench:
    work: Path
    runs: int
    poll_runs: int
    warmup: int
    seed: int
    errlog: IO[bytes]
    realtime: bool = False
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

    def process_series(
        self,
        tag: str,
        extra: list[str],
        runs: int,
        delays: Callable[[], float],
        floor: list[float] | None = None,
    ) -> list[ProcessFence]:
        """Agent processes one after another; with ``floor``, a floor probe
        runs after each fence so both see the same load."""
        dirs = self.fresh(tag)
        watch = Inotify(dirs.req)
        env = clean_env()
        out: list[ProcessFence] = []
        try:
            for _ in range(self.warmup):
                one_process_fence(dirs, watch, extra, env, self.errlog)
            for _ in range(runs):
                out.append(one_process_fence(dirs, watch, extra, env, self.errlog, delays()))
                if floor is not None:
                    floor.append(floor_probe())
            return out
        finally:
            watch.close()

    def in_process_series(self, runs: int) -> list[float]:
        from fence_gfs2_recorder import _native

        dirs = self.fresh("inproc")
        settings = _native.resolve_settings(
            request_dir=str(dirs.req),
            response_dir=str(dirs.resp),
            log_dir=str(dirs.log),
            fence_timeout="30",
            kubectl_path="",
        )
        watch = Inotify(dirs.req)
        out: list[float] = []
        try:
            for i in range(self.warmup + runs):
                got: dict[str, Any] = {}

                def call(box: dict[str, Any] = got) -> None:
                    box["result"] = _native.fence(settings, "reboot", TARGET.encode())
                    box["t"] = time.monotonic()

                watch.drain()
                th = threading.Thread(target=call)
                th.start()
                name = wait_for_request(watch, set(), 30.0)
                if name is None:
                    raise BenchError("in-process fence wrote no request within 30 s")
                t_answer = answer(dirs, name, stamp_before=True)
                th.join()
                if not got["result"].success:
                    raise BenchError(f"in-process fence failed: {got['result']!r}")
                remove_quietly(dirs.req / name)
                if i >= self.warmup:
                    out.append(got["t"] - t_answer)
        finally:
            watch.close()
        return out

    def baseline_series(self, runs: int, delays: Callable[[], float]) -> list[float]:
        """The original design: publish, then ``while not exists: sleep(0.5)``."""
        dirs = self.fresh("baseline")
        watch = Inotify(dirs.req)
        out: list[float] = []

        def waiter(box: dict[str, float]) -> None:
            rid = str(uuid.uuid4())
            req = {
                "request_id": rid,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "action": "reboot",
                "target_node": TARGET,
                "recorder_node": platform.node(),
            }
            write_atomic(dirs.req, f"{rid}.json", json.dumps(req, indent=2).encode())
            p = dirs.resp / f"{rid}.json"
            while not os.path.exists(p):
                time.sleep(0.5)
            json.loads(p.read_bytes())
            box["t"] = time.monotonic()

        try:
            for i in range(self.warmup + runs):
                box: dict[str, float] = {}
                watch.drain()
                th = threading.Thread(target=waiter, args=(box,))
                th.start()
                name = wait_for_request(watch, set(), 30.0)
                if name is None:
                    raise BenchError("baseline wrote no request")
                d = delays() if i >= self.warmup else 0.0
                if d > 0:
                    time.sleep(d)
                t_answer = answer(dirs, name)
                th.join()
                remove_quietly(dirs.req / name)
                if i >= self.warmup:
                    out.append(box["t"] - t_answer)
        finally:
            watch.close()
        return out

    def latency(self) -> None:
        rng = random.Random(self.seed)
        # The answer lands at a random point of the 0.5 s poll period, as it
        # would in real life; with inotify the delay makes no difference.
        poll_delay = lambda: rng.uniform(0.0, 0.5)  # noqa: E731
        log(f"1. latency: agent process, inotify ({self.runs} fences)")
        floor: list[float] = []
        inotify = self.process_series("lat-inotify", [], self.runs, lambda: ANSWER_AFTER_S, floor)
        log(f"1. latency: agent process, --force-poll ({self.poll_runs} fences)")
        polled = self.process_series(
            "lat-poll", ["--force-poll", "yes"], self.poll_runs, poll_delay
        )
        log(f"1. latency: in-process _native.fence ({self.runs} fences)")
        with normal_priority(self.realtime):
            inproc = self.in_process_series(self.runs)
        log(f"1. latency: baseline 0.5 s polling loop ({self.poll_runs} fences)")
        base = self.baseline_series(self.poll_runs, poll_delay)

        res = {
            "process_inotify": summary_ms([f.latency_s for f in inotify]),
            "process_inotify_wall": summary_ms([f.wall_s for f in inotify]),
            "floor_minimal_process": summary_ms(floor),
            "process_force_poll": summary_ms([f.latency_s for f in polled]),
            "in_process": summary_ms(inproc),
            "baseline_poll_loop": summary_ms(base),
            "note": "latency = response renamed into place -> agent reaped (process) or "
            "_native.fence returned (in-process, stamped just before the rename call); "
            "poll variants answer after a random 0-0.5 s delay so the answer lands at a "
            "random point of the poll period",
        }
        self.results["latency"] = res
        s = res["in_process"]
        self.row(
            "1 latency",
            "in-process rename->return p50/p99/max",
            f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
            "p99 <= 5 ms",
            s["p99"] <= 5.0,
        )
        s = res["process_inotify"]
        self.row(
            "1 latency",
            "agent process (inotify) rename->exit p50/p99/max",
            f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
            "p99 <= 10 ms",
            s["p99"] <= 10.0,
        )
        s = res["floor_minimal_process"]
        self.row(
            "1 latency",
            "floor: minimal python -S process event->exit p50/p99/max",
            f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
            "(reference)",
            None,
            "interleaved with the inotify fences: what this machine's load alone costs",
        )
        s = res["process_force_poll"]
        self.row(
            "1 latency",
            "agent process (--force-poll 0.5 s) rename->exit p50/p99/max",
            f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms",
            "(reference)",
            None,
            f"n={s['n']}",
        )
        s = res["baseline_poll_loop"]
        self.row(
            "1 latency",
            "baseline sleep(0.5) loop rename->seen p50/p99/max",
            f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms",
            "(reference)",
            None,
            f"n={s['n']}",
        )

    # ----------------------------------------------------------------------- 2. start-up

    def startup(self, rounds: int, runs: int) -> None:
        dirs = self.fresh("startup")
        agent_args = " ".join(dirs.argv())
        cmds = {
            "agent monitor": f"{AGENT} -o monitor {agent_args}",
            "fence_dummy monitor": f"{FENCE_DUMMY} -o monitor",
            "agent metadata": f"{AGENT} -o metadata",
            "fence_dummy metadata": f"{FENCE_DUMMY} -o metadata",
        }
        times: dict[str, list[float]] = {k: [] for k in cmds}
        cpu: dict[str, list[float]] = {k: [] for k in cmds}
        # Several short rounds, each running every command, so that load from
        # other jobs on the machine falls on all commands alike.
        for r in range(rounds):
            log(f"2. start-up: hyperfine round {r + 1}/{rounds}")
            out = self.work / f"hyperfine-{r}.json"
            argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--style", "none"]
            argv += ["--export-json", str(out), *cmds.values()]
            subprocess.run(
                argv,
                check=True,
                env=clean_env(),
                stdout=subprocess.DEVNULL,
                stderr=self.errlog,
            )
            data = json.loads(out.read_text())
            for key, res in zip(cmds, data["results"]):
                times[key].extend(res["times"])
                cpu[key].append(res["user"] + res["system"])
        stats = {k: summary_ms(v) for k, v in times.items()}
        cpu_ms = {k: sum(v) / len(v) * 1000.0 for k, v in cpu.items()}
        self.results["startup"] = {"commands": cmds, "stats_ms": stats, "cpu_ms": cpu_ms}
        for action in ("monitor", "metadata"):
            a, d = stats[f"agent {action}"], stats[f"fence_dummy {action}"]
            ratio = a["p50"] / d["p50"]
            mean_ratio = a["mean"] / d["mean"]
            self.results["startup"][f"{action}_ratio_median"] = ratio
            self.results["startup"][f"{action}_ratio_mean"] = mean_ratio
            self.row(
                "2 start-up",
                f"-o {action}: agent / fence_dummy median",
                f"{a['p50']:.1f} / {d['p50']:.1f} ms = {ratio:.2f}x",
                "<= 1.10x",
                ratio <= 1.10,
                f"mean ratio {mean_ratio:.2f}x; CPU (user+sys) {cpu_ms[f'agent {action}']:.0f}"
                f" / {cpu_ms[f'fence_dummy {action}']:.0f} ms = "
                f"{cpu_ms[f'agent {action}'] / cpu_ms[f'fence_dummy {action}']:.2f}x; n={a['n']}",
            )

    # ----------------------------------------------------------------------- 3. burst

    def burst(self, sizes: list[int]) -> None:
        res: dict[str, Any] = {
            "definition": "overhead = the agent's own elapsed_ms in its final JSONL record: "
            "engine start of the fence -> answer read (request write, wait, response read; "
            "it includes the responder's turnaround). As the harness sees it (inotify on "
            "both directories): spawn_to_request = agent spawned -> request renamed in; "
            "responder_turnaround = request in -> response renamed in; answer_to_exit = "
            "response renamed in -> agent reaped. process_wall = spawn -> reaped. "
            "cpu_per_fence = RUSAGE_CHILDREN (user+sys) delta / n (agents only)"
        }
        for n in sizes:
            log(f"3. burst of {n} agents against fence-gfs2-responder")
            res[str(n)] = self.one_burst(n)
            r = res[str(n)]
            self.row(
                "3 burst",
                f"{n} agents: wall; overhead p50/p99; cpu/fence",
                f"{r['burst_wall_ms']:.0f} ms; {r['overhead_ms']['p50']:.0f} / "
                f"{r['overhead_ms']['p99']:.0f} ms; {r['cpu_per_fence_ms']:.0f} ms",
                "p99 <= 50 ms" if n == 64 else "(reference)",
                r["overhead_ms"]["p99"] <= 50.0 if n == 64 else None,
                f"p50/p99: responder turnaround {r['responder_turnaround_ms']['p50']:.0f}/"
                f"{r['responder_turnaround_ms']['p99']:.0f} ms, answer->exit "
                f"{r['answer_to_exit_ms']['p50']:.0f}/{r['answer_to_exit_ms']['p99']:.0f} ms, "
                f"spawn->request {r['spawn_to_request_ms']['p50']:.0f}/"
                f"{r['spawn_to_request_ms']['p99']:.0f} ms",
            )
        self.results["burst"] = res

    def one_burst(self, n: int) -> dict[str, Any]:
        dirs = self.fresh(f"burst-{n}")
        argv = [RESPONDER, "--quiet", "--request-dir", str(dirs.req)]
        responder = subprocess.Popen(
            [*argv, "--response-dir", str(dirs.resp)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.errlog,
            env=clean_env(),
        )
        assert responder.stdout is not None
        responder.stdout.readline()  # the banner: it is about to watch
        time.sleep(0.2)
        # When the harness saw each request published and each response
        # renamed into place: request_id -> monotonic time.
        published: dict[str, float] = {}
        answered: dict[str, float] = {}
        watches = [(Inotify(dirs.req), published), (Inotify(dirs.resp), answered)]
        stop = threading.Event()

        def observe() -> None:
            poller = select.poll()
            for w, _seen in watches:
                poller.register(w.fd, select.POLLIN)
            while not stop.is_set():
                ready = {fd for fd, _ev in poller.poll(100)}
                t = time.monotonic()
                for w, seen in watches:
                    if w.fd in ready:
                        for name in w.events(0) or []:
                            if is_request_name(name):
                                seen.setdefault(name[: -len(".json")], t)

        observer = threading.Thread(target=observe)
        observer.start()
        procs: dict[int, tuple[str, float, subprocess.Popen[bytes]]] = {}
        exits: dict[str, tuple[int, float, float]] = {}  # target -> rc, spawned, reaped
        env = clean_env()
        try:
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            for i in range(n):
                target = f"compute-node-{i:03d}"
                p = spawn_agent(dirs, [], env, self.errlog, target)
                procs[p.pid] = (target, time.monotonic(), p)
            while len(exits) < n:
                pid, status, _ru = os.wait4(-1, 0)
                t = time.monotonic()
                if pid == responder.pid:
                    responder.returncode = os.waitstatus_to_exitcode(status)
                    raise BenchError("fence-gfs2-responder died during the burst")
                if pid not in procs:
                    continue
                target, t_spawn, p = procs[pid]
                p.returncode = os.waitstatus_to_exitcode(status)
                exits[target] = (p.returncode, t_spawn, t)
            t1 = time.monotonic()
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            stop.set()
            observer.join()
            for w, _seen in watches:
                w.close()
            for _t, _s, p in procs.values():
                kill_quietly(p)
            responder.terminate()
            responder.communicate(timeout=10)
        failed = [t for t, (rc, _s, _e) in exits.items() if rc != 0]
        if failed:
            raise BenchError(f"{len(failed)} of {n} agents failed (e.g. {failed[0]})")
        records = {r["target_node"]: r for r in dirs.final_records()}
        ids = {t: records[t]["request_id"] for t in exits}
        overhead = [records[t]["elapsed_ms"] / 1000.0 for t in exits]
        both = [t for t in exits if ids[t] in published and ids[t] in answered]
        turnaround = [answered[ids[t]] - published[ids[t]] for t in both]
        a2e = [exits[t][2] - answered[ids[t]] for t in both]
        to_publish = [published[ids[t]] - exits[t][1] for t in both]
        cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        walls = [t_exit - t_spawn for _rc, t_spawn, t_exit in exits.values()]
        return {
            "n": n,
            "burst_wall_ms": (t1 - t0) * 1000.0,
            "overhead_ms": summary_ms(overhead),
            "spawn_to_request_ms": summary_ms(to_publish),
            "responder_turnaround_ms": summary_ms(turnaround),
            "answer_to_exit_ms": summary_ms(a2e),
            "process_wall_ms": summary_ms(walls),
            "cpu_per_fence_ms": cpu / n * 1000.0,
            "fences_observed": len(both),
        }

    # ----------------------------------------------------------------------- 4. scale

    def scale(self, runs: int, responses: int, requests: int) -> None:
        empty = self.fresh("scale-empty")
        full = self.fresh("scale-full")
        log(f"4. scale: creating {responses} old responses and {requests} stale requests")
        t = time.monotonic()
        old = response_body({"request_id": "x", "target_node": "old-node", "action": "off"})
        for d, count, data in ((full.resp, responses, old), (full.req, requests, b"{}\n")):
            for _ in range(count):
                fd = os.open(d / f"{uuid.uuid4()}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                os.write(fd, data)
                os.close(fd)
        made = time.monotonic() - t
        log(f"4. scale: created in {made:.1f} s; {runs} fences in each, interleaved")
        env = clean_env()
        lat: dict[str, list[float]] = {"empty": [], "full": []}
        watches = {"empty": Inotify(empty.req), "full": Inotify(full.req)}
        try:
            for i in range(self.warmup + runs):
                for key, dirs in (("empty", empty), ("full", full)):
                    f = one_process_fence(dirs, watches[key], [], env, self.errlog)
                    if i >= self.warmup:
                        lat[key].append(f.latency_s)
        finally:
            for w in watches.values():
                w.close()
        t = time.monotonic()
        shutil.rmtree(full.root)
        removed = time.monotonic() - t
        e, f_ = summary_ms(lat["empty"]), summary_ms(lat["full"])
        ratio = f_["p50"] / e["p50"]
        self.results["scale"] = {
            "old_responses": responses,
            "stale_requests": requests,
            "create_s": made,
            "remove_s": removed,
            "empty": e,
            "full": f_,
            "ratio_p50": ratio,
            "ratio_p99": f_["p99"] / e["p99"],
        }
        self.row(
            "4 scale",
            "rename->exit p50 full / empty dirs",
            f"{f_['p50']:.2f} / {e['p50']:.2f} ms = {ratio:.2f}x",
            "<= 1.2x",
            ratio <= 1.2,
            f"p99 {f_['p99']:.1f} / {e['p99']:.1f} ms",
        )

    # ----------------------------------------------------------------------- 5. discovery

    def discovery(self, runs: int) -> None:
        root = self.work / "kubectl"
        root.mkdir(exist_ok=True)
        marker = root / "calls"
        data = REPO / "tests" / "data" / "nnfnodeblockstorages.json"
        out = f"cat '{data}'" if data.exists() else "echo '{\"items\": []}'"
        kubectl = root / "kubectl"
        kubectl.write_text(
            f"#!/bin/sh\n# stand-in kubectl: answers after 0.5 s\necho \"$*\" >> '{marker}'\n"
            f"sleep 0.5\n{out}\n"
        )
        kubectl.chmod(0o755)
        dirs = self.fresh("discovery")
        watch = Inotify(dirs.req)
        env = clean_env()
        walls: dict[str, list[float]] = {"off": [], "slow": []}
        lat: dict[str, list[float]] = {"off": [], "slow": []}
        log(f"5. discovery: {runs} fences with a 0.5 s kubectl and {runs} without, interleaved")
        try:
            for i in range(self.warmup + runs):
                for key, extra in (("off", []), ("slow", ["--kubectl-path", str(kubectl)])):
                    f = one_process_fence(dirs, watch, extra, env, self.errlog)
                    if i >= self.warmup:
                        walls[key].append(f.wall_s)
                        lat[key].append(f.latency_s)
        finally:
            watch.close()
        calls = len(marker.read_text().splitlines()) if marker.exists() else 0
        off, slow = summary_ms(walls["off"]), summary_ms(walls["slow"])
        ratio = slow["p50"] / off["p50"]
        self.results["discovery"] = {
            "kubectl_calls": calls,
            "fences_with_kubectl": self.warmup + runs,
            "wall_off": off,
            "wall_slow_kubectl": slow,
            "latency_off": summary_ms(lat["off"]),
            "latency_slow_kubectl": summary_ms(lat["slow"]),
            "ratio_p50": ratio,
            "ratio_p99": slow["p99"] / off["p99"],
        }
        note = f"kubectl ran {calls} times for {self.warmup + runs} fences"
        if calls == 0:
            note += " (discovery not active in this build: the figure shows no cost yet)"
        self.row(
            "5 discovery",
            "fence wall p50 slow kubectl / off",
            f"{slow['p50']:.1f} / {off['p50']:.1f} ms = {ratio:.2f}x",
            "<= 1.05x",
            ratio <= 1.05,
            note,
        )

    # ----------------------------------------------------------------------- 6. memory

    def memory(self, runs: int) -> None:
        log(f"6. memory: agent fences, agent -o monitor, fence_dummy -o monitor x{runs}")
        dirs = self.fresh("memory")
        env = clean_env()
        watch = Inotify(dirs.req)
        fence: list[int] = []
        try:
            for _ in range(runs):
                watch.drain()
                argv = [AGENT, "-o", "reboot", "-n", TARGET, *dirs.argv()]
                proc = spawn_measured(argv, env, self.errlog)
                try:
                    name = wait_for_request(watch, set(), 30.0)
                    if name is None:
                        raise BenchError("memory: the agent wrote no request")
                    answer(dirs, name)
                    fence.append(measured_maxrss(proc))
                finally:
                    kill_quietly(proc)
                remove_quietly(dirs.req / name)
        finally:
            watch.close()

        def maxrss(argv: list[str]) -> list[int]:
            return [measured_maxrss(spawn_measured(argv, env, self.errlog)) for _ in range(runs)]

        dummy = maxrss([FENCE_DUMMY, "-o", "monitor"])
        monitor = maxrss([AGENT, "-o", "monitor", *dirs.argv()])
        spawner = maxrss(["/bin/true"])
        d50 = pct([float(x) for x in dummy], 50)
        m50 = pct([float(x) for x in monitor], 50)
        f_max = float(max(fence))
        diff_mib = (f_max - d50) / 1024.0
        self.results["memory"] = {
            "unit": "KiB (ru_maxrss from wait4, started by a small spawner)",
            "fence_dummy_monitor": {"p50": d50, "max": max(dummy)},
            "agent_monitor": {"p50": m50, "max": max(monitor)},
            "agent_fence": {"p50": pct([float(x) for x in fence], 50), "max": f_max},
            "spawner_floor_bin_true": max(spawner),
            "diff_fence_max_vs_dummy_p50_mib": diff_mib,
        }
        self.row(
            "6 memory",
            "peak RSS agent fence (max) - fence_dummy monitor (p50)",
            f"{f_max / 1024:.1f} - {d50 / 1024:.1f} MiB = {diff_mib:+.1f} MiB",
            "<= +10 MiB",
            diff_mib <= 10.0,
            f"agent -o monitor p50 {m50 / 1024:.1f} MiB; floor of the method "
            f"(/bin/true) {max(spawner) / 1024:.1f} MiB",
        )

    # ----------------------------------------------------------------------- 7. journal

    def journal(self, per_single: int, writers: int, per_writer: int) -> None:
        res: dict[str, Any] = {
            "definition": "engine: refused-target fences through _native.fence (no exchange); "
            "each writes one event record = one line in the readable log, one JSONL line and "
            "3 main-log lines, each on its own O_APPEND open/write/close. python: the same "
            "5 appends per record with os.open/os.write/os.close (baseline)"
        }
        for kind in ("engine", "python"):
            for procs, per in ((1, per_single), (writers, per_writer)):
                log(f"7. journal: {kind}, {procs} process(es) x {per} records")
                rate, lines = self.journal_run(kind, procs, per)
                res[f"{kind}_{procs}"] = {"records_per_s": rate, "records": procs * per}
                if lines != procs * per:
                    raise BenchError(f"journal: {lines} JSONL lines for {procs * per} records")
                self.row(
                    "7 journal",
                    f"{kind}: records/s, {procs} process{'es' if procs > 1 else ''}",
                    f"{rate:,.0f} /s",
                    "(no target)",
                    None,
                    "Python os.write baseline" if kind == "python" else "via refused fences",
                )
        self.results["journal"] = res

    def journal_run(self, kind: str, procs: int, per: int) -> tuple[float, int]:
        dirs = self.fresh(f"journal-{kind}-{procs}")
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "journal-worker", kind, str(dirs.root), str(per)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.errlog,
                env=clean_env(),
                text=True,
            )
            for _ in range(procs)
        ]
        try:
            for w in workers:
                assert w.stdout is not None
                if w.stdout.readline().strip() != "ready":
                    raise BenchError("journal worker did not start")
            t0 = time.monotonic()
            for w in workers:
                assert w.stdin is not None
                w.stdin.write("go\n")
                w.stdin.flush()
            ends = []
            for w in workers:
                out, _ = w.communicate(timeout=300)
                if w.returncode != 0:
                    raise BenchError("journal worker failed (see agent-stderr.log)")
                ends.append(float(out.split()[1]))
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
        wall = max(ends) - t0
        jsonl = dirs.log / "fence-events-detailed.jsonl"
        lines = 0
        with jsonl.open() as fh:
            for line in fh:
                json.loads(line)  # every line whole: no interleaving
                lines += 1
        return procs * per / wall, lines


def journal_worker(kind: str, root: str, n: int) -> None:
    """One writer of the journal benchmark (runs in its own process)."""
    logs = Path(root) / "logs"
    one: Callable[[int], None]
    if kind == "engine":
        from fence_gfs2_recorder import _native

        settings = _native.resolve_settings(
            request_dir=f"{root}/requests",
            response_dir=f"{root}/responses",
            log_dir=str(logs),
            kubectl_path="",
        )
        tag = f"bad/{os.getpid()}"

        def one(i: int) -> None:
            r = _native.fence(settings, "off", f"{tag}-{i}".encode())
            if r.kind != "refused":
                raise SystemExit(f"unexpected outcome {r!r}")

    else:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        main_log = str(logs / "fence-events.log")
        readable = str(logs / "fence-events-readable.log")
        detailed = str(logs / "fence-events-detailed.jsonl")
        host = platform.node()

        def append(path: str, data: bytes) -> None:
            fd = os.open(path, flags, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

        def one(i: int) -> None:
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            target = f"bad/{os.getpid()}-{i}"
            append(main_log, f"[{now}] [INFO] Fence action requested: off for {target}\n".encode())
            append(main_log, f"[{now}] [ERROR] refused target {target!r}\n".encode())
            append(
                readable,
                f"[{now}] ACTION=off TARGET={target} GFS2=[] STATUS=failed DETAILS=x\n".encode(),
            )
            rec = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "action": "off",
                "target_node": target,
                "status": "failed",
                "details": "refused",
                "recorder_node": host,
                "pacemaker_action": "off",
                "gfs2_filesystems": [],
            }
            append(detailed, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
            append(main_log, f"[{now}] [INFO] Recorded fence event: target={target}\n".encode())

    logs.mkdir(parents=True, exist_ok=True)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    for i in range(n):
        one(i)
    print(f"{t0} {time.monotonic()}", flush=True)


# --------------------------------------------------------------------------- report


def command_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import fence_gfs2_recorder

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "system_python": command_line(["/usr/bin/python3", "--version"]),
        "rustc": command_line(["rustc", "--version"]),
        "hyperfine": command_line(["hyperfine", "--version"]),
        "fence_agents": command_line(["dpkg-query", "-W", "-f=${Version}", "fence-agents"]),
        "agent_version": fence_gfs2_recorder.__version__,
        "tmp_filesystem": command_line(["findmnt", "-n", "-o", "FSTYPE", "-T", "/tmp"]),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    heads = ("section", "metric", "figure", "target", "result")
    cells = [
        (
            r["section"],
            r["metric"],
            r["figure"],
            r["target"],
            "-" if r["met"] is None else ("met" if r["met"] else "NOT MET"),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
    print(line)
    print("-" * len(line))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    notes = [(r["section"], r["metric"], r["note"]) for r in rows if r["note"]]
    if notes:
        print()
        for section, metric, note in notes:
            print(f"  {section} / {metric}: {note}")


def main(argv: list[str] | None = None) -> int:
    global AGENT
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["journal-worker"]:
        journal_worker(args[1], args[2], int(args[3]))
        return 0
    p = argparse.ArgumentParser(description="fence_gfs2_recorder benchmarks")
    p.add_argument("--work", type=Path, required=True, help="scratch directory (emptied)")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    p.add_argument("--runs", type=int, default=200, help="fences per latency variant")
    p.add_argument("--poll-runs", type=int, default=40, help="fences per 0.5 s poll variant")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured fences per series")
    p.add_argument("--scale-runs", type=int, default=60)
    p.add_argument("--discovery-runs", type=int, default=30)
    p.add_argument("--bursts", default="16,64,256")
    p.add_argument("--hyperfine-rounds", type=int, default=3)
    p.add_argument("--hyperfine-runs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--no-realtime",
        dest="realtime",
        action="store_false",
        help="do not run the harness's stamps at SCHED_FIFO",
    )
    p.add_argument("--agent", type=Path, default=Path(AGENT), help="agent executable to measure")
    p.add_argument(
        "--only", default="", help="comma-separated sections to run (latency,startup,...)"
    )
    ns = p.parse_args(args)

    for k in list(os.environ):
        if k in OUR_ENV or k.startswith("FENCE_"):
            del os.environ[k]
    os.environ["FENCE_KUBECTL"] = ""
    work: Path = ns.work
    work.mkdir(parents=True, exist_ok=True)
    only = {s for s in ns.only.split(",") if s}
    AGENT = str(ns.agent)
    started = time.monotonic()
    with (work / "agent-stderr.log").open("wb") as errlog:
        b = Bench(work, ns.runs, ns.poll_runs, ns.warmup, ns.seed, errlog)
        b.realtime = ns.realtime and set_realtime(True)
        b.results["harness_sched_fifo"] = b.realtime
        b.results["machine"] = machine()
        b.results["agent"] = AGENT
        b.results["load_before"] = os.getloadavg()
        b.results["sections"] = {}
        sections: list[tuple[str, Callable[[], None]]] = [
            ("latency", b.latency),
            ("startup", lambda: b.startup(ns.hyperfine_rounds, ns.hyperfine_runs)),
            ("burst", lambda: b.burst([int(x) for x in ns.bursts.split(",") if x])),
            ("scale", lambda: b.scale(ns.scale_runs, 100_000, 10_000)),
            ("discovery", lambda: b.discovery(ns.discovery_runs)),
            ("memory", lambda: b.memory(10)),
            ("journal", lambda: b.journal(5000, 32, 500)),
        ]
        try:
            for name, run in sections:
                if only and name not in only:
                    continue
                t = time.monotonic()
                load = os.getloadavg()[0]
                run()
                b.results["sections"][name] = {
                    "seconds": time.monotonic() - t,
                    "load_1min_before": load,
                    "load_1min_after": os.getloadavg()[0],
                }
        except BenchError as e:
            log(f"FAILED: {e}")
            return 1
        b.results["load_after"] = os.getloadavg()
        b.results["duration_s"] = time.monotonic() - started
        b.results["rows"] = b.rows
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(json.dumps(b.results, indent=2) + "\n")
    print()
    print_table(b.rows)
    m = b.results["machine"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']}; "
        f"load {b.results['load_before'][0]:.1f} -> {b.results['load_after'][0]:.1f}; "
        f"{b.results['duration_s']:.0f} s; written {ns.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
