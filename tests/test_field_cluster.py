"""The agent in the cluster it exists for: a rabbit and its compute nodes.

A real corosync 3 + Pacemaker 2.1 cluster of four namespaced nodes
(tests/field_cluster.py): ``rabbit-node-1`` (two votes, so the cluster keeps
quorum with two computes down), ``compute-node-1``, ``compute-node-2`` and
``compute-node-3``. The README's "Deploying on an NNF cluster" block is
applied verbatim with pcs on the rabbit; the bundled responder plays nnf-sos
there. ``compute-node-3`` is served by a second device that maps its name
to a storage name with ``pcmk_host_map``.

Needs root, namespaces and the Debian packages pacemaker, pacemaker-cli-utils,
corosync, pcs and iproute2 (scripts/setup.sh installs them). Run just this
module with ``make field-cluster``; logs are kept in /tmp/fgr-field-* when a
test fails, or always with FGR_KEEP_CLUSTER_LOGS=1.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_env import (
    LOGIN_VARIABLES,
    SERVICE_PATH,
    cluster_marks,
    poll,
    read_environ,
    serve,
)
from field_cluster import (
    AGENT_ENVIRON,
    FieldCluster,
    Node,
    commands_of,
    now,
    readme_block,
    refuse_if_busy,
    skip_reason,
)

pytestmark = cluster_marks(skip_reason(), timeout=900)

RABBIT = "rabbit-node-1"
C1, C2, C3 = "compute-node-1", "compute-node-2", "compute-node-3"
NODES = [(RABBIT, 1, 2), (C1, 11, 1), (C2, 12, 1), (C3, 13, 1)]
DEVICE = "gfs2-fence"
MAP_DEVICE = "gfs2-fence-map"
UNFENCE_RABBIT = "gfs2-unfence-rabbit"
C3_STORAGE = "nnf-compute-3"  # compute-node-3's name on the storage side
README_HEADING = "## Deploying on an NNF cluster"

# The test bed's fourth node, which the README's cluster does not have: a
# device that maps its cluster name to its storage name, kept on the rabbit.
# And no throttling: on this shared machine the load is high, and the DC then
# runs one action at a time whatever concurrent-fencing says.
C3_CONFIG = f"""
pcs constraint location {DEVICE} avoids {C3}
pcs property set load-threshold=10000%
pcs stonith create {MAP_DEVICE} fence_gfs2_recorder pcmk_host_map="{C3}:{C3_STORAGE}" \\
    pcmk_action_limit=-1 op monitor interval=60s timeout=20s meta provides=unfencing --disabled
pcs constraint location {MAP_DEVICE} avoids {C1} {C2} {C3}
pcs stonith enable {MAP_DEVICE}
"""

# The original documentation's "Pacemaker Configuration", as its users typed it.
ORIGINAL_DOCS = """
pcs stonith create compute-node-2-fence fence_gfs2_recorder \\
    port=compute-node-2 \\
    op monitor interval=60s timeout=10s \\
    meta env="FENCE_TIMEOUT=90"
pcs stonith create compute-node-3-fence fence_gfs2_recorder \\
    port=compute-node-3 \\
    op monitor interval=60s timeout=10s \\
    meta env="FENCE_TIMEOUT=90"
