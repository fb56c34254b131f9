"""Helpers shared by the test modules: processes and their groups, read from /proc."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
