"""The machine a run measured on, and the table it prints."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any


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
