"""The cluster NNF runs: a rabbit and its compute nodes, fenced as NNF's HA
guide deploys fence_dummy, with only the agent's name changed.

``rabbit-node-1`` with ``quorum_votes`` N + 1 and ``compute-node-1`` ...
``compute-node-N`` with 1 each (the guide's 17 and 16: the rabbit alone is
quorate, all computes without it are not), every node its own namespaces
(tests/field_cluster.py). N is ``FGR_NNF_COMPUTES`` (default 16). The
bundled responder plays nnf-sos on the rabbit.

Cases, in order, on one cluster:

- the guide's STONITH loop (``fence_dummy`` replaced, fence_dummy's option
  spellings on every other device, ``port=compute-<i>`` the storage name,
  ``pcmk_host_list`` the cluster name) and its quorum: every device Started,
  a compute fenced through its own device, never another;
- chassis loss with those per-node devices: every compute's corosync
  SIGKILLed at once; all fenced, the rabbit quorate throughout; the computes
  rejoin and are unfenced through their devices;
- the workflow lifecycle: computes stop their cluster services cleanly (no
  fence) and start them again;
- chassis loss with the README's single device (``concurrent-fencing``,
  ``pcmk_action_limit=-1``), then again with a storage side that answers one
  request at a time (``--serial``);
- rabbit loss: its corosync dies; the computes, without quorum, fence
  nobody and never report the rabbit fenced.

Not collected by the normal run (its name does not start with ``test_``):
``make nnf-cluster`` runs it (root). Its output ends with the banner lines
``NNF CLUSTER RAN: ...`` and ``TIMING chassis loss (...)``.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_env import cluster_marks, poll, report, serve, sigterm, wait_until
from field_cluster import RESPONSES, FieldCluster, Node, now, refuse_if_busy, skip_reason

pytestmark = cluster_marks(skip_reason(), timeout=3000)

COMPUTES = int(os.environ.get("FGR_NNF_COMPUTES", "16"))
RABBIT = "rabbit-node-1"
NAMES = [f"compute-node-{i}" for i in range(1, COMPUTES + 1)]
RABBIT_VOTES = COMPUTES + 1  # the guide: 17 with 16 computes
NODES = [(RABBIT, 1, RABBIT_VOTES)] + [(n, 10 + i, 1) for i, n in enumerate(NAMES, start=1)]
STORAGE = {n: f"compute-{i}" for i, n in enumerate(NAMES, start=1)}  # port= in the guide
SERIAL_COST = 1.0  # seconds per request of the one-at-a-time storage side

# NNF's HA guide, "STONITH Configuration" (its `for i in $(seq 1 16)` loop),
# with fence_dummy replaced. Its `pcmk_host_list=compute-${i}` names the
# cluster node: here compute-node-${i}; `port` stays the storage side's name.
GUIDE_DEVICE = """
pcs stonith create compute-{i}-fence-dummy fence_gfs2_recorder \\
    port=compute-{i} \\
    pcmk_host_list=compute-node-{i} \\
    {dirs} \\
    op monitor interval=120s timeout=10s
"""
# The guide spells the directories as this agent does; fence_dummy's code reads
# request_path, response_path and log_path, and runs recorder mode only with
# type=recorder. Odd devices get the guide's spelling, even ones fence_dummy's.
GUIDE_DIRS = (
    "request_dir=/localdisk/fence-recorder/requests "
    "response_dir=/localdisk/fence-recorder/responses log_dir=/var/log/cluster"
)
DUMMY_DIRS = (
    "type=recorder request_path=/localdisk/fence-recorder/requests "
    "response_path=/localdisk/fence-recorder/responses log_path=/var/log/cluster"
)
GUIDE_END = "pcs property set stonith-enabled=true\n"
GUIDE_LOG = "/var/log/cluster"

# What the guide lacks and this agent needs (README, "Coming from fence_dummy"):
# pcs adds provides=unfencing from the metadata, so the rabbit must be
# unfenceable from a compute; and the devices must run where the responses
# are, on the rabbit.
UNFENCE_RABBIT = f"""
pcs stonith create gfs2-unfence-rabbit fence_gfs2_recorder \\
    pcmk_host_list={RABBIT} fence_timeout=1 \\
    request_dir=/run/gfs2-unfence-only/requests \\
    response_dir=/run/gfs2-unfence-only/responses \\
    op monitor interval=60s timeout=20s \\
    meta provides=unfencing
