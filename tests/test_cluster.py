"""The agent under a REAL one-node corosync + Pacemaker cluster.

pacemaker-fenced runs /usr/sbin/fence_gfs2_recorder (scripts/install.sh) the
way production does: options on stdin, the environment systemd gives
pacemakerd (no HOME: checked against what a real agent run received), its own
deadlines. Fencing is driven by stonith_admin and by the cluster itself; the
bundled responder plays the NNF reconciler. Needs root and the Debian packages
pacemaker, pacemaker-cli-utils and corosync; the module is skipped otherwise.

Run just this module: ``.venv/bin/python -m pytest -m cluster -ra``; its logs
(pacemaker.log, corosync.log, the agent's journal) are kept in /tmp/fgr-cluster-*
when a test fails, or always with FGR_KEEP_CLUSTER_LOGS=1.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_env import (
    LOGIN_VARIABLES,
    SERVICE_PATH,
    Cluster,
    cluster_marks,
    ensure_installed,
    read_environ,
    refuse_if_busy,
    serve,
    skip_reason,
    wait_until,
)

# The first test also builds, installs and starts the cluster.
pytestmark = cluster_marks(skip_reason(), timeout=600)

DEVICE = "st-gfs2"
FENCE_TIMEOUT = 3  # s: the agent's own wait for the answer
ACTION_TIMEOUT = 20  # s: pcmk_reboot_timeout / pcmk_off_timeout, the fencer's deadline
STONITH_TIMEOUT = 30  # s: cluster-initiated fencing


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    refuse_if_busy()
    c = Cluster()
    about = f"corosync + pacemakerd on 127.0.0.1, node {c.node}"
    yield from serve(request, c, "REAL PACEMAKER CLUSTER TEST", about, _start)


def _start(c: Cluster) -> None:
    t0 = time.monotonic()
    agent = ensure_installed()
    t_install = time.monotonic() - t0
    c.start()
    up = time.monotonic() - t0 - t_install
    c.set_property("stonith-enabled", "true")
    c.set_property("stonith-timeout", f"{STONITH_TIMEOUT}s")
    c.start_responder("success")
    # No pcmk_host_list/pcmk_host_map: the device must serve any node.
    c.add_device(
        DEVICE,
        c.device_params(
            fence_timeout=str(FENCE_TIMEOUT),
            pcmk_reboot_timeout=f"{ACTION_TIMEOUT}s",
            pcmk_off_timeout=f"{ACTION_TIMEOUT}s",
        ),
    )
    c.notes.append(
        f"install {t_install:.1f} s ({agent}), corosync + pacemaker up as DC in {up:.1f} s, "
        f"device {DEVICE} started {time.monotonic() - t0 - t_install - up:.1f} s later"
    )


# ---------------------------------------------------------------- helpers


def use_responder(c: Cluster, mode: str, *args: str) -> None:
    wanted = " ".join([mode, *args])
    if c.responder_mode != wanted or c.responder is None or c.responder.poll() is not None:
        c.start_responder(mode, *args)


def stonith_admin(c: Cluster, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    t = time.monotonic()
    r = c.run("stonith_admin", *args, timeout=180)
    return r, time.monotonic() - t


def explain(c: Cluster, r: subprocess.CompletedProcess[str], target: str) -> str:
    journal = "\n".join(json.dumps(x) for x in c.journal(target))
    return (
        f"rc={r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}\n"
        f"journal for {target}:\n{journal}\n--- pacemaker.log (tail)\n{c.log_tail()}"
    )


def attempts(records: list[dict[str, Any]], action: str) -> tuple[list[str], list[str]]:
    """(request ids initiated, final statuses) of one action's agent runs."""
    runs = [x for x in records if x["action"] == action]
    started = [x["request_id"] for x in runs if x["status"] == "initiated"]
    finals = [x["status"] for x in runs if x["status"] != "initiated"]
    return started, finals


def agent_status(c: Cluster, target: str) -> subprocess.CompletedProcess[str]:
    """The installed agent's status action, run as the fencer runs it: its
    options on stdin, the environment a real agent run received."""
    return subprocess.run(
        [str(ensure_installed())],
        input=c.dirs.stdin(action="status", port=target, nodename=target),
        capture_output=True,
        text=True,
        env=c.fencer_env(),
        timeout=60,
    )


def completed(c: Cluster, target: str, action: str) -> list[dict[str, Any]]:
    return [x for x in c.journal(target) if x["status"] == "completed" and x["action"] == action]


def fence_that_completes(c: Cluster, how: str, target: str, action: str) -> list[dict[str, Any]]:
    """stonith_admin `how` target, the reconciler saying yes: asserts it
    succeeded with one more completed `action` record; returns those records."""
    use_responder(c, "success")
    before = len(completed(c, target, action))
    r, _ = stonith_admin(c, how, target)
    assert r.returncode == 0, explain(c, r, target)
    done = completed(c, target, action)
    assert len(done) == before + 1, explain(c, r, target)
    return done


def reboot_that_fails(
    c: Cluster, target: str, mode: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], float, list[dict[str, Any]]]:
    """stonith_admin --reboot target, the reconciler in `mode` (and `args`):
    asserts it failed; returns the run, its seconds and the journal records
    it added."""
    use_responder(c, mode, *args)
    before = len(c.journal(target))
    r, took = stonith_admin(c, "--reboot", target)
    assert r.returncode != 0, explain(c, r, target)
    return r, took, c.journal(target)[before:]


# ---------------------------------------------------------------- tests


def test_cluster_reboot_via_stonith_admin_completes_and_keeps_the_response(
    cluster: Cluster,
) -> None:
    done = fence_that_completes(cluster, "--reboot", "compute-node-3", "reboot")
    record = done[-1]
    assert record["pacemaker_action"] == "reboot"
    response = Path(record["response_file"])
    assert response.parent == cluster.resp and response.is_file()
    body = json.loads(response.read_text())
    assert body["target_node"] == "compute-node-3"


