"""What the agent does with the names and times a multi-node cluster hands it.

Without a cluster: the CIB the agent consults when Pacemaker's ``nodename``
and ``port`` disagree is played by a stand-in ``cibadmin`` first on PATH.
The real cluster cases are in tests/test_field_cluster.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import Dirs, clean_env, run_agent
from fence_gfs2_recorder.victim import is_own_host, parse_host_map

CIB = """<resources>
  <primitive id="gfs2-fence" class="stonith" type="fence_gfs2_recorder">
    <instance_attributes id="gfs2-fence-ia">
      <nvpair id="gfs2-fence-map" name="pcmk_host_map" value="{map}"/>
    </instance_attributes>
  </primitive>
  <primitive id="other" class="stonith" type="fence_dummy">
    <instance_attributes id="other-ia">
      <nvpair id="other-map" name="pcmk_host_map" value="compute-node-1:compute-node-2"/>
    </instance_attributes>
  </primitive>
</resources>
"""


def fake_cibadmin(tmp: Path, body: str | None, rc: int = 0) -> dict[str, str]:
    """An environment whose cibadmin prints body (or fails with rc)."""
    bin_dir = tmp / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "cib.xml").write_text(body or "")
    script = bin_dir / "cibadmin"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> {bin_dir}/calls\ncat {bin_dir}/cib.xml\nexit {rc}\n'
    )
    script.chmod(0o755)
    return clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}")


def cib_calls(tmp: Path) -> list[str]:
    calls = tmp / "fakebin" / "calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_host_map_is_parsed_as_pacemaker_does() -> None:
    assert parse_host_map("compute-node-1:nid1;compute-node-2=nid2 Compute-Node-3:nid3") == {
        "compute-node-1": "nid1",
        "compute-node-2": "nid2",
        "compute-node-3": "nid3",
    }
    assert parse_host_map("a\\:b:c\tx:y") == {"a:b": "c", "x": "y"}
    assert parse_host_map("") == {}
    assert parse_host_map("lonely") == {}


def test_own_host_is_recognised_by_full_and_short_name() -> None:
    assert is_own_host("rabbit-node-1", own="rabbit-node-1")
    assert is_own_host("Rabbit-Node-1", own="rabbit-node-1.example.com")
    assert is_own_host("rabbit-node-1.example.com", own="rabbit-node-1")
    assert not is_own_host("compute-node-1", own="rabbit-node-1")
    assert not is_own_host("rabbit-node-10", own="rabbit-node-1")


@pytest.mark.parametrize("action", ["reboot", "off", "status", "on"])
def test_fixed_port_for_another_node_is_refused(
    tmp_path: Path, dirs: Dirs, responder, action: str
) -> None:
    """The original per-node device: port fixed, Pacemaker asks about another node."""
    responder()
    # compute-node-2 has a kept success response: on must not remove it.
    kept = dirs.resp / "kept.json"
    kept.write_text('{"target_node": "compute-node-2", "success": true, "request_id": "x"}')
    env = fake_cibadmin(tmp_path, CIB.format(map="compute-node-9:nid9"))
    r = run_agent(
        stdin=dirs.stdin(action=action, nodename="some-other-node", port="compute-node-2"),
        env=env,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "'some-other-node'" in r.stderr and "'compute-node-2'" in r.stderr, r.stderr
    assert "refusing" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []
    assert kept.exists()
    # A refused fence is one final record and nothing sent; status and on write none.
    records = [(x["status"], x["details"]) for x in dirs.jsonl()]
    if action in ("reboot", "off"):
        assert len(records) == 1 and records[0][0] == "failed", records
        assert "refused target" in records[0][1] and "'some-other-node'" in records[0][1]
    else:
        assert records == []
    assert cib_calls(tmp_path), "the agent did not consult the CIB"


def test_unreadable_cib_refuses_a_disagreement(tmp_path: Path, dirs: Dirs) -> None:
    env = fake_cibadmin(tmp_path, None, rc=105)
    r = run_agent(
        stdin=dirs.stdin(action="reboot", nodename="compute-node-1", port="nid1"), env=env
    )
    assert r.returncode == 1
    assert "cannot be read" in r.stderr and "105" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []


@pytest.mark.parametrize("action", ["reboot", "status", "on"])
def test_host_map_of_this_agent_lets_the_mapped_port_through(
    tmp_path: Path, dirs: Dirs, responder, action: str
) -> None:
    responder()
    env = fake_cibadmin(tmp_path, CIB.format(map="compute-node-1:nid0001;compute-node-2:nid2"))
    r = run_agent(
        stdin=dirs.stdin(action=action, nodename="compute-node-1", port="nid0001"), env=env
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    if action == "reboot":
        finals = [x for x in dirs.jsonl() if x["status"] == "completed"]
        assert [x["target_node"] for x in finals] == ["nid0001"]


def test_another_agents_host_map_does_not_count(tmp_path: Path, dirs: Dirs) -> None:
    # Only fence_dummy maps compute-node-1 to compute-node-2.
    env = fake_cibadmin(tmp_path, CIB.format(map="compute-node-1:nid1"))
    r = run_agent(
        stdin=dirs.stdin(action="reboot", nodename="compute-node-1", port="compute-node-2"),
        env=env,
    )
    assert r.returncode == 1, r.stderr
    assert list(dirs.req.iterdir()) == []


def test_agreeing_names_never_consult_the_cib(tmp_path: Path, dirs: Dirs, responder) -> None:
    responder()
    env = fake_cibadmin(tmp_path, None, rc=1)
    r = run_agent(
        stdin=dirs.stdin(action="reboot", nodename="Compute-Node-3", port="compute-node-3"),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert cib_calls(tmp_path) == []


@pytest.mark.parametrize("action", ["reboot", "off"])
def test_fencing_the_own_host_is_refused(dirs: Dirs, responder, action: str) -> None:
    responder()
    me = os.uname().nodename
    r = run_agent(stdin=dirs.stdin(action=action, port=me, nodename=me))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "is this host" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == [] and dirs.responses() == []
    # The attempt Pacemaker made is still recorded, in the journal and the main log.
    (record,) = dirs.jsonl()
    assert record["status"] == "failed" and record["target_node"] == me, record
    assert "is this host" in record["details"], record
    assert "is this host" in (dirs.log / "fence-events.log").read_text()


def test_own_host_can_be_unfenced_and_asked(dirs: Dirs) -> None:
    """Pacemaker unfences the node that runs the device before starting it."""
    me = os.uname().nodename
    r = run_agent(stdin=dirs.stdin(action="on", port=me, nodename=me))
    assert r.returncode == 0, r.stderr
    r = run_agent(stdin=dirs.stdin(action="status", port=me, nodename=me))
    assert r.returncode == 0, r.stderr  # 0 = on


def test_delay_is_spent_within_fence_timeout(dirs: Dirs, responder) -> None:
    responder("--mode", "silent")
    t = time.monotonic()
    r = run_agent(
        stdin=dirs.stdin(action="reboot", port="compute-node-3", delay="2", fence_timeout="4"),
        timeout=60,
    )
    took = time.monotonic() - t
    assert r.returncode == 1
    # Without the rule the agent would run delay + fence_timeout = 6 s.
    assert 3.9 <= took < 5.5, took
    final = dirs.jsonl()[-1]
    assert final["status"] == "timeout"
    assert 1500 <= final["elapsed_ms"] < 2900, final


@pytest.mark.parametrize("delay", ["4", "9"])
def test_delay_that_leaves_no_wait_is_refused(dirs: Dirs, delay: str) -> None:
    t = time.monotonic()
    r = run_agent(
        stdin=dirs.stdin(action="reboot", port="compute-node-3", delay=delay, fence_timeout="4")
    )
    assert r.returncode == 1
    assert time.monotonic() - t < 3, "refused only after sleeping"
    assert f"delay {float(delay):g} s" in r.stderr and "fence_timeout 4 s" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []


def test_default_fence_timeout_fits_pacemakers_default_deadline_with_its_retry() -> None:
    """Two waits, fencing.py start-up and the fencer's 1 s pause before its
    retry must end before Pacemaker's default 60 s action timeout."""
    from fence_gfs2_recorder import _native

    s = _native.resolve_settings()
    startup = 1.0  # generous: measured ~0.05 s per start
    assert 2 * (s.fence_timeout + startup) + 1 < 60 - 5, s.fence_timeout
    # ...and a first wait that times out comes early enough to be retried
    # (the fencer retries only failures before 70 % of the timeout).
    assert s.fence_timeout + startup < 0.7 * 60


