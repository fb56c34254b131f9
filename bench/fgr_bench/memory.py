"""6. Peak RSS of the agent against ``fence_dummy``."""

from __future__ import annotations

from .common import (
    FENCE_DUMMY,
    TARGET,
    BenchError,
    Context,
    Inotify,
    answer,
    clean_env,
    kill_quietly,
    log,
    measured_maxrss,
    pct,
    remove_quietly,
    spawn_measured,
    wait_for_request,
)


def run(ctx: Context, runs: int) -> None:
    log(f"6. memory: agent fences, agent -o monitor, fence_dummy -o monitor x{runs}")
    dirs = ctx.fresh("memory")
    env = clean_env()
    watch = Inotify(dirs.req)
    fence: list[int] = []
    try:
        for _ in range(runs):
            watch.drain()
            argv = [ctx.agent, "-o", "reboot", "-n", TARGET, *dirs.argv()]
            proc = spawn_measured(argv, env, ctx.errlog)
            try:
                name = wait_for_request(watch, set(), 30.0)
                if name is None:
                    raise BenchError("memory: the agent wrote no request")
                answer(dirs, name)
                fence.append(measured_maxrss(proc))
            finally:
                kill_quietly(proc)
            remove_quietly(dirs.req / name)
    finally:
        watch.close()

    def maxrss(argv: list[str]) -> list[int]:
        return [measured_maxrss(spawn_measured(argv, env, ctx.errlog)) for _ in range(runs)]

    dummy = maxrss([FENCE_DUMMY, "-o", "monitor"])
    monitor = maxrss([ctx.agent, "-o", "monitor", *dirs.argv()])
    spawner = maxrss(["/bin/true"])
    d50 = pct([float(x) for x in dummy], 50)
    m50 = pct([float(x) for x in monitor], 50)
    f_max = float(max(fence))
    diff_mib = (f_max - d50) / 1024.0
    ctx.results["memory"] = {
        "unit": "KiB (ru_maxrss from wait4, started by a small spawner)",
        "fence_dummy_monitor": {"p50": d50, "max": max(dummy)},
        "agent_monitor": {"p50": m50, "max": max(monitor)},
        "agent_fence": {"p50": pct([float(x) for x in fence], 50), "max": f_max},
        "spawner_floor_bin_true": max(spawner),
        "diff_fence_max_vs_dummy_p50_mib": diff_mib,
    }
    ctx.row(
        "6 memory",
        "peak RSS agent fence (max) - fence_dummy monitor (p50)",
        f"{f_max / 1024:.1f} - {d50 / 1024:.1f} MiB = {diff_mib:+.1f} MiB",
        "<= +10 MiB",
        diff_mib <= 10.0,
        f"agent -o monitor p50 {m50 / 1024:.1f} MiB; floor of the method "
        f"(/bin/true) {max(spawner) / 1024:.1f} MiB",
    )
