"""Runs on the rabbit: every 20 ms, notes when a compute's nvmet namespace
changes state and when a fence agent process starts or ends (CLOCK_REALTIME),
one line per event: "<time> ns <compute> <0|1>" or "<time> agent <pid> start|end".
"""

import glob
import os
import sys
import time

out = open(sys.argv[1], "a", buffering=1)  # noqa: SIM115 (open for the process's life)
subsystems = "/sys/kernel/config/nvmet/subsystems/"
state: dict[str, str] = {}
agents: set[str] = set()
while True:
    now = time.time()
    for path in glob.glob(subsystems + "*/namespaces/1/enable"):
        compute = path[len(subsystems) :].split("/")[0].rsplit(":", 1)[-1]
        try:
            with open(path) as f:
                v = f.read().strip()
        except OSError:
            continue
        if state.get(compute) != v:
            state[compute] = v
            out.write(f"{now:.6f} ns {compute} {v}\n")
    seen = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"/usr/sbin/fence_gfs2_recorder" in cmd:
            seen.add(pid)
    for pid in seen - agents:
        out.write(f"{now:.6f} agent {pid} start\n")
    for pid in agents - seen:
        out.write(f"{now:.6f} agent {pid} end\n")
    agents = seen
    time.sleep(0.02)