pcs property set stonith-enabled=true
pcs property set stonith-action=reboot
"""


@pytest.fixture(scope="module")
def field(request: pytest.FixtureRequest) -> Iterator[FieldCluster]:
    refuse_if_busy()
    c = FieldCluster(NODES, "fgr-field")
    about = f"{', '.join(c.nodes)}; network namespaces, corosync knet, README deployment"
    yield from serve(request, c, "MULTI-NODE PACEMAKER CLUSTER", about, _deploy)


def _deploy(c: FieldCluster) -> None:
    c.bring_up(dc=RABBIT, pacemaker=[RABBIT, C1, C2])
    c.start_responder(RABBIT)
    t = now()
    c.applied = c.apply_commands(RABBIT, readme_block(README_HEADING))
    c.apply_commands(RABBIT, C3_CONFIG)
    c.start_pacemaker(c.nodes[C3])
    poll("every node online", lambda: rabbit(c).online(c.nodes), timeout=120)
    c.settle(
        RABBIT,
        {DEVICE: RABBIT},
        "README block applied -> devices started, every node unfenced, idle",
        since=t,
    )


# ---------------------------------------------------------------- helpers


def test_the_rabbits_agent_runs_without_home_and_discovery_lists(field: FieldCluster) -> None:
    """The README's device, as the rabbit's fencer runs it: no HOME, the
    service PATH, and discovery's defaults (kubectl from PATH, root's
    ~/.kube/config found without HOME) list the NnfNodeBlockStorages, or its
    monitor would have failed and the device would not run."""
    dump = rabbit(field).host_path(AGENT_ENVIRON)
    poll("an agent on the rabbit to run discovery", dump.exists, timeout=90)
    env = read_environ(dump)
    assert not set(LOGIN_VARIABLES) & set(env), env
    assert env["PATH"] == SERVICE_PATH, env
    assert rabbit(field).resource_nodes(DEVICE) == [RABBIT]
    r = field.run_in(RABBIT, "env", f"PATH={SERVICE_PATH}", "fence_gfs2_recorder", "-o", "monitor")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "lists NnfNodeBlockStorages with kubeconfig /root/.kube/config" in r.stdout, r.stdout


def rabbit(c: FieldCluster) -> Node:
    """The rabbit: where the device runs and the cluster is looked at from."""
    return c.nodes[RABBIT]


def rabbit_journal(c: FieldCluster) -> list[dict[str, Any]]:
    return rabbit(c).journal()


def finals(records: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    return [
        x for x in records
        if x.get("target_node") == target and x["status"] not in ("initiated",)
    ]  # fmt: skip


def fenced_after(
    c: FieldCluster, fault: Callable[[], None], targets: list[str], timeout: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Causes the fault, then waits for each target's next successful fence in
    the history. Seconds from the fault to each confirmation, and the ms of each
    target's agent exchange (request -> answer)."""
    mark = len(rabbit_journal(c))
    t0 = now()
    fault()
    before = {t: rabbit(c).fenced_count(t) for t in targets}
    seen: dict[str, float] = {}

    def check() -> bool:
        for t in targets:
            if t not in seen and rabbit(c).fenced_count(t) > before[t]:
                seen[t] = now() - t0
        return len(seen) == len(targets)

    poll(f"the cluster to fence {', '.join(targets)}", check, timeout=timeout)
    return seen, {t: agent_share(c, t, mark) for t in targets}


class DeviceWatch:
    """Samples where the fence device runs while a node rejoins."""

    def __init__(self, c: FieldCluster) -> None:
        self.c = c
        self.samples: list[list[str] | None] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(rabbit(self.c).resource_nodes(DEVICE))
            self.stop.wait(0.5)

    def done(self) -> list[list[str] | None]:
        self.stop.set()
        self.thread.join(timeout=30)
        return self.samples


def rejoin_and_unfence(c: FieldCluster, names: list[str], storage: dict[str, str]) -> float:
    """Reboots the nodes and waits until they are online and unfenced; asserts
    the device kept running on the rabbit the whole time. Returns seconds."""
    t = now()
    mark = len(rabbit_journal(c))
    watch = DeviceWatch(c)
    c.reboot(names, via=RABBIT)

    def unfenced() -> bool:
        new = rabbit_journal(c)[mark:]
        return rabbit(c).online(names) and all(
            not rabbit(c).responses_for(storage[n])
            and any(x["action"] == "on" and x.get("target_node") == storage[n] for x in new)
            for n in names
        )

    poll(f"{', '.join(names)} to rejoin and be unfenced", unfenced, timeout=180)
    rabbit(c).idle(timeout=120)
    samples = watch.done()
    assert samples and all(s == [RABBIT] for s in samples), (
        f"{DEVICE} did not keep running on {RABBIT} during the rejoin: {samples}"
    )
    return now() - t


def agent_share(c: FieldCluster, target: str, mark: int) -> float:
    done = [x for x in finals(rabbit_journal(c)[mark:], target) if x["status"] == "completed"]
    assert done, f"no completed fence of {target} in the rabbit's journal"
    return float(done[-1]["elapsed_ms"])


# ---------------------------------------------------------------- cases


def test_readme_block_runs_the_device_on_the_rabbit_and_unfences_every_node(
    field: FieldCluster,
) -> None:
    c = field
    block = readme_block(README_HEADING)
    assert "pcs stonith create gfs2-fence fence_gfs2_recorder" in block
    assert len(c.applied) == len(commands_of(block)) == 8, c.applied
    assert rabbit(c).resource_nodes(DEVICE) == [RABBIT]
    assert rabbit(c).resource_nodes(MAP_DEVICE) == [RABBIT]
    # Pacemaker unfenced every node through the agent, the rabbit included.
    for node in (RABBIT, C1, C2, C3):
        events = [e for e in rabbit(c).history(node) if e.get("action") == "on"]
        assert any(e.get("status") == "success" for e in events), (node, events)
    ons = {x["target_node"] for x in rabbit_journal(c) if x["action"] == "on"}
    assert {C1, C2, C3_STORAGE} <= ons, ons
    assert C3 not in ons, "the map device acted on the cluster name"
    # Elsewhere the agent only ever unfenced the rabbit (gfs2-unfence-rabbit),
    # which has no record there.
    seen = set()
    for node in (C1, C2, C3):
        elsewhere = {(x["action"], x["target_node"], x["status"]) for x in c.nodes[node].journal()}
        assert elsewhere <= {("on", RABBIT, "already_unfenced")}, (node, elsewhere)
        seen |= elsewhere
    assert seen, "the rabbit was never unfenced from a compute node"
    assert rabbit(c).resource_nodes(UNFENCE_RABBIT) not in (None, [RABBIT])