pcs constraint location gfs2-unfence-rabbit avoids {RABBIT}
"""
# The test bed: no throttling on this shared machine (test_field_cluster.py).
TEST_BED = "pcs property set load-threshold=10000%\n"

SINGLE = "gfs2-fence"
SINGLE_DEVICE = f"""
pcs stonith create {SINGLE} fence_gfs2_recorder \\
    pcmk_host_list="{" ".join([RABBIT, *NAMES])}" \\
    request_dir=/localdisk/fence-recorder/requests \\
    response_dir=/localdisk/fence-recorder/responses \\
    log_dir=/var/log/gfs2-fencing \\
    fence_timeout=25 \\
    pcmk_reboot_timeout=60s pcmk_off_timeout=60s pcmk_on_timeout=60s \\
    pcmk_action_limit=-1 \\
    op monitor interval=60s timeout=20s \\
    meta provides=unfencing --disabled
pcs constraint location {SINGLE} avoids {" ".join(NAMES)}
pcs stonith enable {SINGLE}
pcs property set concurrent-fencing=true
"""


CIB_COPY = "/run/guide-cib.xml"  # the rabbit's private /run
CIB_ORIG = "/run/guide-cib.orig.xml"


def in_copy(block: str) -> str:
    """The block's pcs commands, made against CIB_COPY (`pcs -f`)."""
    return block.replace("pcs ", f"pcs -f {CIB_COPY} ")


def guide_device(i: int) -> str:
    return GUIDE_DEVICE.format(i=i, dirs=GUIDE_DIRS if i % 2 else DUMMY_DIRS)


def guide_id(i: int) -> str:
    return f"compute-{i}-fence-dummy"


def keep_on_rabbit(i: int) -> str:
    return f"pcs constraint location {guide_id(i)} avoids {' '.join(NAMES)}\n"


class NnfCluster(FieldCluster):
    """The field cluster, stopped as the site stops it: the computes' cluster
    services first, then the rabbit's. Stopped all at once, the rabbit's
    Pacemaker (the DC, quorate alone) did not finish its shutdown within 60 s
    while its computes left at the same moment."""

    def stop(self) -> list[str]:
        problems: list[str] = []
        running = [
            n for n in NAMES
            if (p := self.nodes[n].pacemakerd) is not None and p.poll() is None
        ]  # fmt: skip
        for n in running:
            p = self.nodes[n].pacemakerd
            assert p is not None
            p.send_signal(signal.SIGTERM)
        for n in running:
            p = self.nodes[n].pacemakerd
            assert p is not None
            sigterm(p, f"{n}:pacemakerd", 60, problems)
        return problems + super().stop()


class Results:
    """What the banner says."""

    def __init__(self) -> None:
        self.votes: str = "?"
        self.chassis: list[tuple[str, float, float]] = []


RESULTS = Results()


