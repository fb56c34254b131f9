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
from dataclasses import dataclass, field
from typing import Any

from .common import (
    TARGET,
    AnswerSplit,
    AnswerWatch,
    BenchError,
    Context,
    FloorSplit,
    Inotify,
    ProcessFence,
    answer,
    clean_env,
    floor_inotify_probe,
    floor_probe,
    log,
    normal_priority,
    one_process_fence,
    remove_quietly,
    summary_ms,
    wait_for_request,
    write_atomic,
)


@dataclass
class Floors:
    """The floor probes run beside a series, fence by fence."""

    pipe: list[float] = field(default_factory=list)
    inotify: list[FloorSplit] = field(default_factory=list)


def process_series(
    ctx: Context,
    tag: str,
    extra: list[str],
    runs: int,
    delays: Callable[[], float],
    floor: Floors | None = None,
    baseline: dict[str, list[ProcessFence]] | None = None,
) -> list[ProcessFence]:
    """Agent processes one after another; with ``floor``, the floor probes
    run after each fence so all see the same load, and each fence's answer ->
    exit time is split into its parts; with ``baseline``, a fence of each
    baseline agent follows each, answered after the same delay."""
    dirs = ctx.fresh(tag)
    watch = Inotify(dirs.req)
    split = AnswerWatch(dirs) if floor is not None else None
    probe_dir = dirs.root / "floor"
    probe_dir.mkdir()
    env = clean_env()
    out: list[ProcessFence] = []
    try:
        others = ctx.baseline_agents if baseline is not None else []
        for _ in range(ctx.warmup):
            for agent in [ctx.agent, *others]:
                one_process_fence(ctx, dirs, watch, extra, env, agent=agent)
        for _ in range(runs):
            delay = delays()
            out.append(one_process_fence(ctx, dirs, watch, extra, env, delay, split))
            for agent in others:
                assert baseline is not None
                baseline.setdefault(agent, []).append(
                    one_process_fence(ctx, dirs, watch, extra, env, delay, split, agent=agent)
                )
            if floor is not None:
                floor.pipe.append(floor_probe())
                floor.inotify.append(floor_inotify_probe(probe_dir))
        return out
    finally:
        watch.close()
        if split is not None:
            split.close()


def split_summary(splits: list[AnswerSplit]) -> dict[str, dict[str, float]]:
    return {p: summary_ms([s.parts()[p] for s in splits]) for p in AnswerSplit.PARTS}


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
    lo, hi = ctx.answer_after
    log(
        f"1. latency: agent process, inotify ({ctx.runs} fences, "
        f"answered {lo * 1e3:g}-{hi * 1e3:g} ms after the request)"
    )
    floor = Floors()
    other: dict[str, list[ProcessFence]] = {}
    inotify = process_series(
        ctx, "lat-inotify", [], ctx.runs, lambda: rng.uniform(lo, hi), floor, other
    )
    splits = [f.split for f in inotify if f.split is not None]
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
        "floor_minimal_process": summary_ms(floor.pipe),
        "floor_inotify_process": summary_ms([f.wake_s + f.exit_s for f in floor.inotify]),
        "process_force_poll": summary_ms([f.latency_s for f in polled]),
        "in_process": summary_ms(inproc),
        "baseline_poll_loop": summary_ms(base),
    }
    ctx.results["latency"] = {
        **stats,
        "answer_after_ms": [lo * 1e3, hi * 1e3],
        "process_inotify_split": split_summary(splits),
        "process_inotify_split_n": len(splits),
        "floor_inotify_split": {
            "wake": summary_ms([f.wake_s for f in floor.inotify]),
            "exit": summary_ms([f.exit_s for f in floor.inotify]),
        },
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
    sp = ctx.results["latency"]["process_inotify_split"]
    fl = ctx.results["latency"]["floor_inotify_split"]
    for q in ("p50", "p99"):
        parts = " + ".join(f"{p} {sp[p][q]:.2f}" for p in AnswerSplit.PARTS)
        ctx.row(
            "1 latency",
            f"agent rename->exit split, {q} of each part",
            f"{parts} ms",
            "(reference)",
            None,
            f"floor: wake {fl['wake'][q]:.2f} + exit {fl['exit'][q]:.2f} ms; n={len(splits)}",
        )
    ctx.results["latency"]["baseline_agents"] = []
    for i, (agent, fences) in enumerate(other.items(), 1):
        b = summary_ms([f.latency_s for f in fences])
        bs = split_summary([f.split for f in fences if f.split is not None])
        ctx.results["latency"]["baseline_agents"].append(
            {"agent": agent, "process_inotify": b, "process_inotify_split": bs}
        )
        ctx.row(
            "1 latency",
            f"baseline agent {i} (inotify) rename->exit p50/p99/max",
            f"{b['p50']:.2f} / {b['p99']:.2f} / {b['max']:.2f} ms",
            "(reference)",
            None,
            f"{agent}, fence by fence beside the agent",
        )
        for q in ("p50", "p99"):
            parts = " + ".join(f"{p} {bs[p][q]:.2f}" for p in AnswerSplit.PARTS)
            ctx.row(
                "1 latency", f"baseline agent {i} split, {q} of each part", f"{parts} ms", "", None
            )
    s = stats["floor_inotify_process"]
    ctx.row(
        "1 latency",
        "floor: bare python -S woken by inotify, rename->exit p50/p99/max",
        f"{s['p50']:.2f} / {s['p99']:.2f} / {s['max']:.2f} ms",
        "(reference)",
        None,
        "interleaved with the inotify fences: the same event, no agent",
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
