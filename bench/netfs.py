"""Answer latency on network mounts (root; needs bindfs and fuse3).

    .venv/bin/python bench/netfs.py [--runs 10] [--out bench/results/netfs.json]

The agent sees its directories through a mount while this script, playing the
responder, writes the backing directory directly, as another host would: it
answers 1.0-1.5 s after it sees a request (response renamed into place, then
the request deleted, nnf-sos's order). Measured: answer (the rename) -> agent
exit, for a local directory, bindfs, and bindfs with negative_timeout=20, with
the agent polling every 0.5 s and 0.05 s, beside the original design's plain
``exists()`` loop every 0.5 s. A fence not answered within the timeout
(10 s) counts as a miss.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
AGENT = str(BIN / "fence_gfs2_recorder")
TIMEOUT = 10.0


class Responder(threading.Thread):
    """Answers each new request in `store` after 1.0-1.5 s; stamps the rename."""

    def __init__(self, store: Path) -> None:
        super().__init__(daemon=True)
        self.req, self.resp = store / "requests", store / "responses"
        self.stamps: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        done: set[str] = set()
        while not self.stop.is_set():
            for n in os.listdir(self.req):
                if n.startswith(".") or not n.endswith(".json") or n in done:
                    continue
                done.add(n)
                time.sleep(random.uniform(1.0, 1.5))
                try:
                    body = json.loads((self.req / n).read_text())
                except (OSError, ValueError):
                    continue
                body.update(success=True, message="bench", action_performed="off")
                tmp = self.resp / f".{n}.tmp"
                tmp.write_text(json.dumps(body, indent=2))
                os.rename(tmp, self.resp / n)
                self.stamps[n] = time.monotonic()
                os.remove(self.req / n)
            time.sleep(0.005)


def mount(store: Path, mnt: Path, opts: str | None) -> None:
    argv = ["bindfs", *(["-o", opts] if opts else []), str(store), str(mnt)]
    subprocess.run(argv, check=True, capture_output=True)


def unmount(mnt: Path) -> None:
    if subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def agent_fence(view: Path, logs: Path, poll: float) -> tuple[str | None, float]:
    """Runs the agent; returns its request's file name and its exit time."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FENCE_", "NNF_FENCE_"))}
    env.update(FENCE_KUBECTL="", FENCE_TIMEOUT=str(int(TIMEOUT)), FENCE_POLL_INTERVAL=str(poll))
    p = subprocess.run(
        [
            AGENT,
            "-o",
            "reboot",
            "-n",
            "compute-node-3",
            "--request-dir",
            str(view / "requests"),
            "--response-dir",
            str(view / "responses"),
            "--log-dir",
            str(logs),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT + 30,
    )
    end = time.monotonic()
    last = json.loads((logs / "fence-events-detailed.jsonl").read_text().splitlines()[-1])
    name = f"{last['request_id']}.json" if p.returncode == 0 else None
    return name, end


def exists_fence(view: Path, poll: float) -> tuple[str | None, float]:
    """The original design: write the request, then exists() every `poll`."""
    n = f"{uuid.uuid4()}.json"
    (view / "requests" / n).write_text(json.dumps({"request_id": n[:-5], "target_node": "x"}))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(view / "responses" / n):
            return n, time.monotonic()
        time.sleep(poll)
    with contextlib.suppress(FileNotFoundError):
        os.remove(view / "requests" / n)
    return None, time.monotonic()


def cell(root: Path, mount_opts: str | None, how: str, poll: float, runs: int) -> dict[str, Any]:
    store, mnt, logs = root / "store", root / "mnt", root / "logs"
    for d in (store, mnt, logs):
        shutil.rmtree(d, ignore_errors=True)
    for d in (store / "requests", store / "responses", mnt):
        d.mkdir(parents=True)
    view = store
    if mount_opts is not None:
        mount(store, mnt, mount_opts or None)
        view = mnt
    resp = Responder(store)
    resp.start()
    lat: list[float] = []
    misses = 0
    try:
        for _ in range(runs):
            name, end = (
                agent_fence(view, logs, poll) if how == "agent" else exists_fence(view, poll)
            )
            if name is None or name not in resp.stamps:
                misses += 1
            else:
                lat.append(end - resp.stamps[name])
            time.sleep(0.2)
    finally:
        resp.stop.set()
        resp.join(timeout=5)
        if mount_opts is not None:
            unmount(mnt)
    return {
        "runs": runs,
        "misses": misses,
        "p50_s": round(statistics.median(lat), 3) if lat else None,
        "max_s": round(max(lat), 3) if lat else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--out", default="bench/results/netfs.json")
    args = ap.parse_args()
    mounts = [
        ("local dir", None),
        ("bindfs", ""),
        ("bindfs negative_timeout=20", "negative_timeout=20"),
    ]
    ways = [
        ("agent, poll 0.5 s", "agent", 0.5),
        ("agent, poll 0.05 s", "agent", 0.05),
        ("exists() every 0.5 s", "exists", 0.5),
    ]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fgr-netfs-") as tmp:
        for mname, opts in mounts:
            for wname, how, poll in ways:
                r = cell(Path(tmp), opts, how, poll, args.runs)
                r.update(mount=mname, way=wname)
                results.append(r)
                sys.stderr.write(f"{mname:28} {wname:22} {r}\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("| mount | " + " | ".join(w for w, _, _ in ways) + " |")
    print("|---|" + "---|" * len(ways))
    for mname, _ in mounts:
        row = [r for r in results if r["mount"] == mname]
        cells = []
        for r in row:
            shown = f"{r['p50_s']} / {r['max_s']} s" if r["p50_s"] is not None else "-"
            if r["misses"]:
                shown += f" ({r['misses']} of {r['runs']} missed)"
            cells.append(shown)
        print(f"| {mname} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
