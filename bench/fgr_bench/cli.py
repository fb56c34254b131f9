"""The command line: builds the run's :class:`Context`, runs the chosen
sections in order, prints the table and writes the JSON file."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import burst, discovery, dummy, journal, latency, memory, scale, startup
from .common import DEFAULT_AGENT, BenchError, Context, clean_own_environment, log, set_realtime
from .report import machine, print_table

Section = Callable[[Context, argparse.Namespace], None]

# In the order they run; the names are those --only takes.
SECTIONS: dict[str, Section] = {
    "latency": lambda ctx, ns: latency.run(ctx),
    "startup": lambda ctx, ns: startup.run(ctx, ns.hyperfine_rounds, ns.hyperfine_runs),
    "burst": lambda ctx, ns: burst.run(ctx, [int(x) for x in ns.bursts.split(",") if x]),
    "scale": lambda ctx, ns: scale.run(ctx, ns.scale_runs, 100_000, 10_000),
    "discovery": lambda ctx, ns: discovery.run(ctx, ns.discovery_runs),
    "memory": lambda ctx, ns: memory.run(ctx, 10),
    "journal": lambda ctx, ns: journal.run(ctx, 5000, 32, 500),
    "fence_dummy": lambda ctx, ns: dummy.run(ctx, ns.fence_dummy, ns.dummy_runs),
}


def sections_arg(text: str) -> set[str]:
    names = {s for s in text.split(",") if s}
    unknown = sorted(names - SECTIONS.keys())
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown)}; known: {','.join(SECTIONS)}"
        )
    return names


def answer_after_arg(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition("-")
    try:
        bounds = (float(lo) / 1e3, float(hi or lo) / 1e3)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected LO-HI or one value in ms, got {text!r}"
        ) from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI, got {text!r}")
    return bounds


def parser() -> argparse.ArgumentParser:
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
        "--answer-after",
        type=answer_after_arg,
        default=(0.0, 0.05),
        help="ms after the request appears that the latency section answers it: "
        "LO-HI (uniformly random) or one value (default 0-50)",
    )
    p.add_argument(
        "--no-realtime",
        dest="realtime",
        action="store_false",
        help="do not run the harness's stamps at SCHED_FIFO",
    )
    p.add_argument(
        "--fence-dummy",
        default=None,
        metavar="PATH",
        help="fence_dummy.py with recorder mode (a fence-agents checkout's "
        "agents/dummy/fence_dummy.py) for section fence_dummy; skipped without it",
    )
    p.add_argument("--dummy-runs", type=int, default=40, help="fences per agent, fence_dummy")
    p.add_argument("--agent", type=Path, default=DEFAULT_AGENT, help="agent executable to measure")
    p.add_argument(
        "--baseline-agent",
        type=Path,
        action="append",
        default=[],
        help="another agent executable (e.g. an older build) whose latency fences "
        "run one by one beside the agent's (repeatable)",
    )
    p.add_argument(
        "--only",
        type=sections_arg,
        default=set(),
        help=f"comma-separated sections to run ({','.join(SECTIONS)})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    ns = parser().parse_args(sys.argv[1:] if argv is None else argv)
    clean_own_environment()
    work: Path = ns.work
    work.mkdir(parents=True, exist_ok=True)
    only: set[str] = ns.only
    started = time.monotonic()
    with (work / "agent-stderr.log").open("wb") as errlog:
        ctx = Context(work, ns.runs, ns.poll_runs, ns.warmup, ns.seed, errlog, agent=str(ns.agent))
        ctx.answer_after = ns.answer_after
        ctx.baseline_agents = [str(a) for a in ns.baseline_agent]
        ctx.realtime = ns.realtime and set_realtime(True)
        ctx.results["harness_sched_fifo"] = ctx.realtime
        ctx.results["machine"] = machine()
        ctx.results["agent"] = ctx.agent
        ctx.results["load_before"] = os.getloadavg()
        ctx.results["sections"] = {}
        try:
            for name, run in SECTIONS.items():
                if only and name not in only:
                    continue
                t = time.monotonic()
                load = os.getloadavg()[0]
                run(ctx, ns)
                ctx.results["sections"][name] = {
                    "seconds": time.monotonic() - t,
                    "load_1min_before": load,
                    "load_1min_after": os.getloadavg()[0],
                }
        except BenchError as e:
            log(f"FAILED: {e}")
            return 1
        ctx.results["load_after"] = os.getloadavg()
        ctx.results["duration_s"] = time.monotonic() - started
        ctx.results["rows"] = ctx.rows
    out: Path = ns.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ctx.results, indent=2) + "\n")
    print()
    print_table(ctx.rows)
    m = ctx.results["machine"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, kernel {m['kernel']}, Python {m['python']}; "
        f"load {ctx.results['load_before'][0]:.1f} -> {ctx.results['load_after'][0]:.1f}; "
        f"{ctx.results['duration_s']:.0f} s; written {out}"
    )
    return 0
