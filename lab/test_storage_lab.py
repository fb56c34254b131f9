"""The fence on real storage: GFS2 over NVMe-oF in virtual machines, fenced
through the agent as a site installs it (`make storage-lab`, as root).

NNF's layout: `rabbit-node-1` exports one NVMe-oF subsystem per compute over
one RAM disk, is a cluster member with computes + 1 votes, runs the fence
device with fence_gfs2_recorder and the storage side (fence-gfs2-responder
in mode `detach`: a fence disables the compute's namespace in nvmet before
the answer, a removed answer enables it again). `compute-node-1` and
`compute-node-2` mount GFS2 (lock_dlm) with dlm fencing through Pacemaker.

The cases run in order on one set of VMs (each needs the state the one
before left): isolation, unfence, no detach no recovery, fsck, NFS. The
banner is written to build/storage-lab/banner.txt; `make storage-lab` prints
it after the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from vmlab import Build, Lab, LabError, probe_kvm

BUILD_DIR = Path(
    os.environ.get("LAB_BUILD", Path(__file__).resolve().parent.parent / "build/storage-lab")
)
RABBIT, C1, C2, NFS = "rabbit-node-1", "compute-node-1", "compute-node-2", "nfs-server-1"
COMPUTES = [C1, C2]
# name: (address index, MiB)
MACHINES = {RABBIT: (1, 768), C1: (2, 640), C2: (3, 640), NFS: (4, 384)}
CLUSTER = "fgrlab"
REQ, RESP = "/localdisk/fence-recorder/requests", "/localdisk/fence-recorder/responses"
AGENT = "/usr/sbin/fence_gfs2_recorder"
RESPONDER = "/opt/fence_gfs2_recorder/venv/bin/fence-gfs2-responder"
NQN = "nqn.2024-01.io.nnf:rabbit:{target}"
FENCE_TIMEOUT = 15  # the agent's; Pacemaker's action timeouts are 50 s
MNT = "/mnt/gfs2"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the storage lab needs root"),
    pytest.mark.timeout(900),
]


@dataclass
class Record:
    """What the run measured, for the banner."""

    accel: str = "?"
    timings: dict[str, float] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    late_writes: int | None = None

    def timing(self, phase: str, seconds: float) -> None:
        self.timings[phase] = seconds
        print(f"TIMING {phase}: {seconds:.1f} s", flush=True)

    def note(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def banner(self) -> str:
        out = [*self.lines, f"STORAGE LAB RAN ({self.accel})"]
        out += [f"TIMING {p}: {s:.1f} s" for p, s in self.timings.items()]
        if self.late_writes is not None:
            out.append(
                "writes of compute-node-2 after the detach found on the storage: "
                f"{self.late_writes}"
            )
        return "\n".join(out) + "\n"


RECORD = Record()


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Phase:
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            RECORD.timing(self.name, time.monotonic() - self.t0)


def wait_for(what: str, probe: object, limit: float, every: float = 0.5) -> object:
    """Calls `probe` until it gives something truthy; LabError after `limit`."""
    assert callable(probe)
    end = time.monotonic() + limit
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > end:
            raise LabError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(every)


def corosync_conf(lab: Lab) -> str:
    nodes = ""
    for i, (name, votes) in enumerate([(RABBIT, len(COMPUTES) + 1), (C1, 1), (C2, 1)], 1):
        nodes += (
            f"  node {{\n    ring0_addr: {lab.vms[name].ip}\n    name: {name}\n"
            f"    nodeid: {i}\n    quorum_votes: {votes}\n  }}\n"
        )
    # Loosened for software emulation on a shared machine.
    return (
        f"totem {{\n  version: 2\n  cluster_name: {CLUSTER}\n  crypto_cipher: none\n"
        f"  crypto_hash: none\n  token: 5000\n  join: 200\n}}\n"
        f"nodelist {{\n{nodes}}}\n"
        "quorum {\n  provider: corosync_votequorum\n}\n"
        "logging {\n  to_logfile: yes\n  logfile: /var/log/corosync/corosync.log\n"
        "  to_syslog: no\n  timestamp: on\n}\n"
    )


def nvpairs(prefix: str, kind: str, pairs: dict[str, str]) -> str:
    inner = "".join(
        f'<nvpair id="{prefix}-{kind}-{k}" name="{k}" value="{v}"/>' for k, v in pairs.items()
    )
    return f'<{kind} id="{prefix}-{kind}">{inner}</{kind}>'


def fence_device(rid: str, attrs: dict[str, str], meta: dict[str, str]) -> str:
    """A stonith primitive as `pcs stonith create ... op monitor interval=60s
    timeout=20s meta ...` writes it."""
    return (
        f'<primitive id="{rid}" class="stonith" type="fence_gfs2_recorder">'
        + nvpairs(rid, "instance_attributes", attrs)
        + nvpairs(rid, "meta_attributes", meta)
        + f'<operations><op id="{rid}-monitor-interval-60s" name="monitor" interval="60s" '
        'timeout="20s"/></operations></primitive>'
    )


@dataclass
class Events:
    """The rabbit's observer log: nvmet namespace changes and agent processes."""

    ns: list[tuple[float, str, str]]
    agents: dict[str, tuple[float, float | None]]

    @classmethod
    def read(cls, lab: Lab) -> Events:
        ns: list[tuple[float, str, str]] = []
        agents: dict[str, tuple[float, float | None]] = {}
        path = lab.share / "run" / RABBIT / "observer.log"
        for line in path.read_text().splitlines():
            t, kind, a, b = line.split()
            if kind == "ns":
                ns.append((float(t), a, b))
            elif b == "start":
                agents[a] = (float(t), None)
            else:
                agents[a] = (agents[a][0], float(t))
        return cls(ns, agents)

    def ns_change(self, compute: str, value: str, after: float) -> float | None:
        return next((t for t, c, v in self.ns if c == compute and v == value and t > after), None)

    def agent_around(self, t: float) -> tuple[float, float | None] | None:
        """The agent process that ran at `t` (the one that asked for the detach)."""
        return next(
            (se for se in self.agents.values() if se[0] <= t and (se[1] is None or se[1] >= t)),
            None,
        )