@pytest.fixture(scope="module")
def nnf(request: pytest.FixtureRequest) -> Iterator[FieldCluster]:
    refuse_if_busy()
    c = NnfCluster(NODES, "fgr-nnf")
    about = f"{RABBIT} ({RABBIT_VOTES} votes) + {COMPUTES} computes, NNF's HA guide"
    load = os.getloadavg()
    c.notes.append(f"load average at start: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    yield from serve(request, c, "NNF-SHAPED CLUSTER", about, _deploy)
    banner = [
        f"NNF CLUSTER RAN: {RABBIT} ({RESULTS.votes} votes) + {COMPUTES} computes",
        *(
            f"TIMING chassis loss ({layout}, {COMPUTES} computes): kill -> first fence "
            f"confirmed: {first:.1f} s, last: {last:.1f} s"
            for layout, first, last in RESULTS.chassis
        ),
    ]
    report(request, banner)
    # make nnf-cluster prints it again after pytest's summary, as the last lines.
    out = os.environ.get("FGR_NNF_BANNER")
    if out:
        Path(out).write_text("\n".join(banner) + "\n")


def _deploy(c: FieldCluster) -> None:
    c.bring_up(dc=RABBIT)
    c.start_responder(RABBIT)
    t = now()
    c.apply_commands(RABBIT, TEST_BED)
    # The loop's commands as written, against a copy of the CIB pushed once
    # (`pcs -f`, as pcs documents for batch changes): applied live, every new
    # device re-unfences every node, and 16 devices took 300 s here.
    c.apply_commands(RABBIT, f"pcs cluster cib {CIB_COPY}\npcs cluster cib {CIB_ORIG}\n")
    c.applied = []
    for i in range(1, COMPUTES + 1):
        c.applied += c.apply_commands(RABBIT, in_copy(guide_device(i)))
        c.apply_commands(RABBIT, in_copy(keep_on_rabbit(i)))
    c.applied += c.apply_commands(RABBIT, in_copy(GUIDE_END))
    c.apply_commands(RABBIT, in_copy(UNFENCE_RABBIT))
    c.apply_commands(RABBIT, f"pcs cluster cib-push {CIB_COPY} diff-against={CIB_ORIG}\n")
    c.settle(
        RABBIT,
        {guide_id(i): RABBIT for i in range(1, COMPUTES + 1)},
        f"guide's loop x{COMPUTES} applied -> devices started, every node unfenced, idle",
        since=t,
    )


# ---------------------------------------------------------------- helpers


def rabbit(c: FieldCluster) -> Node:
    return c.nodes[RABBIT]


def fences(via: Node) -> set[tuple[str, str, str, str]]:
    """Every successful off/reboot in the fencing history: (target, action,
    completed, delegate)."""
    return {
        (e.get("target", ""), e.get("action", ""), e.get("completed", ""), e.get("delegate", ""))
        for e in via.history("*")
        if e.get("status") == "success" and e.get("action") in ("reboot", "off")
    }


def quorate(node: Node) -> bool:
    return node.quorum().get("Quorate", "").startswith("Yes")


def agent_fences(records: list[dict[str, Any]]) -> list[str]:
    """Targets of the completed fences among journal records."""
    return [
        x["target_node"] for x in records
        if x["action"] in ("off", "reboot") and x["status"] == "completed"
    ]  # fmt: skip


def chassis_loss(c: FieldCluster, layout: str, log_dir: str) -> dict[str, float]:
    """SIGKILLs every compute's corosync at once; waits for every fence,
    checking the rabbit stays quorate. Seconds from the kill to each
    confirmation (as often as the history can be read)."""
    before = fences(rabbit(c))
    mark = len(rabbit(c).journal(log_dir=Path(log_dir)))
    t0 = now()
    for n in NAMES:
        p = c.nodes[n].corosync
        assert p is not None and p.poll() is None, n
        p.send_signal(signal.SIGKILL)
    for n in NAMES:
        p = c.nodes[n].corosync
        assert p is not None
        p.wait(timeout=30)
    seen: dict[str, float] = {}
    lost_quorum: list[float] = []

    def all_fenced() -> bool:
        for target, *_ in fences(rabbit(c)) - before:
            if target in NAMES and target not in seen:
                seen[target] = now() - t0
        if not quorate(rabbit(c)):
            lost_quorum.append(now() - t0)
        return len(seen) == len(NAMES)

    poll(f"every compute fenced ({layout})", all_fenced, timeout=120 + 10 * COMPUTES)
    assert lost_quorum == [], f"the rabbit lost quorum at {lost_quorum} s"
    first, last = min(seen.values()), max(seen.values())
    RESULTS.chassis.append((layout, first, last))
    c.timing(f"chassis loss ({layout}): kill -> first fence confirmed", first)
    c.timing(f"chassis loss ({layout}): kill -> last fence confirmed", last)
    new = rabbit(c).journal(log_dir=Path(log_dir))[mark:]
    c.notes.append(
        f"chassis loss ({layout}): agent exchanges (request -> answer) "
        f"{_spread([x['elapsed_ms'] / 1000 for x in new if x['status'] == 'completed'])}"
    )
    for n in NAMES:
        poll(f"{n} offline and clean", lambda n=n: rabbit(c).offline_clean(n), timeout=60)
    return seen


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    v = sorted(values)
    return f"min {v[0]:.2f} s, median {v[len(v) // 2]:.2f} s, max {v[-1]:.2f} s"


def rejoin(c: FieldCluster, names: list[str], storage: dict[str, str], log_dir: str) -> float:
    """Reboots the computes (a fenced node comes back whole); waits until all
    are online and unfenced: an `on` record for each and no kept record."""
    t = now()
    mark = len(rabbit(c).journal(log_dir=Path(log_dir)))
    c.reboot(names, via=RABBIT)

    def unfenced() -> bool:
        new = rabbit(c).journal(log_dir=Path(log_dir))[mark:]
        ons = {x.get("target_node") for x in new if x["action"] == "on"}
        return (
            rabbit(c).online(names)
            and all(storage[n] in ons for n in names)
            and not any(rabbit(c).responses_for(storage[n]) for n in names)
        )

    poll("every compute rejoined and unfenced", unfenced, timeout=180 + 10 * COMPUTES)
    rabbit(c).idle(timeout=300)
    return now() - t


def stop_services(c: FieldCluster, names: list[str]) -> None:
    """The workflow ends: `pcs cluster stop` on each compute (Pacemaker, then corosync)."""
    problems: list[str] = []
    for n in names:
        node = c.nodes[n]
        assert node.pacemakerd is not None
        node.pacemakerd.send_signal(signal.SIGTERM)
    for n in names:
        node = c.nodes[n]
        assert node.pacemakerd is not None and node.corosync is not None
        sigterm(node.pacemakerd, f"{n}:pacemakerd", 120, problems)
        sigterm(node.corosync, f"{n}:corosync", 30, problems)
        node.pacemakerd = node.corosync = None
    assert problems == [], problems


def start_services(c: FieldCluster, names: list[str]) -> None:
    """The next workflow: corosync, then Pacemaker, on each compute."""
    for n in names:
        c.start_corosync(c.nodes[n])
    up = sum(1 for n in c.nodes.values() if n.corosync is not None)
    wait_until(
        "the computes back in corosync",
        lambda: c.members(RABBIT) == up,
        timeout=60 + 2 * COMPUTES,
    )
    for n in names:
        c.start_pacemaker(c.nodes[n])


# ---------------------------------------------------------------- cases


def test_guide_quorum_and_devices(nnf: FieldCluster) -> None:
    c = nnf
    q = rabbit(c).quorum()
    total = RABBIT_VOTES + COMPUTES
    RESULTS.votes = (
        c.check_in(RABBIT, "corosync-cmapctl", "-g", "nodelist.node.0.quorum_votes")
        .split("=")[-1]
        .strip()
    )
    assert RESULTS.votes == str(RABBIT_VOTES), RESULTS.votes
    assert q.get("Total votes") == str(total), q
    assert q.get("Quorum") == str(total // 2 + 1), q
    c.notes.append(
        f"quorum: {RABBIT} {RABBIT_VOTES} votes, computes 1 each: total {total}, "
        f"quorum {q.get('Quorum')}"
    )
    assert len(c.applied) == COMPUTES + 1, c.applied
    for i in range(1, COMPUTES + 1):
        assert rabbit(c).resource_nodes(guide_id(i)) == [RABBIT], guide_id(i)
    # fence_dummy's spellings were taken: every device's monitor used its
    # directories, and nothing warned about an unknown option.
    log = c.pcmk_log(RABBIT)
    assert "Ignoring unknown option" not in log


def test_a_compute_is_fenced_through_its_own_device(nnf: FieldCluster) -> None:
    c = nnf
    target, storage = NAMES[-1], STORAGE[NAMES[-1]]
    mark = len(rabbit(c).journal(log_dir=Path(GUIDE_LOG)))
    t = now()
    r = c.run_in(RABBIT, "stonith_admin", "--reboot", target, "--timeout", "60", timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    c.timing(f"stonith_admin --reboot {target} -> confirmed", now() - t)
    new = rabbit(c).journal(log_dir=Path(GUIDE_LOG))[mark:]
    # Its own device acted, on its storage name; no other device, no other name.
    assert agent_fences(new) == [storage], new
    assert {x.get("target_node") for x in new} == {storage}, new
    assert rabbit(c).responses_for(storage, response_dir=RESPONSES)
    # Told it was fenced, its Pacemaker stops: it reboots and is unfenced.
    rejoin(c, [target], STORAGE, GUIDE_LOG)


def test_chassis_loss_with_the_guides_per_node_devices(nnf: FieldCluster) -> None:
    c = nnf
    chassis_loss(c, "per-node devices", GUIDE_LOG)
    took = rejoin(c, NAMES, STORAGE, GUIDE_LOG)
    c.timing("per-node devices: computes rebooted -> rejoined and unfenced", took)
    for i in range(1, COMPUTES + 1):
        assert rabbit(c).resource_nodes(guide_id(i)) == [RABBIT], guide_id(i)


WAVE = 4  # computes whose workflow ends at the same moment


def test_workflow_lifecycle_stops_and_starts_without_fencing(nnf: FieldCluster) -> None:
    """Workflows end and start a few computes at a time. All 16 stopped at
    the same moment here, the rabbit's CIB manager (load ~20 on 2 cores) did
    not answer pacemakerd's health check, which killed it: the rabbit's
    Pacemaker restarted and fenced two computes whose state it had lost."""
    c = nnf
    before = fences(rabbit(c))
    t = now()
    for k in range(0, COMPUTES, WAVE):
        stop_services(c, NAMES[k : k + WAVE])
    for n in NAMES:
        poll(f"{n} offline and clean", lambda n=n: rabbit(c).offline_clean(n), timeout=60)
    c.timing(f"workflow end: {COMPUTES} computes stopped cleanly, {WAVE} at a time", now() - t)
    time.sleep(5)  # a fence would be scheduled at once for an unclean node
    assert fences(rabbit(c)) == before, "a clean stop was fenced"
    t = now()
    for k in range(0, COMPUTES, WAVE):
        start_services(c, NAMES[k : k + WAVE])
    poll("every compute online", lambda: rabbit(c).online(NAMES), timeout=120 + 5 * COMPUTES)
    rabbit(c).idle(timeout=300)
    c.timing(f"workflow start: {COMPUTES} computes online, idle, {WAVE} at a time", now() - t)
    assert fences(rabbit(c)) == before
    for i in range(1, COMPUTES + 1):
        assert rabbit(c).resource_nodes(guide_id(i)) == [RABBIT], guide_id(i)


def _switch_to_single_device(c: FieldCluster) -> None:
    t = now()
    for kind, xpath in (
        ("constraints", "//rsc_location[contains(@rsc, '-fence-dummy')]"),
        ("resources", "//primitive[contains(@id, '-fence-dummy')]"),
    ):
        # --force: cibadmin asks for it before deleting by XPath.
        r = c.run_in(RABBIT, "cibadmin", "--delete-all", "--xpath", xpath, "--force")
        assert r.returncode == 0, (kind, r.stdout, r.stderr)
    c.apply_commands(RABBIT, SINGLE_DEVICE)
    c.settle(RABBIT, {SINGLE: RABBIT}, "README's single device in place of the guide's", since=t)


def test_chassis_loss_with_the_readmes_single_device(nnf: FieldCluster) -> None:
    c = nnf
    _switch_to_single_device(c)
    same = {n: n for n in NAMES}
    chassis_loss(c, "single device, concurrent-fencing", "/var/log/gfs2-fencing")
    took = rejoin(c, NAMES, same, "/var/log/gfs2-fencing")
    c.timing("single device: computes rebooted -> rejoined and unfenced", took)


def test_chassis_loss_with_a_storage_side_answering_one_at_a_time(nnf: FieldCluster) -> None:
    c = nnf
    c.start_responder(RABBIT, "--serial", f"{SERIAL_COST:g}")
    try:
        seen = chassis_loss(
            c,
            f"single device, storage side serial {SERIAL_COST:g} s/request",
            "/var/log/gfs2-fencing",
        )
        # One at a time: the last answer comes no sooner than N costs after the first request.
        assert max(seen.values()) >= SERIAL_COST * COMPUTES, seen
    finally:
        c.start_responder(RABBIT)
    rejoin(c, NAMES, {n: n for n in NAMES}, "/var/log/gfs2-fencing")


def test_rabbit_loss_fences_nobody(nnf: FieldCluster) -> None:
    c = nnf
    watcher = c.nodes[NAMES[0]]
    before = fences(watcher)
    marks = {n: len(c.nodes[n].journal()) for n in NAMES}
    kept = sorted(p.name for p in rabbit(c).host_path(RESPONSES).iterdir())
    c.kill_corosync(RABBIT)
    t = now()
    wait_until("the computes to lose quorum", lambda: not quorate(watcher), timeout=60)
    c.timing("rabbit loss: kill -> computes without quorum", now() - t)
    q = watcher.run("corosync-quorumtool", "-s", timeout=15).stdout
    assert re.search(r"Quorate:\s+No", q), q
    # Watch as long as a fence would take to be scheduled and run.
    deadline = now() + 60
    while now() < deadline:
        assert fences(watcher) == before, "a compute without quorum fenced a node"
        time.sleep(2)
    for n in NAMES:
        new = c.nodes[n].journal()[marks[n] :]
        assert [x for x in new if x["action"] in ("off", "reboot")] == [], (n, new)
    state = watcher.node_state().get(RABBIT, {})
    c.notes.append(f"rabbit loss: {RABBIT} as the computes see it after 60 s: {state}")
    # Its earlier unfencing (`on`) is in the history; no fence of it ever is.
    fenced = [
        e for e in watcher.history(RABBIT)
        if e.get("status") == "success" and e.get("action") in ("reboot", "off")
    ]  # fmt: skip
    assert fenced == [], fenced
    after = sorted(p.name for p in rabbit(c).host_path(RESPONSES).iterdir())
    assert after == kept