def test_killed_compute_is_fenced_then_unfenced_when_it_rejoins(field: FieldCluster) -> None:
    c = field
    took, share = fenced_after(c, lambda: c.kill_corosync(C1), [C1], timeout=90)
    c.timing(f"kill -9 corosync of {C1} -> fence confirmed", took[C1])
    c.timing("  of which the agent's exchange (request -> answer)", share[C1] / 1000, 3)
    assert rabbit(c).responses_for(C1), "no kept success response for the fenced node"
    poll(f"{C1} offline and clean", lambda: rabbit(c).offline_clean(C1), timeout=60)
    c.timing(
        f"{C1} reboot -> rejoined and unfenced (device kept running)",
        rejoin_and_unfence(c, [C1], {C1: C1}),
    )


def test_compute_losing_its_link_is_fenced(field: FieldCluster) -> None:
    c = field
    took, share = fenced_after(c, lambda: c.link_down(C2), [C2], timeout=90)
    c.timing(f"link of {C2} down -> fence confirmed", took[C2])
    c.timing("  of which the agent's exchange", share[C2] / 1000, 3)
    # Cut off alone, it has no quorum and cannot fence back.
    q = c.run_in(C2, "corosync-quorumtool", "-s", timeout=15).stdout
    assert re.search(r"Quorate:\s+No", q), q
    poll(f"{C2} offline and clean", lambda: rabbit(c).offline_clean(C2), timeout=60)
    rejoin_and_unfence(c, [C2], {C2: C2})


def test_two_computes_failing_at_once_are_fenced_in_parallel(field: FieldCluster) -> None:
    c = field
    delay = 3.0  # each answer takes 3 s: one after the other would take 6 s
    c.start_responder(RABBIT, "--delay", str(delay))
    try:

        def kill_both() -> None:
            c.kill_corosync(C1)
            c.kill_corosync(C2)

        seen, shares = fenced_after(c, kill_both, [C1, C2], timeout=120)
        both = max(seen.values())
        c.timing(f"two at once ({C1}, {C2}; answers take {delay:.0f} s) -> both confirmed", both)
        c.timing("  between the two confirmations", abs(seen[C1] - seen[C2]))
        c.timing("  of which the agents' exchanges (longest)", max(shares.values()) / 1000, 3)
        # concurrent-fencing=true and pcmk_action_limit=-1: both agents wait
        # for their answers at the same time.
        assert abs(seen[C1] - seen[C2]) < delay - 1, seen
        for n in (C1, C2):
            poll(f"{n} offline and clean", lambda n=n: rabbit(c).offline_clean(n), timeout=60)
    finally:
        c.start_responder(RABBIT)
    rejoin_and_unfence(c, [C1, C2], {C1: C1, C2: C2})


