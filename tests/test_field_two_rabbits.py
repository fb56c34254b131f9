"""A compute node whose GFS2 storage sits on two rabbits (README, "More than
one rabbit"): it is fenced only when both storage sides have detached it.

Four namespaced nodes (tests/field_cluster.py): ``rabbit-node-1`` and
``rabbit-node-2``, each with its own responder (its own nnf-sos), and
``compute-node-1``/``-2``. The README block is applied verbatim with pcs.
Run with ``make two-rabbits`` (root).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_env import cluster_marks, poll, serve
from field_cluster import FieldCluster, commands_of, now, readme_block, refuse_if_busy, skip_reason

pytestmark = cluster_marks(skip_reason(), 900, pytest.mark.two_rabbits)

R1, R2, C1, C2 = "rabbit-node-1", "rabbit-node-2", "compute-node-1", "compute-node-2"
NODES = [(R1, 1, 1), (R2, 2, 1), (C1, 11, 1), (C2, 12, 1)]
DEV = {R1: "gfs2-fence-rabbit-1", R2: "gfs2-fence-rabbit-2"}


@pytest.fixture(scope="module")
def field(request: pytest.FixtureRequest) -> Iterator[FieldCluster]:
    refuse_if_busy()
    c = FieldCluster(NODES, "fgr-rabbits")
    yield from serve(request, c, "TWO-RABBIT PACEMAKER CLUSTER", ", ".join(c.nodes), _deploy)


def _deploy(c: FieldCluster) -> None:
    c.bring_up(dc=R1)
    for r in (R1, R2):
        c.start_responder(r)
    t = now()
    c.apply_commands(R1, "pcs property set load-threshold=10000%\n")  # see test_field_cluster
    c.applied = c.apply_commands(R1, readme_block("## Deploying on an NNF cluster", index=1))
    c.settle(
        R1,
        {DEV[R1]: R1, DEV[R2]: R2},
        "two-rabbit block applied -> both devices started, idle",
        since=t,
    )


def fence_records(c: FieldCluster, rabbit: str, target: str, mark: int) -> list[str]:
    return [
        x["status"]
        for x in c.nodes[rabbit].journal()[mark:]
        if x.get("target_node") == target and x["action"] in ("off", "reboot")
        and x["status"] != "initiated"
    ]  # fmt: skip


def test_compute_is_fenced_only_when_both_rabbits_detached_it(field: FieldCluster) -> None:
    c = field
    block = readme_block("## Deploying on an NNF cluster", index=1)
    assert len(c.applied) == len(commands_of(block)) == 11, c.applied
    c.start_responder(R2, "--mode", "failure")
    marks = {r: len(c.nodes[r].journal()) for r in (R1, R2)}
    failed0 = c.nodes[R1].fenced_count(C1, status="failed")
    ok0 = c.nodes[R1].fenced_count(C1)
    t = now()
    c.kill_corosync(C1)
    poll("the first fencing of compute-node-1 to fail",
         lambda: c.nodes[R1].fenced_count(C1, status="failed") > failed0, timeout=120)  # fmt: skip
    c.timing("kill -> first level attempt failed (rabbit-2 answers failure)", now() - t)
    # rabbit-node-1 detached it, rabbit-node-2 refused: not fenced.
    assert "completed" in fence_records(c, R1, C1, marks[R1])
    assert "failed" in fence_records(c, R2, C1, marks[R2])
    assert c.nodes[R1].unclean(C1)
    assert c.nodes[R1].fenced_count(C1) == ok0
    t = now()
    c.start_responder(R2)
    poll("compute-node-1 fenced", lambda: c.nodes[R1].fenced_count(C1) > ok0, timeout=120)
    c.timing("rabbit-2 answers again -> fence confirmed", now() - t)
    poll("compute-node-1 offline and clean", lambda: c.nodes[R1].offline_clean(C1), timeout=60)
    for r in (R1, R2):
        assert fence_records(c, r, C1, marks[r])[-1] == "completed", r
        # The level's reboot became off on each device; the on that would
        # follow is skipped for automatic unfencing: still fenced.
        assert not [x for x in c.nodes[r].journal()[marks[r]:]
                    if x["action"] == "on" and x["target_node"] == C1], r  # fmt: skip
        assert c.nodes[r].responses_for(C1), r
