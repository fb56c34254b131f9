"""Writes to the shared GFS2 file system and logs each write to the lab share.

  writer.py append FILE LOG   append numbered, timestamped records to FILE,
                              fsync after each (what the isolation case counts)
  writer.py create DIR LOG    create a new file in DIR per write, fsync it
                              (needs new cluster locks: blocks while the
                              lock space recovers)
  writer.py block DEV LOG     write 4 KiB at the next offset of the block
                              device DEV (kept open), fsync after each

Each write is logged as "<seq> <started> <ended> ok|error <message>",
CLOCK_REALTIME seconds, written when the write returns. Stops when the file
/tmp/stop-writer exists.
"""

import os
import socket
import sys
import time

mode, where, log = sys.argv[1:4]
host = socket.gethostname()
out = open(log, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
seq = 0
if mode == "append":
    fd = os.open(where, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
elif mode == "block":
    fd = os.open(where, os.O_WRONLY)
while not os.path.exists("/tmp/stop-writer"):
    seq += 1
    t0 = time.time()
    try:
        if mode == "append":
            os.write(fd, f"{host} {seq} {t0:.6f}\n".encode())
            os.fsync(fd)
        elif mode == "block":
            os.pwrite(fd, f"{host} {seq} {t0:.6f}\n".encode().ljust(4096, b"\0"), seq * 4096)
            os.fsync(fd)
        else:
            f = os.open(f"{where}/{host}-{seq}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(f, f"{host} {seq} {t0:.6f}\n".encode())
            os.fsync(f)
            os.close(f)
        out.write(f"{seq} {t0:.6f} {time.time():.6f} ok\n")
    except OSError as e:
        out.write(f"{seq} {t0:.6f} {time.time():.6f} error {e}\n")
        time.sleep(0.5)
    time.sleep(0.2)