def test_host_map_fences_and_unfences_the_storage_name(field: FieldCluster) -> None:
    c = field
    mark = len(rabbit_journal(c))
    r = c.run_in(RABBIT, "stonith_admin", "--reboot", C3, "--timeout", "60", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    new = rabbit_journal(c)[mark:]
    assert [x["status"] for x in finals(new, C3_STORAGE)] == ["completed"], new
    assert finals(new, C3) == [], "the cluster name was fenced instead of the storage name"
    assert rabbit(c).responses_for(C3_STORAGE)
    rejoin_and_unfence(c, [C3], {C3: C3_STORAGE})


def test_original_per_node_devices_never_act_on_another_node(field: FieldCluster) -> None:
    """The original docs' devices (fixed port, no host list), applied verbatim."""
    c = field
    agent = "/usr/sbin/fence_gfs2_recorder"
    # compute-node-2 holds a fenced record (a fence by hand on the rabbit).
    r = c.run_in(RABBIT, agent, "-o", "off", "-n", C2, "--fence-timeout", "10")
    assert r.returncode == 0, r.stderr
    kept = rabbit(c).responses_for(C2)
    assert kept
    try:
        applied = c.apply_commands(RABBIT, ORIGINAL_DOCS)
        assert any("deprecated" in line for line in applied), applied  # pcs warns about port
        for dev in ("compute-node-2-fence", "compute-node-3-fence"):
            poll(
                f"{dev} started", lambda d=dev: rabbit(c).resource_nodes(d) is not None, timeout=90
            )
        marks = {n: len(c.nodes[n].journal()) for n in c.nodes}
        logs = {n: len(c.pcmk_log(n)) for n in c.nodes}

        r = c.run_in(
            RABBIT, "stonith_admin", "--reboot", "some-other-node", "--timeout", "30", timeout=120
        )
        assert r.returncode != 0, "a node nobody serves was reported fenced"
        r = c.run_in(RABBIT, "stonith_admin", "--unfence", C1, "--timeout", "30", timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr)

        for n, node in c.nodes.items():
            new = node.journal()[marks[n] :]
            wrong = [x for x in new if x.get("target_node") in (C2, C3, "some-other-node")]
            assert wrong == [], (n, wrong)
            assert [p for p in node.requests() if p.suffix == ".json"] == [], n
        assert rabbit(c).responses_for(C2) == kept, "another node's record was removed"
        # The devices were asked, and refused: the agent saw the disagreement.
        said = "".join(c.pcmk_log(n)[logs[n] :] for n in c.nodes)
        assert "refusing to act on a node Pacemaker did not name" in said
        # meta env= never reaches the agent: pacemaker-fenced's environment
        # holds no FENCE_TIMEOUT.
        fenced = c.check_in(RABBIT, "pidof", "pacemaker-fenced").split()
        env = Path(f"/proc/{fenced[0]}/environ").read_bytes().split(b"\0")
        assert not any(e.startswith(b"FENCE_TIMEOUT=") for e in env)
    finally:
        for dev in ("compute-node-2-fence", "compute-node-3-fence"):
            c.run_in(RABBIT, "pcs", "stonith", "delete", dev, timeout=120)
        r = c.run_in(RABBIT, agent, "-o", "on", "-n", C2)
        assert r.returncode == 0, r.stderr
    rabbit(c).idle(timeout=120)


def test_silent_storage_side_with_default_timeouts_ends_before_the_sigkill(
    field: FieldCluster,
) -> None:
    """Every timeout at Pacemaker's default (the README's values) and no answer."""
    c = field
    c.stop_responder(RABBIT)
    mark = len(rabbit_journal(c))
    log_mark = len(c.pcmk_log(RABBIT))
    failed0 = rabbit(c).fenced_count(C1, status="failed")
    ok0 = rabbit(c).fenced_count(C1)
    t = now()
    try:
        c.kill_corosync(C1)
        poll(f"{C1} UNCLEAN", lambda: rabbit(c).unclean(C1), timeout=60)
        took = poll(
            "the first fencing of the silent storage side to fail",
            lambda: rabbit(c).fenced_count(C1, status="failed") > failed0,
            timeout=150,
        )
        c.timing("silent storage side: kill -> first operation failed", now() - t)
        assert rabbit(c).unclean(C1), "the node was not left UNCLEAN"
        runs = [x for x in rabbit_journal(c)[mark:] if x.get("target_node") == C1]
        started = [x["request_id"] for x in runs if x["status"] == "initiated"]
        ended = {x["request_id"]: x for x in runs if x["status"] != "initiated"}
        # Pacemaker retried within its deadline, and every attempt ended by
        # itself: a SIGKILL leaves an initiated record without its final one.
        assert len(started) >= 2, runs
        first_op = started[:2]
        for rid in first_op:
            assert rid in ended, f"attempt {rid} was killed before its final record: {runs}"
            assert ended[rid]["status"] == "timeout", ended[rid]
            # The exchange's share of fence_timeout: 25 s less the agent's start-up.
            assert 23_000 <= ended[rid]["elapsed_ms"] < 30_000, ended[rid]
            assert "withdrawn" in ended[rid]["details"], ended[rid]
        said = c.pcmk_log(RABBIT)[log_mark:]
        assert not re.search(r"fence_gfs2_recorder.*(timed out|Timed Out)", said), [
            line for line in said.splitlines() if "imed out" in line
        ]
        assert took > 45, took  # both attempts ran their 25 s
    finally:
        c.start_responder(RABBIT)
    t = now()
    poll("the fence once the storage side answers", lambda: rabbit(c).fenced_count(C1) > ok0,
         timeout=90)  # fmt: skip
    c.timing("  storage side back -> fence confirmed", now() - t)
    poll(f"{C1} offline and clean", lambda: rabbit(c).offline_clean(C1), timeout=60)
    rejoin_and_unfence(c, [C1], {C1: C1})
    runs = [
        x for x in rabbit_journal(c)[mark:]
        if x.get("target_node") == C1 and x["action"] in ("off", "reboot")
    ]  # fmt: skip
    started = {x["request_id"] for x in runs if x["status"] == "initiated"}
    ended = {x["request_id"] for x in runs if x["status"] != "initiated"}
    assert started <= ended, f"attempts without a final record: {started - ended}"
    assert not [p for p in rabbit(c).requests() if p.suffix == ".json"]