def test_cluster_fence_off_via_stonith_admin_completes(cluster: Cluster) -> None:
    done = fence_that_completes(cluster, "--fence", "compute-node-3", "off")
    assert Path(done[-1]["response_file"]).is_file()


def test_cluster_unfence_removes_the_record_and_status_says_on(cluster: Cluster) -> None:
    use_responder(cluster, "success")
    r, _ = stonith_admin(cluster, "--fence", "compute-node-3")
    assert r.returncode == 0, explain(cluster, r, "compute-node-3")
    fenced = agent_status(cluster, "compute-node-3")
    assert fenced.returncode == 2, (fenced.stdout, fenced.stderr)  # 2 = off
    assert cluster.responses_for("compute-node-3")

    r, _ = stonith_admin(cluster, "--unfence", "compute-node-3")
    assert r.returncode == 0, explain(cluster, r, "compute-node-3")
    status = agent_status(cluster, "compute-node-3")
    assert status.returncode == 0, (status.stdout, status.stderr)  # 0 = on
    assert cluster.responses_for("compute-node-3") == []
    assert any(x["status"] == "unfenced" for x in cluster.journal("compute-node-3"))
    kept = [p for p in cluster.log.rglob("*.json") if "compute-node-3" in p.read_text()]
    assert kept, f"no copy of the removed records under {cluster.log}"


def test_cluster_failure_answer_fails_every_attempt(cluster: Cluster) -> None:
    target = "compute-node-4"
    r, _, new = reboot_that_fails(cluster, target, "failure")
    started, finals = attempts(new, "reboot")
    # Pacemaker retries a failed action once (pcmk_reboot_retries=2).
    assert len(started) == 2, explain(cluster, r, target)
    assert finals == ["failed"] * len(started), explain(cluster, r, target)
    assert cluster.responses_for(target)  # the failure answers, for the record


def test_cluster_silent_reconciler_ends_in_our_own_timeout(cluster: Cluster) -> None:
    target = "compute-node-5"
    r, took, new = reboot_that_fails(cluster, target, "silent")
    started, finals = attempts(new, "reboot")
    # Every attempt has its final record: our timeout ended it, not the
    # fencer's SIGKILL at pcmk_reboot_timeout (that leaves "initiated" alone).
    assert started, explain(cluster, r, target)
    assert finals == ["timeout"] * len(started), explain(cluster, r, target)
    for x in new:
        if x["status"] == "timeout":
            # The exchange's share of fence_timeout: less the agent's start-up.
            assert (FENCE_TIMEOUT - 1) * 1000 <= x["elapsed_ms"] < ACTION_TIMEOUT * 1000, x
    assert took < len(started) * ACTION_TIMEOUT, took


def test_cluster_fences_a_node_that_never_joined(cluster: Cluster) -> None:
    target = "compute-node-7"
    use_responder(cluster, "success")
    cluster.check(
        "cibadmin", "--create", "-o", "nodes", "--xml-text", f"<node id='3' uname='{target}'/>"
    )
    # The scheduler sees an unclean node and the controller asks the fencer.
    wait_until(
        f"the cluster to fence {target} through the agent",
        lambda: completed(cluster, target, "reboot"),
        timeout=90,
    )
    wait_until(
        f"{target} shown offline and clean", lambda: cluster.offline_clean(target), timeout=60
    )
    events = cluster.history(target)
    assert any(
        e.get("status") == "success" and (e.get("client") or "").startswith("pacemaker-controld")
        for e in events
    ), events


def test_cluster_fences_a_never_seen_node_without_host_list(cluster: Cluster) -> None:
    target = "compute-node-9"
    use_responder(cluster, "success")
    assert cluster.journal(target) == []
    r, _ = stonith_admin(cluster, "--reboot", target)
    assert r.returncode == 0, explain(cluster, r, target)
    assert completed(cluster, target, "reboot"), explain(cluster, r, target)


def test_cluster_agent_runs_without_home_in_the_fencers_environment(cluster: Cluster) -> None:
    """What pacemaker-fenced really gives an agent, read from /proc/PID/environ
    of an agent it ran (its discovery's kubectl copies it): no HOME, nothing
    of a login, the service PATH, and nothing pacemaker-fenced itself lacks."""
    fence_that_completes(cluster, "--fence", "compute-node-3", "off")
    agent = cluster.fencer_env()
    fenced = [c for c in cluster.children if c.name.startswith("pacemaker-fence")]
    assert fenced, cluster.children
    own = read_environ(Path(f"/proc/{fenced[0].pid}/environ"))
    for env in (agent, own):
        assert not set(LOGIN_VARIABLES) & set(env), env
        assert env["PATH"] == SERVICE_PATH, env
    added = {k for k in agent if k not in own}
    assert not added & set(LOGIN_VARIABLES), added


def test_cluster_nothing_found_for_a_node_stored_here_is_not_fenced(cluster: Cluster) -> None:
    """The reconciler answers "nothing found" for a node whose GFS2 storage
    discovery (kubectl with the device's kubeconfig, no HOME) shows on this
    rabbit: every attempt fails, none is taken as fenced."""
    target = "compute-node-4"
    r, _, new = reboot_that_fails(cluster, target, "success", "--nothing-found", target)
    started, finals = attempts(new, "reboot")
    assert started and finals == ["failed"] * len(started), explain(cluster, r, target)
    for x in new:
        if x["status"] == "failed":
            assert "No block storage resources found to fence" in x["details"], x
            assert "on this rabbit" in x["details"], x
            assert x["gfs2_filesystems"] == ["nnf-storage-1"], x