def writes(lab: Lab, vm: str, log: str) -> list[tuple[int, float, float, bool]]:
    path = lab.share / "run" / vm / log
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        f = line.split()
        if len(f) >= 4:
            out.append((int(f[0]), float(f[1]), float(f[2]), f[3] == "ok"))
    return out


class Cluster:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.vm = lab.vms
        self.offsets: dict[str, float] = {}

    def host_time(self, vm: str, t: float) -> float:
        """A time read on `vm`'s clock, on the host's clock."""
        return t - self.offsets[vm]

    def measure_clocks(self, names: list[str]) -> None:
        for n in names:
            self.offsets[n] = self.vm[n].clock_offset()

    def start_corosync(self, names: list[str]) -> None:
        conf = corosync_conf(self.lab)
        (self.lab.share / "corosync.conf").write_text(conf)
        for n in names:
            self.vm[n].sh("cp /lab/corosync.conf /etc/corosync/corosync.conf; corosync")

    def start_pacemaker(self, names: list[str]) -> None:
        for n in names:
            self.vm[n].spawn("exec pacemakerd", "pacemakerd.out")

    def online(self, names: list[str]) -> bool:
        rc, out = self.vm[RABBIT].sh_rc(
            "crm_mon -1 -r 2>/dev/null | grep -E '^ *\\* Online:|^Online:'"
        )
        return rc == 0 and all(n in out for n in names)

    def start_responder(self) -> None:
        self.vm[RABBIT].spawn(
            f"echo $$ > /run/responder.pid; exec {RESPONDER} --request-dir {REQ} "
            f"--response-dir {RESP} --mode detach --nvmet-subsystem '{NQN}' --poll-interval 0.2",
            "responder.log",
        )

    def stop_responder(self) -> None:
        self.vm[RABBIT].sh("kill $(cat /run/responder.pid)")

    def attach_compute(self, n: str) -> None:
        """Connect the compute's subsystem, start dlm_controld, mount GFS2."""
        self.vm[n].sh(
            "set -e; modprobe nvme_tcp; modprobe dlm; modprobe crc32c_generic; modprobe gfs2\n"
            f"nvme connect -t tcp -a {self.vm[RABBIT].ip} -s 4420 "
            f"-n nqn.2024-01.io.nnf:rabbit:{n} -q nqn.2024-01.io.nnf:host:{n} "
            "--reconnect-delay=2 >/dev/null\n"
            "for i in $(seq 50); do [ -b /dev/nvme0n1 ] && break; sleep 0.2; done\n"
            "test -b /dev/nvme0n1\n"
            "for d in /dev/dlm*; do ln -sf $d /dev/misc/; done\n"
            "mkdir -p /etc/dlm; printf 'enable_fencing=1\\nenable_startup_fencing=0\\n"
            "fence_all /usr/sbin/dlm_stonith\\n'"
            " > /etc/dlm/dlm.conf\n"
            "pgrep -x dlm_controld >/dev/null || dlm_controld\n"
            "for i in $(seq 100); do dlm_tool status >/dev/null 2>&1 && break; sleep 0.2; done\n"
            f"mkdir -p {MNT}",
            limit=120,
        )
        self.vm[n].sh(f"mount -t gfs2 /dev/nvme0n1 {MNT}", limit=180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Phase("build (kernel, initramfs, root file system, agent)"):
        build = Build.make(BUILD_DIR)
    forced = os.environ.get("LAB_ACCEL")
    if forced:
        accel, why = forced, "LAB_ACCEL"
    else:
        ok, why = probe_kvm(build)
        accel = "kvm" if ok else "tcg"
    RECORD.accel = accel
    RECORD.note(f"virtualization: {accel} (KVM probe: {why})")
    lab = Lab(build, accel)
    try:
        lab.up(MACHINES)
        c = Cluster(lab)
        yield from boot_cluster(c)
    finally:
        lab.collect_logs(
            "/var/log/pacemaker/pacemaker.log /var/log/corosync/corosync.log "
            "/var/log/gfs2-fencing /var/log/dlm.out"
        )
        lab.down()
        (BUILD_DIR / "banner.txt").write_text(RECORD.banner())


def boot_cluster(c: Cluster) -> Iterator[Cluster]:
    vm = c.vm
    names = [RABBIT, C1, C2]
    load = os.getloadavg()
    RECORD.note(f"host load average before boot: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    with Phase("boot rabbit + 2 computes"):
        for n in names:
            vm[n].start()
        for n in names:
            vm[n].wait_ready()
        RECORD.note("VMs ready after " + ", ".join(f"{n} {vm[n].ready_after:.1f} s" for n in names))
    with Phase("storage side: RAM disk, mkfs.gfs2, nvmet export, responder"):
        vm[RABBIT].sh(
            "modprobe brd rd_nr=1 rd_size=262144\n"
            f"mkfs.gfs2 -O -p lock_dlm -t {CLUSTER}:gfs0 -j 2 -J 16 /dev/ram0 >/dev/null\n"
            f"sh /lab/guest/nvmet-export.sh {vm[RABBIT].ip} /dev/ram0 {' '.join(COMPUTES)}\n"
            f"mkdir -p {REQ} {RESP}",
            limit=180,
        )
        vm[RABBIT].spawn(
            "exec python3 /lab/guest/observer.py /lab/run/rabbit-node-1/observer.log",
            "observer.out",
        )
        c.start_responder()
    with Phase("corosync quorate"):
        # The agent's first start reads it from disk: not while Pacemaker waits.
        for n in names:
            vm[n].spawn(f"{AGENT} -o metadata", "warm.out")
        c.start_corosync(names)
        wait_for(
            "corosync membership of 3",
            lambda: vm[RABBIT].sh_rc("corosync-quorumtool -s | grep -E '^Total votes: +5'")[0] == 0,
            120,
        )
    with Phase("pacemaker online"):
        c.start_pacemaker(names)
        wait_for("Pacemaker online on 3 nodes", lambda: c.online(names), 240, every=2)
    with Phase("fence devices started"):
        configure_fencing(c)
    with Phase("GFS2 mounted on both computes"):
        for n in COMPUTES:
            c.attach_compute(n)
    c.measure_clocks([RABBIT, C1, C2])
    RECORD.note(
        "guest clock offsets to the host (s): "
        + ", ".join(f"{n} {o:+.3f}" for n, o in c.offsets.items())
    )
    yield c


def configure_fencing(c: Cluster) -> None:
    r = c.vm[RABBIT]
    props = {
        "stonith-enabled": "true",
        "stonith-timeout": "50s",
        "concurrent-fencing": "true",
        # A software-emulated VM's load would make the DC throttle itself
        # to one action at a time.
        "load-threshold": "10000%",
    }
    for k, v in props.items():
        r.sh(f"crm_attribute -t crm_config -n {k} -v {v}")
    fence = fence_device(
        "gfs2-fence",
        {
            "pcmk_host_list": f"{RABBIT} {C1} {C2}",
            "request_dir": REQ,
            "response_dir": RESP,
            "log_dir": "/var/log/gfs2-fencing",
            "fence_timeout": str(FENCE_TIMEOUT),
            # No Kubernetes in the lab: GFS2 discovery is off on purpose, or
            # monitor would fail (it cannot list NnfNodeBlockStorages).
            "kubectl_path": "off",
            "pcmk_reboot_timeout": "50s",
            "pcmk_off_timeout": "50s",
            "pcmk_on_timeout": "50s",
            "pcmk_action_limit": "-1",
        },
        {"provides": "unfencing", "target-role": "Stopped"},
    )
    unfence_rabbit = fence_device(
        "gfs2-unfence-rabbit",
        {
            "pcmk_host_list": RABBIT,
            "fence_timeout": "1",
            "kubectl_path": "off",
            "request_dir": "/run/gfs2-unfence-only/requests",
            "response_dir": "/run/gfs2-unfence-only/responses",
        },
        {"provides": "unfencing"},
    )
    r.sh(f"cibadmin -C -o resources -X '{fence}'")
    for i, n in enumerate(COMPUTES):
        r.sh(
            "cibadmin -C -o constraints -X "
            f'\'<rsc_location id="gfs2-fence-avoids-{i}" rsc="gfs2-fence" node="{n}" '
            'score="-INFINITY"/>\''
        )
    r.sh("crm_resource -r gfs2-fence -m -p target-role -v Started")
    r.sh(f"cibadmin -C -o resources -X '{unfence_rabbit}'")
    r.sh(
        "cibadmin -C -o constraints -X "
        '\'<rsc_location id="gfs2-unfence-rabbit-avoids" rsc="gfs2-unfence-rabbit" '
        f'node="{RABBIT}" score="-INFINITY"/>\''
    )
    wait_for(
        "gfs2-fence started on the rabbit",
        lambda: re.search(
            r"gfs2-fence\s.*Started " + RABBIT, r.sh("crm_mon -1 -r 2>&1", check=False)
        ),
        240,
        every=2,
    )


def start_writers(c: Cluster, tag: str) -> None:
    """compute-node-2 appends records to one file; compute-node-1 creates a
    file per write (each needs new locks)."""
    c.vm[C2].sh("rm -f /tmp/stop-writer")
    c.vm[C2].spawn(
        f"exec python3 /lab/guest/writer.py append {MNT}/records-{C2}-{tag} "
        f"/lab/run/{C2}/writer-{tag}.log",
        f"writer-{tag}.out",
    )
    c.vm[C1].sh(f"rm -f /tmp/stop-writer; mkdir -p {MNT}/c1-{tag}")
    c.vm[C1].spawn(
        f"exec python3 /lab/guest/writer.py create {MNT}/c1-{tag} /lab/run/{C1}/writer-{tag}.log",
        f"writer-{tag}.out",
    )


def journal(c: Cluster, target: str) -> list[dict[str, object]]:
    out = c.vm[RABBIT].sh(
        "cat /var/log/gfs2-fencing/fence-events-detailed.jsonl 2>/dev/null", check=False
    )
    recs = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in recs if r.get("target_node") == target]


def test_isolation(cluster: Cluster) -> None:
    """compute-node-2 loses its link while appending records to GFS2; after
    the agent's exit 0 nothing it wrote after the detach is on the storage,
    even once its link is back; compute-node-1 recovers and writes again."""
    c, lab = cluster, cluster.lab
    with Phase("isolation: cut to compute-node-1 writing again"):
        start_writers(c, "iso")
        wait_for(
            "records from both",
            lambda: (
                len(writes(lab, C2, "writer-iso.log")) >= 10
                and len(writes(lab, C1, "writer-iso.log")) >= 5
            ),
            60,
        )
        t_cut = time.time()
        lab.link(c.vm[C2], up=False)
        ev = wait_for(
            "the detach of compute-node-2",
            lambda: (e := Events.read(lab)).ns_change(C2, "0", t_cut + c.offsets[RABBIT]) and e,
            180,
        )
        assert isinstance(ev, Events)
        t_detach_r = ev.ns_change(C2, "0", t_cut + c.offsets[RABBIT])
        assert t_detach_r is not None
        t_detach = c.host_time(RABBIT, t_detach_r)

        def agent_done() -> tuple[float, float] | None:
            a = Events.read(lab).agent_around(t_detach_r)
            return (a[0], a[1]) if a and a[1] is not None else None

        a = wait_for("the agent that asked for the detach to exit", agent_done, 60)
        assert isinstance(a, tuple)
        t_agent_exit = c.host_time(RABBIT, a[1])

        def c1_again() -> float | None:
            for _, _s, end, ok in writes(lab, C1, "writer-iso.log"):
                if ok and c.host_time(C1, end) > t_detach:
                    return c.host_time(C1, end)
            return None

        t_c1 = wait_for("compute-node-1 writing again", c1_again, 120)
        assert isinstance(t_c1, float)
    # The agent's own record: the fence completed (exit 0).
    assert any(r.get("status") == "completed" for r in journal(c, C2)), journal(c, C2)
    # Pacemaker's fencer, on the rabbit, saw the agent's exit 0 (its
    # summary `stonith_admin --history` shows only the last event per node).
    done = wait_for(
        "the fencer's result for compute-node-2",
        lambda: re.findall(
            r"Operation '(?:reboot|off)' targeting compute-node-2 .*: OK \(complete\)",
            c.vm[RABBIT].sh("cat /var/log/pacemaker/pacemaker.log"),
        ),
        60,
        every=2,
    )
    assert isinstance(done, list)
    RECORD.note(f"isolation: Pacemaker's fencer: {done[-1]}")
    RECORD.note(
        f"isolation: link cut -> detach {t_detach - t_cut:.1f} s -> agent exit "
        f"{t_agent_exit - t_cut:.1f} s -> compute-node-1 writing again {t_c1 - t_cut:.1f} s"
    )
    # The agent reported the fence only after the namespace was disabled
    # (the observer samples both every 20 ms: one sample may see both).
    assert t_agent_exit >= t_detach
    with Phase("isolation: link back, late writes checked"):
        lab.link(c.vm[C2], up=True)
        # nvme-tcp reconnects after 2 s; its queued writes meet the disabled namespace.
        # (a write still blocked after 40 s is fine too: it never lands)
        with contextlib.suppress(LabError):
            wait_for(
                "compute-node-2's queued writes to fail",
                lambda: any(not ok for *_, ok in writes(lab, C2, "writer-iso.log")),
                40,
            )
        c.vm[C1].sh("touch /tmp/stop-writer")
        stored = c.vm[C1].sh(f"cat {MNT}/records-{C2}-iso", limit=60)
    recs = [ln.split() for ln in stored.splitlines() if ln.strip()]
    assert recs and all(r[0] == C2 for r in recs), stored[:500]
    late = [r for r in recs if c.host_time(C2, float(r[2])) > t_detach]
    after_cut = [r for r in recs if c.host_time(C2, float(r[2])) > t_cut]
    w = writes(lab, C2, "writer-iso.log")
    last_ok = max((s for s, *_, ok in w if ok), default=0)
    RECORD.late_writes = len(late)
    RECORD.note(
        f"isolation: compute-node-2 wrote {len(w)} records ({last_ok} acknowledged), "
        f"{len(recs)} on the storage (last #{recs[-1][1]}), {len(after_cut)} dated after the cut, "
        f"{len(late)} dated after the detach; errors after the link came back: "
        f"{sum(1 for *_, ok in w if not ok)}"
    )
    assert late == [], late[:5]


def test_unfence(cluster: Cluster) -> None:
    """compute-node-2 restarts and rejoins; Pacemaker runs `on`, the storage
    side re-attaches its namespace, it mounts again and both write."""
    c, lab = cluster, cluster.lab
    with Phase("unfence: restart of compute-node-2 to both writing"):
        c.vm[C2].stop()
        # Settled first: a fence of the old incarnation still pending would
        # detach the new one after its unfence.
        wait_for(
            "compute-node-2 offline with no fencing pending",
            lambda: (
                (out := c.vm[RABBIT].sh("crm_mon -1 -r 2>&1", check=False))
                and re.search(r"OFFLINE: \[.*compute-node-2", out)
                and "Pending Fencing Actions" not in out
            ),
            180,
            every=2,
        )
        t0 = time.time()
        c.vm[C2].start()
        c.vm[C2].wait_ready()
        c.start_corosync([C2])
        c.start_pacemaker([C2])
        t_on = wait_for(
            "re-attach of compute-node-2",
            lambda: Events.read(lab).ns_change(C2, "1", t0 + c.offsets[RABBIT]),
            240,
        )
        assert isinstance(t_on, float)
        assert any(r.get("action") == "on" for r in journal(c, C2)), journal(c, C2)
        c.attach_compute(C2)
        c.measure_clocks([C2])
        start_writers(c, "rejoin")
        wait_for(
            "both writing",
            lambda: (
                sum(ok for *_, ok in writes(lab, C2, "writer-rejoin.log")) >= 5
                and sum(ok for *_, ok in writes(lab, C1, "writer-rejoin.log")) >= 5
            ),
            60,
        )
        for n in COMPUTES:
            c.vm[n].sh("touch /tmp/stop-writer")
    RECORD.note(
        f"unfence: namespace re-attached {c.host_time(RABBIT, t_on) - t0:.1f} s "
        "after compute-node-2 was restarted"
    )


def test_no_detach_no_recovery(cluster: Cluster) -> None:
    """With the storage side silent the agent times out, Pacemaker retries,
    and compute-node-1's GFS2 stays blocked; once the storage side is back the
    fence succeeds and recovery follows."""
    c, lab = cluster, cluster.lab
    with Phase("no detach: cut to recovery"):
        c.stop_responder()
        time.sleep(1)
        start_writers(c, "silent")
        wait_for(
            "writes from both",
            lambda: (
                len(writes(lab, C2, "writer-silent.log")) >= 5
                and len(writes(lab, C1, "writer-silent.log")) >= 5
            ),
            60,
        )
        t_cut = time.time()
        before = {(r.get("timestamp"), r.get("status")) for r in journal(c, C2)}
        lab.link(c.vm[C2], up=False)

        def timeouts() -> int:
            return sum(
                1
                for r in journal(c, C2)
                if r.get("status") == "timeout"
                and (r.get("timestamp"), r.get("status")) not in before
            )

        wait_for(
            "two agent timeouts (a failed attempt and Pacemaker's retry)",
            lambda: timeouts() >= 2,
            150,
            every=2,
        )
        ev = Events.read(lab)
        # The first attempt that timed out (not a monitor that ran meanwhile).
        t_first_agent = min(
            c.host_time(RABBIT, st)
            for st, e in ev.agents.values()
            if c.host_time(RABBIT, st) > t_cut and e is not None and e - st > FENCE_TIMEOUT - 1
        )
        assert ev.ns_change(C2, "0", t_cut + c.offsets[RABBIT]) is None, (
            "detached without a storage side"
        )
        w = writes(lab, C1, "writer-silent.log")
        last_done = max(c.host_time(C1, e) for _s, _st, e, ok in w if ok)
        t_back = time.time()
        blocked_for = t_back - last_done
        # compute-node-1 completed nothing since before the first fence attempt.
        assert last_done < t_first_agent + 0.5, (last_done - t_cut, t_first_agent - t_cut)
        assert c.vm[C2].proc is not None
        c.start_responder()
        t_detach_r = wait_for(
            "the detach once the storage side is back",
            lambda: Events.read(lab).ns_change(C2, "0", t_back + c.offsets[RABBIT]),
            120,
        )
        assert isinstance(t_detach_r, float)
        t_detach = c.host_time(RABBIT, t_detach_r)

        def c1_again() -> float | None:
            ends = [
                c.host_time(C1, e) for _s, _st, e, ok in writes(lab, C1, "writer-silent.log") if ok
            ]
            return next((e for e in ends if e > last_done), None)

        t_c1 = wait_for("compute-node-1 writing again", c1_again, 120)
        assert isinstance(t_c1, float)
        assert t_c1 > t_detach
        c.vm[C1].sh("touch /tmp/stop-writer")
    RECORD.note(
        f"no detach: {timeouts()} agent timeouts; compute-node-1 blocked {blocked_for:.1f} s "
        f"with the storage side silent; storage side back -> detach {t_detach - t_back:.1f} s "
        f"-> compute-node-1 writing again {t_c1 - t_back:.1f} s"
    )


def test_fsck_clean(cluster: Cluster) -> None:
    """Unmounted everywhere (compute-node-2, fenced, powered off), the file
    system passes fsck.gfs2 -n."""
    c = cluster
    with Phase("fsck.gfs2 -n"):
        c.vm[C1].sh(f"umount {MNT}", limit=120)
        c.vm[C2].stop()
        rc, out = c.vm[RABBIT].sh_rc("fsck.gfs2 -n /dev/ram0 2>&1", limit=300)
    RECORD.note(
        f"fsck.gfs2 -n: exit {rc}, last line: {out.strip().splitlines()[-1] if out.strip() else ''}"
    )
    assert rc == 0, out


def test_detach_methods(cluster: Cluster) -> None:
    """The detach table: what each way of cutting a compute off on the
    storage side does to its writes (compute-node-1's raw device, its GFS2
    unmounted; the file system was checked before)."""
    c, lab = cluster, cluster.lab
    c1, r = c.vm[C1], c.vm[RABBIT]
    cfs = "/sys/kernel/config/nvmet"
    sub, host = f"nqn.2024-01.io.nnf:rabbit:{C1}", f"nqn.2024-01.io.nnf:host:{C1}"
    log = "writer-raw.log"

    def since(t: float) -> list[tuple[int, float, float, bool]]:
        return [w for w in writes(lab, C1, log) if c.host_time(C1, w[1]) >= t]

    with Phase("detach methods (allowed_hosts, port unlink, namespace disable)"):
        c.measure_clocks([C1])
        c1.sh("rm -f /tmp/stop-writer")
        c1.spawn(
            f"exec python3 /lab/guest/writer.py block /dev/nvme0n1 /lab/run/{C1}/{log}", "raw.out"
        )
        wait_for("raw writes", lambda: len(writes(lab, C1, log)) >= 5, 60)
        # allowed_hosts: checked at connect only.
        t = time.time()
        r.sh(f"rm {cfs}/subsystems/{sub}/allowed_hosts/{host}")
        time.sleep(4)
        a = since(t)
        r.sh(f"ln -s {cfs}/hosts/{host} {cfs}/subsystems/{sub}/allowed_hosts/{host}")
        RECORD.note(
            f"detach by allowed_hosts: {sum(ok for *_, ok in a)} of {len(a)} writes "
            "in the next 4 s succeeded"
        )
        assert a and all(ok for *_, ok in a), a
        # Unlinking the subsystem from its port: writes queue, then land late.
        t = time.time()
        r.sh(f"rm {cfs}/ports/1/subsystems/{sub}")
        time.sleep(6)
        done = [w for w in writes(lab, C1, log) if c.host_time(C1, w[2]) > t + 1]
        t_back = time.time()
        r.sh(f"ln -s {cfs}/subsystems/{sub} {cfs}/ports/1/subsystems/{sub}")
        late = wait_for(
            "the queued write to complete",
            lambda: next(
                (w for w in writes(lab, C1, log)
                 if c.host_time(C1, w[1]) < t_back and c.host_time(C1, w[2]) > t_back),
                None,
            ),
            60,
        )  # fmt: skip
        assert isinstance(late, tuple)
        RECORD.note(
            f"detach by port unlink: {len(done)} writes completed while unlinked; the queued "
            f"write #{late[0]} {'succeeded' if late[3] else 'failed'} "
            f"{c.host_time(C1, late[2]) - t_back:.1f} s after the relink (a late write)"
        )
        assert not done and late[3], (done, late)
        # Disabling the namespace: the next write fails.
        time.sleep(1)
        t = time.time()
        r.sh(f"echo 0 > {cfs}/subsystems/{sub}/namespaces/1/enable")
        failed = wait_for(
            "a failed write",
            lambda: next((w for w in since(t - 1) if not w[3]), None),
            60,
        )
        assert isinstance(failed, tuple)
        after = [w for w in since(t) if w[3] and c.host_time(C1, w[2]) > t + 0.5]
        RECORD.note(
            f"detach by namespace disable: write #{failed[0]} failed "
            f"{c.host_time(C1, failed[2]) - t:.2f} s after it; {len(after)} writes "
            "succeeded after it"
        )
        assert not after, after
        c1.sh("touch /tmp/stop-writer")
        r.sh(f"echo 1 > {cfs}/subsystems/{sub}/namespaces/1/enable")


def test_exchange_on_nfs(cluster: Cluster) -> None:
    """The request and response directories on an NFSv4 export of another
    VM, mounted by the rabbit with the README's options and with the
    defaults: answer -> exit for both; validate-all's warning and the
    kernel's negative lookup cache as the README says."""
    c, lab = cluster, cluster.lab
    with Phase("NFS: boot, exchanges, checks"):
        nfs = lab.vms[NFS]
        nfs.start()
        nfs.wait_ready()
        nfs.sh(
            "modprobe nfsd; mkdir -p /srv/nfs /var/lib/nfs/rpc_pipefs /var/lib/nfs/v4recovery\n"
            "mount -t tmpfs tmpfs /srv/nfs; mkdir -p /srv/nfs/rec /srv/nfs/def\n"
            "mount -t nfsd nfsd /proc/fs/nfsd; mount -t rpc_pipefs sunrpc /var/lib/nfs/rpc_pipefs\n"
            "echo '/srv/nfs 10.213.0.0/24(rw,no_root_squash,no_subtree_check,fsid=0,sync)'"
            " > /etc/exports\n"
            "rpcbind -w; echo 10 > /proc/fs/nfsd/nfsv4leasetime\n"
            "echo 10 > /proc/fs/nfsd/nfsv4gracetime\n"
            "exportfs -ra; rpc.mountd; rpc.nfsd 4",
            limit=120,
        )
        for d in ("rec", "def"):
            nfs.spawn(
                f"exec {RESPONDER} --request-dir /srv/nfs/{d}/requests "
                f"--response-dir /srv/nfs/{d}/responses --poll-interval 0.2",
                f"responder-{d}.log",
            )
        options = {"rec": "hard,lookupcache=positive,actimeo=1", "def": "defaults"}
        r = c.vm[RABBIT]
        for d, o in options.items():
            r.sh(
                f"mkdir -p /mnt/{d}; "
                f"mount -t nfs4 -o nosharecache,{'rw' if o == 'defaults' else o} "
                f"{NFS}:/{d} /mnt/{d}",
                limit=120,
            )
        wait_for(
            "the responders' directories",
            lambda: r.sh_rc("ls -d /mnt/rec/responses /mnt/def/responses")[0] == 0,
            60,
        )
        # A create waits out the server's grace period (10 s here) before the
        # figures are taken.
        r.sh("touch /mnt/rec/.up /mnt/def/.up", limit=120)
        c.measure_clocks([RABBIT, NFS])
        results: dict[str, tuple[str, int, float, float, bool, bool]] = {}
        for d, o in options.items():
            args = (
                f"--request-dir=/mnt/{d}/requests --response-dir=/mnt/{d}/responses "
                f"--log-dir=/var/log/lab-nfs-{d}"
            )
            _rc, val = r.sh_rc(f"{AGENT} -o validate-all {args} 2>&1")
            warned = "lookupcache" in val or "caches missing names" in val
            out = r.sh(
                f"date +%s.%N; {AGENT} -o off -n compute-node-9 {args} --fence-timeout=90 "
                f">/tmp/off-{d}.out 2>&1;"
                f" echo $?; date +%s.%N"
            ).split()
            t_end = c.host_time(RABBIT, float(out[2]))
            mt = float(nfs.sh(f"stat -c %.9Y /srv/nfs/{d}/responses/*.json | sort -n | tail -1"))
            t_answer = c.host_time(NFS, mt)
            measured = (
                o,
                int(out[1]),
                t_answer - c.host_time(RABBIT, float(out[0])),
                t_end - t_answer,
                warned,
            )
            # The kernel's side of the README: a name looked up while absent.
            r.sh(f"stat /mnt/{d}/responses/probe >/dev/null 2>&1; true")
            nfs.sh(f"echo x > /srv/nfs/{d}/responses/probe")
            time.sleep(3)
            seen = r.sh_rc(f"stat /mnt/{d}/responses/probe >/dev/null 2>&1")[0] == 0
            results[d] = (*measured, seen)
        for o, rc, req_ans, ans_exit, warned, seen in results.values():
            RECORD.note(
                f"NFS {o}: exit {rc}, request -> answer {req_ans:.2f} s, "
                f"answer -> exit {ans_exit:.2f} s; "
                f"validate-all warns: {'yes' if warned else 'no'}; a name looked up while absent, "
                f"created on the server, seen 3 s later: {'yes' if seen else 'no'}"
            )
        # A listing on a mount with the defaults (its own: a lookup refreshes
        # the directory too): README says listings are cached up to acdirmax.
        r.sh(f"mkdir -p /mnt/ls; mount -t nfs4 -o nosharecache {NFS}:/def /mnt/ls", limit=120)
        r.sh("ls /mnt/ls/responses >/dev/null")
        nfs.sh("echo x > /srv/nfs/def/responses/listed")
        time.sleep(3)
        listed = "listed" in r.sh("ls /mnt/ls/responses").split()
        RECORD.note(
            "NFS defaults: a file created on the server is in a listing 3 s later: "
            + ("yes" if listed else "no")
        )
        for d, (_o, rc, *_rest) in results.items():
            assert rc == 0, (d, r.sh(f"cat /tmp/off-{d}.out"))
        # README: the defaults cache missing names (validate-all warns), the
        # recommended options do not.
        assert results["def"][4] and not results["rec"][4], results
        assert results["rec"][5] and not results["def"][5], results
