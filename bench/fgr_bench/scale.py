"""4. Answer latency in crowded request and response directories."""

from __future__ import annotations

import os
import shutil
import time
import uuid

from .common import Context, Inotify, clean_env, log, one_process_fence, response_body, summary_ms


def run(ctx: Context, runs: int, responses: int, requests: int) -> None:
    empty = ctx.fresh("scale-empty")
    full = ctx.fresh("scale-full")
    log(f"4. scale: creating {responses} old responses and {requests} stale requests")
    t = time.monotonic()
    old = response_body({"request_id": "x", "target_node": "old-node", "action": "off"})
    for d, count, data in ((full.resp, responses, old), (full.req, requests, b"{}\n")):
        for _ in range(count):
            fd = os.open(d / f"{uuid.uuid4()}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.write(fd, data)
            os.close(fd)
    made = time.monotonic() - t
    log(f"4. scale: created in {made:.1f} s; {runs} fences in each, interleaved")
    env = clean_env()
    lat: dict[str, list[float]] = {"empty": [], "full": []}
    watches = {"empty": Inotify(empty.req), "full": Inotify(full.req)}
    try:
        for i in range(ctx.warmup + runs):
            for key, dirs in (("empty", empty), ("full", full)):
                f = one_process_fence(ctx, dirs, watches[key], [], env)
                if i >= ctx.warmup:
                    lat[key].append(f.latency_s)
    finally:
        for w in watches.values():
            w.close()
    t = time.monotonic()
    shutil.rmtree(full.root)
    removed = time.monotonic() - t
    e, f_ = summary_ms(lat["empty"]), summary_ms(lat["full"])
    ratio = f_["p50"] / e["p50"]
    ctx.results["scale"] = {
        "old_responses": responses,
        "stale_requests": requests,
        "create_s": made,
        "remove_s": removed,
        "empty": e,
        "full": f_,
        "ratio_p50": ratio,
        "ratio_p99": f_["p99"] / e["p99"],
    }
    ctx.row(
        "4 scale",
        "rename->exit p50 full / empty dirs",
        f"{f_['p50']:.2f} / {e['p50']:.2f} ms = {ratio:.2f}x",
        "<= 1.2x",
        ratio <= 1.2,
        f"p99 {f_['p99']:.1f} / {e['p99']:.1f} ms",
    )