def test_on_without_a_response_directory_has_nothing_to_remove(dirs: Dirs) -> None:
    """A compute unfences the rabbit with a device whose directories exist only
    on the rabbit: there is no record to remove, so on succeeds."""
    dirs.resp.rmdir()
    r = run_agent(stdin=dirs.stdin(action="on", port="rabbit-node-1", nodename="rabbit-node-1"))
    assert r.returncode == 0, r.stderr
    assert [x["status"] for x in dirs.jsonl()] == ["already_unfenced"]
    assert not dirs.resp.exists()


# NNF's HA guide: one device per compute, `port` the storage side's name.
DEDICATED = """<resources>
  <primitive id="compute-1-fence" class="stonith" type="fence_gfs2_recorder">
    <instance_attributes id="compute-1-fence-ia">
      <nvpair id="c1-port" name="port" value="rabbit-compute-1"/>
      <nvpair id="c1-hosts" name="pcmk_host_list" value="{hosts}"/>
    </instance_attributes>
  </primitive>
  <primitive id="compute-2-fence" class="stonith" type="fence_gfs2_recorder">
    <instance_attributes id="compute-2-fence-ia">
      <nvpair id="c2-port" name="port" value="rabbit-compute-2"/>
    </instance_attributes>
  </primitive>
</resources>
"""


