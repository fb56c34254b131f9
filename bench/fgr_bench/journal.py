"""7. Journal records per second, one writer and many."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import BenchError, Context, clean_env, log

# Runs as a script of its own, so a writer carries nothing of the harness.
WORKER = Path(__file__).with_name("journal_worker.py")


def run(ctx: Context, per_single: int, writers: int, per_writer: int) -> None:
    res: dict[str, Any] = {
        "definition": "engine: refused-target fences through _native.fence (no exchange); "
        "each writes one event record = one line in the readable log, one JSONL line and "
        "3 main-log lines, each on its own O_APPEND open/write/close. python: the same "
        "5 appends per record with os.open/os.write/os.close (baseline)"
    }
    for kind in ("engine", "python"):
        for procs, per in ((1, per_single), (writers, per_writer)):
            log(f"7. journal: {kind}, {procs} process(es) x {per} records")
            rate, lines = journal_run(ctx, kind, procs, per)
            res[f"{kind}_{procs}"] = {"records_per_s": rate, "records": procs * per}
            if lines != procs * per:
                raise BenchError(f"journal: {lines} JSONL lines for {procs * per} records")
            ctx.row(
                "7 journal",
                f"{kind}: records/s, {procs} process{'es' if procs > 1 else ''}",
                f"{rate:,.0f} /s",
                "(no target)",
                None,
                "Python os.write baseline" if kind == "python" else "via refused fences",
            )
    ctx.results["journal"] = res


def journal_run(ctx: Context, kind: str, procs: int, per: int) -> tuple[float, int]:
    dirs = ctx.fresh(f"journal-{kind}-{procs}")
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), kind, str(dirs.root), str(per)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=ctx.errlog,
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
