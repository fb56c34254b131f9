"""The command runner of a lab VM (PID 1): runs each `cmd.<id>` the host drops
in the VM's run directory as `sh`, its output to `out.<id>`, then its exit
status to `rc.<id>` (written whole, by rename). Reaps every child, orphans
included, as an init must."""

import os
import subprocess
import sys
import time

run = sys.argv[1]
os.makedirs(run, exist_ok=True)
for n in os.listdir(run):
    os.unlink(os.path.join(run, n))
running: dict[int, str] = {}  # pid -> command id
with open(os.path.join(run, ".ready"), "w") as f:
    f.write(f"{time.clock_gettime(time.CLOCK_BOOTTIME):.2f}\n")
os.rename(os.path.join(run, ".ready"), os.path.join(run, "ready"))
while True:
    for n in sorted(os.listdir(run)):
        if not n.startswith("cmd."):
            continue
        i = n[4:]
        path = os.path.join(run, "running." + i)
        os.rename(os.path.join(run, n), path)
        with open(os.path.join(run, "out." + i), "wb") as out:
            p = subprocess.Popen(
                ["/bin/sh", path],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running[p.pid] = i
        p.returncode = 0  # reaped below, never by Popen
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        done = running.pop(pid, None)
        if done is not None:
            tmp = os.path.join(run, ".rc." + done)
            with open(tmp, "w") as f:
                f.write(f"{os.waitstatus_to_exitcode(status)}\n")
            os.rename(tmp, os.path.join(run, "rc." + done))
    time.sleep(0.05)