@pytest.mark.parametrize("action", ["reboot", "status", "on"])
def test_a_device_dedicated_to_the_node_acts_on_its_port(
    tmp_path: Path, dirs: Dirs, responder, action: str
) -> None:
    """port=rabbit-compute-1 pcmk_host_list=compute-1, as NNF's HA guide writes it."""
    responder()
    env = fake_cibadmin(tmp_path, DEDICATED.format(hosts="compute-1"))
    r = run_agent(
        stdin=dirs.stdin(action=action, nodename="compute-1", port="rabbit-compute-1"), env=env
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    if action == "reboot":
        finals = [x for x in dirs.jsonl() if x["status"] == "completed"]
        assert [x["target_node"] for x in finals] == ["rabbit-compute-1"]
    assert cib_calls(tmp_path), "the agent did not consult the CIB"


@pytest.mark.parametrize(
    ("hosts", "nodename", "port"),
    [
        # The list names the node, but others too: not dedicated to it.
        ("compute-1,compute-3", "compute-1", "rabbit-compute-1"),
        # The list names another node.
        ("compute-3", "compute-1", "rabbit-compute-1"),
        # A fixed port without a host list (compute-2-fence).
        ("compute-1", "compute-2", "rabbit-compute-2"),
        # A port no device has, although the node has a dedicated device.
        ("compute-1", "compute-1", "rabbit-compute-9"),
    ],
)
def test_a_fixed_port_not_dedicated_to_the_node_is_still_refused(
    tmp_path: Path, dirs: Dirs, hosts: str, nodename: str, port: str
) -> None:
    env = fake_cibadmin(tmp_path, DEDICATED.format(hosts=hosts))
    r = run_agent(stdin=dirs.stdin(action="reboot", nodename=nodename, port=port), env=env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "refusing" in r.stderr and f"{nodename!r}" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []
    (record,) = dirs.jsonl()
    assert record["status"] == "failed" and "refused target" in record["details"], record


def test_host_list_is_split_as_pacemaker_does() -> None:
    from fence_gfs2_recorder.victim import parse_host_list

    assert parse_host_list("a, b;c\td  e") == ["a", "b", "c", "d", "e"]
    assert parse_host_list(" ") == []
