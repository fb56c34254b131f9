"""3. Bursts of concurrent agents against ``fence-gfs2-responder``."""

from __future__ import annotations

import os
import resource
import select
import subprocess
import threading
import time
from typing import Any

from .common import (
    BenchError,
    Context,
    Inotify,
    clean_env,
    is_request_name,
    kill_quietly,
    log,
    spawn_agent,
    summary_ms,
)


def run(ctx: Context, sizes: list[int]) -> None:
    res: dict[str, Any] = {
        "definition": "overhead = the agent's own elapsed_ms in its final JSONL record: "
        "engine start of the fence -> answer read (request write, wait, response read; "
        "it includes the responder's turnaround). As the harness sees it (inotify on "
        "both directories): spawn_to_request = agent spawned -> request renamed in; "
        "responder_turnaround = request in -> response renamed in; answer_to_exit = "
        "response renamed in -> agent reaped. process_wall = spawn -> reaped. "
        "cpu_per_fence = RUSAGE_CHILDREN (user+sys) delta / n (agents only)"
    }
    for n in sizes:
        log(f"3. burst of {n} agents against fence-gfs2-responder")
        res[str(n)] = one_burst(ctx, n)
        r = res[str(n)]
        ctx.row(
            "3 burst",
            f"{n} agents: wall; overhead p50/p99; cpu/fence",
            f"{r['burst_wall_ms']:.0f} ms; {r['overhead_ms']['p50']:.0f} / "
            f"{r['overhead_ms']['p99']:.0f} ms; {r['cpu_per_fence_ms']:.0f} ms",
            "p99 <= 50 ms" if n == 64 else "(reference)",
            r["overhead_ms"]["p99"] <= 50.0 if n == 64 else None,
            f"p50/p99: responder turnaround {r['responder_turnaround_ms']['p50']:.0f}/"
            f"{r['responder_turnaround_ms']['p99']:.0f} ms, answer->exit "
            f"{r['answer_to_exit_ms']['p50']:.0f}/{r['answer_to_exit_ms']['p99']:.0f} ms, "
            f"spawn->request {r['spawn_to_request_ms']['p50']:.0f}/"
            f"{r['spawn_to_request_ms']['p99']:.0f} ms",
        )
    ctx.results["burst"] = res


def one_burst(ctx: Context, n: int) -> dict[str, Any]:
    dirs = ctx.fresh(f"burst-{n}")
    argv = [ctx.responder, "--quiet", "--request-dir", str(dirs.req)]
    responder = subprocess.Popen(
        [*argv, "--response-dir", str(dirs.resp)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=ctx.errlog,
        env=clean_env(),
    )
    assert responder.stdout is not None
    responder.stdout.readline()  # the banner: it is about to watch
    time.sleep(0.2)
    # When the harness saw each request published and each response
    # renamed into place: request_id -> monotonic time.
    published: dict[str, float] = {}
    answered: dict[str, float] = {}
    watches = [(Inotify(dirs.req), published), (Inotify(dirs.resp), answered)]
    stop = threading.Event()

    def observe() -> None:
        poller = select.poll()
        for w, _seen in watches:
            poller.register(w.fd, select.POLLIN)
        while not stop.is_set():
            ready = {fd for fd, _ev in poller.poll(100)}
            t = time.monotonic()
            for w, seen in watches:
                if w.fd in ready:
                    for name in w.events(0) or []:
                        if is_request_name(name):
                            seen.setdefault(name[: -len(".json")], t)

    observer = threading.Thread(target=observe)
    observer.start()
    procs: dict[int, tuple[str, float, subprocess.Popen[bytes]]] = {}
    exits: dict[str, tuple[int, float, float]] = {}  # target -> rc, spawned, reaped
    env = clean_env()
    try:
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        for i in range(n):
            target = f"compute-node-{i:03d}"
            p = spawn_agent(ctx.agent, dirs, [], env, ctx.errlog, target)
            procs[p.pid] = (target, time.monotonic(), p)
        while len(exits) < n:
            pid, status, _ru = os.wait4(-1, 0)
            t = time.monotonic()
            if pid == responder.pid:
                responder.returncode = os.waitstatus_to_exitcode(status)
                raise BenchError("fence-gfs2-responder died during the burst")
            if pid not in procs:
                continue
            target, t_spawn, p = procs[pid]
            p.returncode = os.waitstatus_to_exitcode(status)
            exits[target] = (p.returncode, t_spawn, t)
        t1 = time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        stop.set()
        observer.join()
        for w, _seen in watches:
            w.close()
        for _t, _s, p in procs.values():
            kill_quietly(p)
        responder.terminate()
        responder.communicate(timeout=10)
    failed = [t for t, (rc, _s, _e) in exits.items() if rc != 0]
    if failed:
        raise BenchError(f"{len(failed)} of {n} agents failed (e.g. {failed[0]})")
    records = {r["target_node"]: r for r in dirs.final_records()}
    ids = {t: records[t]["request_id"] for t in exits}
    overhead = [records[t]["elapsed_ms"] / 1000.0 for t in exits]
    both = [t for t in exits if ids[t] in published and ids[t] in answered]
    turnaround = [answered[ids[t]] - published[ids[t]] for t in both]
    a2e = [exits[t][2] - answered[ids[t]] for t in both]
    to_publish = [published[ids[t]] - exits[t][1] for t in both]
    cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    walls = [t_exit - t_spawn for _rc, t_spawn, t_exit in exits.values()]
    return {
        "n": n,
        "burst_wall_ms": (t1 - t0) * 1000.0,
        "overhead_ms": summary_ms(overhead),
        "spawn_to_request_ms": summary_ms(to_publish),
        "responder_turnaround_ms": summary_ms(turnaround),
        "answer_to_exit_ms": summary_ms(a2e),
        "process_wall_ms": summary_ms(walls),
        "cpu_per_fence_ms": cpu / n * 1000.0,
        "fences_observed": len(both),
    }
