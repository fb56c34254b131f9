"""2. Start-up of ``-o monitor`` and ``-o metadata`` against ``fence_dummy`` (hyperfine)."""

from __future__ import annotations

import json
import subprocess

from .common import FENCE_DUMMY, Context, clean_env, log, summary_ms


def run(ctx: Context, rounds: int, runs: int) -> None:
    dirs = ctx.fresh("startup")
    agent_args = " ".join(dirs.argv())
    cmds = {
        "agent monitor": f"{ctx.agent} -o monitor {agent_args}",
        "fence_dummy monitor": f"{FENCE_DUMMY} -o monitor",
        "agent metadata": f"{ctx.agent} -o metadata",
        "fence_dummy metadata": f"{FENCE_DUMMY} -o metadata",
    }
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    # Several short rounds, each running every command, so that load from
    # other jobs on the machine falls on all commands alike.
    for r in range(rounds):
        log(f"2. start-up: hyperfine round {r + 1}/{rounds}")
        out = ctx.work / f"hyperfine-{r}.json"
        argv = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--style", "none"]
        argv += ["--export-json", str(out), *cmds.values()]
        subprocess.run(
            argv,
            check=True,
            env=clean_env(),
            stdout=subprocess.DEVNULL,
            stderr=ctx.errlog,
        )
        data = json.loads(out.read_text())
        for key, res in zip(cmds, data["results"]):
            times[key].extend(res["times"])
            cpu[key].append(res["user"] + res["system"])
    stats = {k: summary_ms(v) for k, v in times.items()}
    cpu_ms = {k: sum(v) / len(v) * 1000.0 for k, v in cpu.items()}
    ctx.results["startup"] = {"commands": cmds, "stats_ms": stats, "cpu_ms": cpu_ms}
    for action in ("monitor", "metadata"):
        a, d = stats[f"agent {action}"], stats[f"fence_dummy {action}"]
        ratio = a["p50"] / d["p50"]
        mean_ratio = a["mean"] / d["mean"]
        ctx.results["startup"][f"{action}_ratio_median"] = ratio
        ctx.results["startup"][f"{action}_ratio_mean"] = mean_ratio
        ctx.row(
            "2 start-up",
            f"-o {action}: agent / fence_dummy median",
            f"{a['p50']:.1f} / {d['p50']:.1f} ms = {ratio:.2f}x",
            "<= 1.10x",
            ratio <= 1.10,
            f"mean ratio {mean_ratio:.2f}x; CPU (user+sys) {cpu_ms[f'agent {action}']:.0f}"
            f" / {cpu_ms[f'fence_dummy {action}']:.0f} ms = "
            f"{cpu_ms[f'agent {action}'] / cpu_ms[f'fence_dummy {action}']:.2f}x; n={a['n']}",
        )
