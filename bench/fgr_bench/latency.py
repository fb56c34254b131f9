"""1. Answer latency: the response renamed into place -> the agent's exit (a
process) or return (in-process), against the original 0.5 s polling loop."""

from __future__ import annotations

import json
import os
import platform
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .common import (
    ANSWER_AFTER_S,
    TARGET,
    BenchError,
    Context,
    Inotify,
    ProcessFence,
    answer,
    clean_env,
    floor_probe,
    log,
    normal_priority,
    one_process_fence,
    remove_quietly,
    summary_ms,
    wait_for_request,
    write_atomic,
)


def process_series(
    ctx: Context,
    tag: str,
    extra: list[str],
    runs: int,
    delays: Callable[[], float],
    floor: list[float] | None = None,
) -> list[ProcessFence]:
    """Agent processes one after another; with ``floor``, a floor probe
    runs after each fence so both see the same load."""
    dirs = ctx.fresh(tag)
    watch = Inotify(dirs.req)
    env = clean_env()
    out: list[ProcessFence] = []
    try:
        for _ in range(ctx.warmup):
            one_process_fence(ctx, dirs, watch, extra, env)
        for _ in range(runs):
            out.append(one_process_fence(ctx, dirs, watch, extra, env, delays()))
            if floor is not None:
                floor.append(floor_probe())
        return out
    finally:
        watch.close()


def in_process_series(ctx: Context, runs: int) -> list[float]:
    from fence_gfs2_recorder import _native

    dirs = ctx.fresh("inproc")
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
        for i in range(ctx.warmup + runs):
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
            if i >= ctx.warmup:
                out.append(got["t"] - t_answer)
    finally:
        watch.close()
    return out


def baseline_series(ctx: Context, runs: int, delays: Callable[[], float]) -> list[float]:
    """The original design: publish, then ``while not exists: sleep(0.5)``."""
    dirs = ctx.fresh("baseline")
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
        for i in range(ctx.warmup + runs):
            box: dict[str, float] = {}
            watch.drain()
            th = threading.Thread(target=waiter, args=(box,))
            th.start()
            name = wait_for_request(watch, set(), 30.0)
            if name is None:
                raise BenchError("baseline wrote no request")
            d = delays() if i >= ctx.warmup else 0.0
            if d > 0:
                time.sleep(d)
            t_answer = answer(dirs, name)
            th.join()
            remove_quietly(dirs.req / name)
            if i >= ctx.warmup:
                out.append(box["t"] - t_answer)
    finally:
        watch.close()
    return out


def run(ctx: Context) -> None:
    rng = random.Random(ctx.seed)
    # The answer lands at a random point of the 0.5 s poll period, as it
    # would in real life; with inotify the delay makes no difference.
    poll_delay = lambda: rng.uniform(0.0, 0.5)  # noqa: E731
    log(f"1. latency: agent process, inotify ({ctx.runs} fences)")
    floor: list[float] = []
    inotify = process_series(ctx, "lat-inotify", [], ctx.runs, lambda: ANSWER_AFTER_S, floor)
    log(f"1. latency: agent process, --force-poll ({ctx.poll_runs} fences)")
    polled = process_series(ctx, "lat-poll", ["--force-poll", "yes"], ctx.poll_runs, poll_delay)
    log(f"1. latency: in-process _native.fence ({ctx.runs} fences)")
    with normal_priority(ctx.realtime):
        inproc = in_process_series(ctx, ctx.runs)
    log(f"1. latency: baseline 0.5 s polling loop ({ctx.poll_runs} fences)")
    base = baseline_series(ctx, ctx.poll_runs, poll_delay)

    stats = {
        "process_inotify": summary_ms([f.latency_s for f in inotify]),
        "process_inotify_wall": summary_ms([f.wall_s for f in inotify]),
        "floor_minimal_process": summary_ms(floor),
        "process_force_poll": summary_ms([f.latency_s for f in polled]),
        "in_process": summary_ms(inproc),
        "baseline_poll_loop": summary_ms(base),
    }
    ctx.results["latency"] = {
        **stats,
        "note": "latency = response renamed into place -> agent reaped (process) or "
        "_native.fence returned (in-process, stamped just before the rename call); "
        "poll variants answer after a random 0-0.5 s delay so the answer lands at a "
        "random point of the poll period",
    }
    s = stats["in_process"]
    ctx.row(
        "1 latency",
        "in-process rename->return p50/p99/max",
        f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
        "p99 <= 5 ms",
        s["p99"] <= 5.0,
    )
    s = stats["process_inotify"]
    ctx.row(
        "1 latency",
        "agent process (inotify) rename->exit p50/p99/max",
        f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
        "p99 <= 10 ms",
        s["p99"] <= 10.0,
    )
    s = stats["floor_minimal_process"]
    ctx.row(
        "1 latency",
        "floor: minimal python -S process event->exit p50/p99/max",
        f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
        "(reference)",
        None,
        "interleaved with the inotify fences: what this machine's load alone costs",
    )
    s = stats["process_force_poll"]
    ctx.row(
        "1 latency",
        "agent process (--force-poll 0.5 s) rename->exit p50/p99/max",
        f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms",
        "(reference)",
        None,
        f"n={s['n']}",
    )
    s = stats["baseline_poll_loop"]
    ctx.row(
        "1 latency",
        "baseline sleep(0.5) loop rename->seen p50/p99/max",
        f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f} ms",
        "(reference)",
        None,
        f"n={s['n']}",
    )
