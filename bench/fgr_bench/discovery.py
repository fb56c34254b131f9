"""5. The cost of GFS2 discovery with a slow stand-in kubectl."""

from __future__ import annotations

from .common import REPO, Context, Inotify, clean_env, log, one_process_fence, summary_ms


def run(ctx: Context, runs: int) -> None:
    root = ctx.work / "kubectl"
    root.mkdir(exist_ok=True)
    marker = root / "calls"
    data = REPO / "tests" / "data" / "nnfnodeblockstorages.json"
    out = f"cat '{data}'" if data.exists() else "echo '{\"items\": []}'"
    kubectl = root / "kubectl"
    kubectl.write_text(
        f"#!/bin/sh\n# stand-in kubectl: answers after 0.5 s\necho \"$*\" >> '{marker}'\n"
        f"sleep 0.5\n{out}\n"
    )
    kubectl.chmod(0o755)
    config = root / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\n")
    dirs = ctx.fresh("discovery")
    watch = Inotify(dirs.req)
    env = clean_env()
    walls: dict[str, list[float]] = {"off": [], "slow": []}
    lat: dict[str, list[float]] = {"off": [], "slow": []}
    log(f"5. discovery: {runs} fences with a 0.5 s kubectl and {runs} without, interleaved")
    try:
        for i in range(ctx.warmup + runs):
            for key, extra in (
                ("off", []),
                ("slow", ["--kubectl-path", str(kubectl), "--kubeconfig", str(config)]),
            ):
                f = one_process_fence(ctx, dirs, watch, extra, env)
                if i >= ctx.warmup:
                    walls[key].append(f.wall_s)
                    lat[key].append(f.latency_s)
    finally:
        watch.close()
    calls = len(marker.read_text().splitlines()) if marker.exists() else 0
    off, slow = summary_ms(walls["off"]), summary_ms(walls["slow"])
    ratio = slow["p50"] / off["p50"]
    ctx.results["discovery"] = {
        "kubectl_calls": calls,
        "fences_with_kubectl": ctx.warmup + runs,
        "wall_off": off,
        "wall_slow_kubectl": slow,
        "latency_off": summary_ms(lat["off"]),
        "latency_slow_kubectl": summary_ms(lat["slow"]),
        "ratio_p50": ratio,
        "ratio_p99": slow["p99"] / off["p99"],
    }
    note = f"kubectl ran {calls} times for {ctx.warmup + runs} fences"
    if calls == 0:
        note += " (discovery not active in this build: the figure shows no cost yet)"
    ctx.row(
        "5 discovery",
        "fence wall p50 slow kubectl / off",
        f"{slow['p50']:.1f} / {off['p50']:.1f} ms = {ratio:.2f}x",
        "<= 1.05x",
        ratio <= 1.05,
        note,
    )
