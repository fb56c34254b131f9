"""One writer of the journal benchmark, run as a script by ``journal.py``:
``python journal_worker.py engine|python ROOT COUNT``. It prints ``ready``,
waits for a line on stdin, writes COUNT records under ROOT/logs and prints
its monotonic start and end times.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path


def work(kind: str, root: str, n: int) -> None:
    """One writer of the journal benchmark (runs in its own process)."""
    logs = Path(root) / "logs"
    one: Callable[[int], None]
    if kind == "engine":
        from fence_gfs2_recorder import _native

        settings = _native.resolve_settings(
            request_dir=f"{root}/requests",
            response_dir=f"{root}/responses",
            log_dir=str(logs),
            kubectl_path="",
        )
        tag = f"bad/{os.getpid()}"

        def one(i: int) -> None:
            r = _native.fence(settings, "off", f"{tag}-{i}".encode())
            if r.kind != "refused":
                raise SystemExit(f"unexpected outcome {r!r}")

    else:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        main_log = str(logs / "fence-events.log")
        readable = str(logs / "fence-events-readable.log")
        detailed = str(logs / "fence-events-detailed.jsonl")
        host = platform.node()

        def append(path: str, data: bytes) -> None:
            fd = os.open(path, flags, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

        def one(i: int) -> None:
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            target = f"bad/{os.getpid()}-{i}"
            append(main_log, f"[{now}] [INFO] Fence action requested: off for {target}\n".encode())
            append(main_log, f"[{now}] [ERROR] refused target {target!r}\n".encode())
            append(
                readable,
                f"[{now}] ACTION=off TARGET={target} GFS2=[] STATUS=failed DETAILS=x\n".encode(),
            )
            rec = {
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "action": "off",
                "target_node": target,
                "status": "failed",
                "details": "refused",
                "recorder_node": host,
                "pacemaker_action": "off",
                "gfs2_filesystems": [],
            }
            append(detailed, (json.dumps(rec, separators=(",", ":")) + "\n").encode())
            append(main_log, f"[{now}] [INFO] Recorded fence event: target={target}\n".encode())

    logs.mkdir(parents=True, exist_ok=True)
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.monotonic()
    for i in range(n):
        one(i)
    print(f"{t0} {time.monotonic()}", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("engine", "python"):
        sys.stderr.write("usage: journal_worker.py engine|python ROOT COUNT\n")
        return 2
    work(argv[0], argv[1], int(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
