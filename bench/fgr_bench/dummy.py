"""8. Side by side with fence_dummy in recorder mode, the agent NNF's HA guide
deploys: the same harness answers both (at the request's own name, which
both agents read their answer from).

fence_dummy's recorder mode is in no fence-agents release yet: its file
(``agents/dummy/fence_dummy.py`` of a fence-agents checkout that has it) is
given with ``--fence-dummy PATH`` and run by the system Python with the
system's fencing.py. Nothing of it is part of this project; without the
option the section is skipped.

- answer latency: the answer lands at a random point of fence_dummy's 0.5 s
  poll period (the same random delay for both agents); renamed -> exit;
- a silent storage side under Pacemaker's default action timeout: both
  agents with their default timeouts, SIGKILLed 60 s after they start, as
  the fencer does; who ended the wait, and what is left in the request
  directory;
- ``status`` after a successful fence.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from .common import (
    TARGET,
    BenchError,
    Context,
    Dirs,
    Inotify,
    answer,
    clean_env,
    kill_quietly,
    log,
    reap,
    remove_quietly,
    summary_ms,
    wait_for_request,
)

SYSTEM_PYTHON = "/usr/bin/python3"
FENCE_LIB = "/usr/share/fence"
PACEMAKER_TIMEOUT_S = 60.0  # Pacemaker's default action timeout


def dummy_argv(path: str, dirs: Dirs, action: str, *extra: str) -> list[str]:
    return [
        SYSTEM_PYTHON,
        path,
        "--type=recorder",
        "-o",
        action,
        "-n",
        TARGET,
        f"--request-path={dirs.req}",
        f"--response-path={dirs.resp}",
        f"--log-path={dirs.log}",
        *extra,
    ]


def agent_argv(ctx: Context, dirs: Dirs, action: str, *extra: str) -> list[str]:
    return [ctx.agent, "-o", action, "-n", TARGET, *dirs.argv(), *extra]


def dummy_env() -> dict[str, str]:
    # fence_dummy's checkout copy still says @FENCEAGENTSLIBDIR@: the system's
    # fencing.py is found through PYTHONPATH.
    return clean_env(PYTHONPATH=FENCE_LIB)


def one_fence(
    argv: list[str], dirs: Dirs, watch: Inotify, env: dict[str, str], delay: float, errlog: Any
) -> float:
    """Renamed answer -> process reaped, in seconds."""
    watch.drain()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog, env=env
    )
    try:
        name = wait_for_request(watch, set(), 30.0)
        if name is None:
            raise BenchError(f"{argv[:2]} wrote no request within 30 s (see agent-stderr.log)")
        time.sleep(delay)
        t_answer = answer(dirs, name)
        ex = reap(proc)
    finally:
        kill_quietly(proc)
    if ex.rc != 0:
        raise BenchError(f"{argv[:2]} exited {ex.rc} (see agent-stderr.log)")
    remove_quietly(dirs.req / name)
    return ex.t_exit - t_answer


def latency(ctx: Context, path: str, runs: int) -> dict[str, dict[str, float]]:
    rng = random.Random(ctx.seed)
    delays = [rng.uniform(0.0, 0.5) for _ in range(ctx.warmup + runs)]
    out: dict[str, list[float]] = {"agent": [], "fence_dummy": []}
    dirs = {k: ctx.fresh(f"dummy-lat-{k}") for k in out}
    watches = {k: Inotify(d.req) for k, d in dirs.items()}
    try:
        # Interleaved fence by fence, so both see the same load.
        for i, delay in enumerate(delays):
            for k in out:
                d = dirs[k]
                argv = (
                    agent_argv(ctx, d, "reboot", "--fence-timeout", "30")
                    if k == "agent"
                    else dummy_argv(path, d, "reboot", "--recorder-timeout=30")
                )
                env = clean_env() if k == "agent" else dummy_env()
                took = one_fence(argv, d, watches[k], env, delay, ctx.errlog)
                if i >= ctx.warmup:
                    out[k].append(took)
    finally:
        for w in watches.values():
            w.close()
    return {k: summary_ms(v) for k, v in out.items()}


def silent(ctx: Context, path: str) -> dict[str, dict[str, Any]]:
    """Both with their default timeouts, no answer, SIGKILL at 60 s."""
    found: dict[str, dict[str, Any]] = {}

    def one(kind: str) -> None:
        d = ctx.fresh(f"dummy-silent-{kind}")
        argv = agent_argv(ctx, d, "reboot") if kind == "agent" else dummy_argv(path, d, "reboot")
        env = clean_env() if kind == "agent" else dummy_env()
        t = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ctx.errlog, env=env
        )
        try:
            proc.wait(timeout=PACEMAKER_TIMEOUT_S)
            ended = f"itself (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            ended = "Pacemaker's SIGKILL"
        left = sorted(p.name for p in d.req.iterdir())
        found[kind] = {
            "ended_by": ended,
            "after_s": round(time.monotonic() - t, 1),
            "requests_left": len([n for n in left if n.endswith(".json")]),
            "temp_files_left": len([n for n in left if n.startswith(".")]),
            "final_record": bool(d.final_records()) if kind == "agent" else None,
        }

    threads = [threading.Thread(target=one, args=(k,)) for k in ("agent", "fence_dummy")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return found


def status_after_fence(ctx: Context, path: str) -> dict[str, str]:
    """`status` of the target once its fence succeeded (answered at once)."""
    said: dict[str, str] = {}
    for kind in ("agent", "fence_dummy"):
        d = ctx.fresh(f"dummy-status-{kind}")
        watch = Inotify(d.req)
        try:
            argv = (
                agent_argv(ctx, d, "reboot", "--fence-timeout", "30")
                if kind == "agent"
                else dummy_argv(path, d, "reboot", "--recorder-timeout=30")
            )
            env = clean_env() if kind == "agent" else dummy_env()
            one_fence(argv, d, watch, env, 0.05, ctx.errlog)
        finally:
            watch.close()
        argv = agent_argv(ctx, d, "status") if kind == "agent" else dummy_argv(path, d, "status")
        r = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=clean_env() if kind == "agent" else dummy_env(),
            timeout=60,
        )
        said[kind] = f"{r.stdout.strip() or r.stderr.strip()[:80]} (exit {r.returncode})"
    return said


def run(ctx: Context, path: str | None, runs: int) -> None:
    if path is None:
        log("8. fence_dummy recorder mode: skipped (no FENCE_DUMMY given)")
        ctx.row("8 fence_dummy", "side by side", "skipped: no FENCE_DUMMY given", "", None)
        return
    if not Path(path).is_file():
        raise BenchError(f"FENCE_DUMMY {path}: no such file")
    log(f"8. fence_dummy recorder mode: latency ({runs} fences each, interleaved)")
    lat = latency(ctx, path, runs)
    log("8. fence_dummy recorder mode: silent storage side, 60 s")
    quiet = silent(ctx, path)
    log("8. fence_dummy recorder mode: status after a fence")
    status = status_after_fence(ctx, path)
    ctx.results["fence_dummy"] = {
        "path": path,
        "latency_ms": lat,
        "silent": quiet,
        "status_after_fence": status,
        "note": "answer renamed into place after a random 0-0.5 s delay -> process reaped; "
        "silent: default timeouts (agent fence_timeout 25 s, fence_dummy "
        "recorder_timeout 60 s), SIGKILL 60 s after the start",
    }
    a, d = lat["agent"], lat["fence_dummy"]
    ctx.row(
        "8 fence_dummy",
        "answer->exit p50/p99: agent / fence_dummy recorder",
        f"{a['p50']:.1f} / {a['p99']:.1f} ms vs {d['p50']:.1f} / {d['p99']:.1f} ms",
        "(side by side)",
        None,
        f"n={a['n']} each",
    )
    for kind in ("agent", "fence_dummy"):
        q = quiet[kind]
        ctx.row(
            "8 fence_dummy",
            f"silent storage side, {kind}: wait ended by",
            f"{q['ended_by']} after {q['after_s']} s; requests left {q['requests_left']}",
            "(side by side)",
            None,
        )
        ctx.row("8 fence_dummy", f"status after a fence, {kind}", status[kind], "", None)
