"""A real multi-node corosync + Pacemaker cluster on one machine, for the tests.

Each node (``rabbit-node-1``, ``compute-node-1``, ...) is its own network,
mount and UTS namespace: a per-node root (host directories bound in) with
private ``/etc/corosync``, ``/var/lib/pacemaker``, ``/var/lib/corosync``,
``/var/lib/pcsd``, ``/run``, ``/dev/shm``, ``/var/log`` and ``/localdisk``,
its own host name, a private ``/root`` with ``/root/.kube/config``, a
kubectl that finds its config as the real one does (a read-only overlay puts
it first in the service PATH, at ``/usr/local/bin``; it lists the
NnfNodeBlockStorages of ``rabbit-node-1`` and copies the environment of the
agent that runs it to ``/var/log/fgr-kubectl/agent.environ``), and one veth
into a bridge that lives in a namespace of
its own. The addresses (10.213.9.0/24) exist only inside those namespaces;
corosync talks knet over the bridge.

The agent is installed by scripts/install.sh into the run directory
(virtualenv, launcher with an absolute interpreter, man page), and a
read-only overlay puts that launcher at ``/usr/sbin/fence_gfs2_recorder``
inside the nodes only, where pacemaker-fenced looks for agents; the host's
``/usr/sbin`` is never touched. The bundled responder plays nnf-sos on each
rabbit.

It refuses to start beside any corosync or Pacemaker process or any
namespace of ours it did not create, signals only processes it started (by
PID, checked against their start time) or that live in the network
namespaces it created, deletes those namespaces, and leaves nothing on the
host but, when asked to keep them, the logs in its run directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cluster_env import (
    INSTALLED_AGENT,
    JOURNAL_NAME,
    PACKAGED_RESPONDER,
    REPO,
    Harness,
    Proc,
    Tools,
    cluster_processes,
    corosync_conf,
    end,
    needs,
    pacemaker_env,
    poll,
    preinstalled,
    read_journal,
    refuse_beside_others,
    responses_for,
    run_install,
    seed_cib,
    sigterm,
    system_env,
    wait_for_banner,
    wait_until,
)

from helpers import comm_of, config_finding_kubectl, kubeconfig, storages_on

NS_PREFIX = "fgr-"
HUB = NS_PREFIX + "hub"
NET = "10.213.9"
AGENT = "fence_gfs2_recorder"
NODE_BINARIES = (
    "corosync",
    "corosync-quorumtool",
    "pacemakerd",
    "cibadmin",
    "crm_mon",
    "stonith_admin",
    "pcs",
    "ip",
    "nsenter",
    "unshare",
)
REQUESTS = Path("/localdisk/fence-recorder/requests")
RESPONSES = Path("/localdisk/fence-recorder/responses")
FENCE_LOGS = Path("/var/log/gfs2-fencing")
# Where the kubectl of the nodes copies the environment of the agent running it.
AGENT_ENVIRON = Path("/var/log/fgr-kubectl/agent.environ")
# The rabbit whose NnfNodeBlockStorages that kubectl lists.
STORAGE_RABBIT = "rabbit-node-1"

# Runs as the node's first process: its own mount and UTS namespace (from
# unshare), inside the node's network namespace (from nsenter). Builds the
# node's root, then chroots into it and sleeps as the namespaces' anchor;
# the kernel drops every mount when the last process of the namespace ends.
HOLDER = r"""set -eu
name=$1; dir=$2; sbin=$3; kbin=$4; root=$dir/root
hostname "$name"
mkdir -p "$root"
for d in tmp etc usr var opt proc dev; do
    mkdir -p "$root/$d"; mount --rbind "/$d" "$root/$d"
done
for l in bin sbin lib lib64; do
    if [ -L "/$l" ]; then ln -sfn "$(readlink "/$l")" "$root/$l"; fi
done
mkdir -p "$root/sys" "$root/run" "$root/localdisk" "$root/root"
mount -t sysfs sysfs "$root/sys"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/run/lock"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount --bind "$dir/etc-corosync" "$root/etc/corosync"
mount --bind "$dir/var-lib-pacemaker" "$root/var/lib/pacemaker"
mount --bind "$dir/var-lib-corosync" "$root/var/lib/corosync"
mount --bind "$dir/var-lib-pcsd" "$root/var/lib/pcsd"
mount --bind "$dir/var-log" "$root/var/log"
mount --bind "$dir/localdisk" "$root/localdisk"
mount --bind "$dir/home-root" "$root/root"
# Discovery's kubectl, first in the service PATH: this node only.
mount -t overlay overlay -o "lowerdir=$kbin:/usr/local/bin" "$root/usr/local/bin"
# The agent as installed, where the fencer looks for it: this node only.
mount -t overlay overlay -o "lowerdir=$sbin:/usr/sbin" "$root/usr/sbin"
echo $$ > "$dir/holder.ready"
cd "$root"
exec chroot . /bin/sleep infinity
"""


def skip_reason() -> str | None:
    reason = needs(
        "the multi-node cluster",
        "namespaces, corosync, pacemakerd",
        NODE_BINARIES,
        "pacemaker, pacemaker-cli-utils, corosync, pcs and iproute2",
    )
    if reason is not None:
        return reason
    probe = subprocess.run(
        ["unshare", "-m", "-n", "-u", "true"], capture_output=True, text=True, timeout=30
    )
    if probe.returncode != 0:
        return f"namespaces are not available here: {probe.stderr.strip()}"
    return None


def our_namespaces() -> list[str]:
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(NS_PREFIX)]


def refuse_if_busy() -> None:
    """Fails, touching nothing, if a cluster or namespaces of another run exist."""
    refuse_beside_others("the multi-node cluster")
    stale = our_namespaces()
    if stale:
        pytest.fail(
            f"refusing to start the multi-node cluster: network namespaces {stale} exist "
            "(another run, or one that did not finish); delete them with `ip netns del` "
            "after checking `ip netns pids`",
            pytrace=False,
        )


def now() -> float:
    return time.monotonic()


@dataclass
class Node(Tools):
    """One namespaced node; its tools run inside it."""

    name: str
    ip: str
    votes: int
    dir: Path
    holder: subprocess.Popen[bytes] | None = None
    corosync: subprocess.Popen[bytes] | None = None
    pacemakerd: subprocess.Popen[bytes] | None = None
    procs: list[Proc] = field(default_factory=list)
    boots: int = 0

    @property
    def ns(self) -> str:
        return NS_PREFIX + self.name

    def host_path(self, inside: Path) -> Path:
        """Where a path of the node's private directories is on the host."""
        mounts = {
            Path("/localdisk"): "localdisk",
            Path("/var/log"): "var-log",
            Path("/var/lib/pacemaker"): "var-lib-pacemaker",
            Path("/etc/corosync"): "etc-corosync",
        }
        for base, sub in mounts.items():
            if inside == base or base in inside.parents:
                return self.dir / sub / inside.relative_to(base)
        raise ValueError(f"{inside} is not private to the node")

    def run(
        self, *argv: str, timeout: float = 90, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert self.holder is not None, f"{self.name} is down"
        return subprocess.run(
            ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "-u", "-r", "-w", "--", *argv],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=system_env(),
            timeout=timeout,
        )

    def journal(self, log_dir: Path = FENCE_LOGS) -> list[dict[str, Any]]:
        return read_journal(self.host_path(log_dir / JOURNAL_NAME))

    def responses_for(self, target: str, response_dir: Path = RESPONSES) -> list[Path]:
        """The kept success answers for target."""
        return responses_for(self.host_path(response_dir), target, only_success=True)

    def requests(self, request_dir: Path = REQUESTS) -> list[Path]:
        d = self.host_path(request_dir)
        return sorted(d.iterdir()) if d.is_dir() else []


class FieldCluster(Harness):
    """Namespaced nodes, their corosync and Pacemaker, and the responders."""

    def __init__(self, spec: Iterable[tuple[str, int, int]], cluster_name: str) -> None:
        super().__init__("fgr-field-")
        self.cluster_name = cluster_name
        self.holder_script = self.root / "holder.sh"
        self.holder_script.write_text(HOLDER)
        self.prefix = self.root / "install"
        self.sbin = self.prefix / "sbin"
        self.kbin = self.root / "kubectl-bin"
        config_finding_kubectl(
            self.kbin, storages_on(STORAGE_RABBIT, self.root / "kubectl-data"), AGENT_ENVIRON
        )
        self.venv = self.prefix / "venv"
        self.responder_command = str(self.venv / "bin" / "fence-gfs2-responder")
        self.nodes = {
            name: Node(name, f"{NET}.{host}", votes, self.root / "nodes" / name)
            for name, host, votes in spec
        }
        self.responders: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        self.extra: list[subprocess.Popen[bytes]] = []
        self.applied: list[str] = []
        self.hub_made = False
        self._out = 0

    # ---------------------------------------------------------------- set-up

    def install_agent(self) -> Path:
        """scripts/install.sh into the run directory: the installed form, ours
        only. With FGR_INSTALLED=1, the package's agent in /usr/sbin."""
        if preinstalled():
            self.sbin.mkdir(parents=True)  # the overlay's empty upper layer
            self.responder_command = str(PACKAGED_RESPONDER)
            self.notes.append(f"agent installed by its package: {INSTALLED_AGENT}")
            return INSTALLED_AGENT
        t = now()
        run_install(
            INSTALL_VENV=str(self.venv),
            SBINDIR=str(self.sbin),
            MAN8DIR=str(self.prefix / "man8"),
            SHAREDIR=str(self.prefix / "share"),
        )
        self.prefix.chmod(0o755)
        launcher = self.sbin / AGENT
        first = launcher.read_text().splitlines()[0]
        assert first == f"#!{self.venv}/bin/python -I", first
        self.notes.append(f"agent installed by scripts/install.sh in {now() - t:.1f} s: {first}")
        return launcher

    def hub_up(self) -> None:
        self.ip("netns", "add", HUB)
        self.hub_made = True
        self.ip("-n", HUB, "link", "set", "lo", "up")
        self.ip("-n", HUB, "link", "add", "br0", "type", "bridge")
        self.ip("-n", HUB, "link", "set", "br0", "up")

    def ip(self, *args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            pytest.fail(f"ip {' '.join(args)} -> {r.returncode}: {r.stderr}")

    def node_up(self, node: Node) -> None:
        d = node.dir
        for sub in ("root", "etc-corosync", "var-lib-corosync", "var-lib-pcsd", "localdisk"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        kubeconfig(d / "home-root" / ".kube" / "config")
        (d / "var-log" / AGENT_ENVIRON.parent.name).mkdir(parents=True, exist_ok=True)
        for sub in ("cib", "pengine", "blackbox", "cores"):
            p = d / "var-lib-pacemaker" / sub
            p.mkdir(parents=True, exist_ok=True)
            shutil.chown(p, "hacluster", "haclient")
            p.chmod(0o750)
        for sub in ("pacemaker/bundles", "corosync"):
            (d / "var-log" / sub).mkdir(parents=True, exist_ok=True)
        for p in (d / "var-log" / "pacemaker", d / "var-log" / "pacemaker" / "bundles"):
            shutil.chown(p, "hacluster", "haclient")
            p.chmod(0o770)
        uidgid = Path("/etc/corosync/uidgid.d")
        if uidgid.is_dir() and not (d / "etc-corosync" / "uidgid.d").exists():
            shutil.copytree(uidgid, d / "etc-corosync" / "uidgid.d")
        self.ip("netns", "add", node.ns)
        self.ip("-n", node.ns, "link", "set", "lo", "up")
        veth = f"v{list(self.nodes).index(node.name)}b{node.boots}"
        self.ip(
            "-n", HUB, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node.ns
        )
        self.ip("-n", HUB, "link", "set", veth, "master", "br0", "up")
        self.ip("-n", node.ns, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        self.ip("-n", node.ns, "link", "set", "eth0", "up")
        ready = d / "holder.ready"
        ready.unlink(missing_ok=True)
        node.boots += 1
        with open(d / f"holder-{node.boots}.out", "wb") as out:
            node.holder = subprocess.Popen(
                [
                    "nsenter", f"--net=/run/netns/{node.ns}", "--",
                    "unshare", "-m", "-u", "--propagation", "private", "--",
                    "/bin/sh", str(self.holder_script), node.name, str(d), str(self.sbin),
                    str(self.kbin),
                ],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        holder = node.holder

        def anchored() -> bool:
            if holder.poll() is not None:
                pytest.fail(
                    f"the namespace holder of {node.name} exited {holder.returncode}:\n"
                    + (d / f"holder-{node.boots}.out").read_text(errors="replace")
                )
            written = ready.exists() and ready.read_text().strip() == str(holder.pid)
            return written and comm_of(holder.pid) == "sleep"

        wait_until(f"the namespaces of {node.name}", anchored, timeout=20, interval=0.05)
        node.procs = [Proc(holder.pid, f"{node.name}:holder")]
        name = self.run_in(node, "uname", "-n").stdout.strip()
        assert name == node.name, name

    def write_corosync_conf(self, node: Node) -> None:
        members = [
            {"name": n.name, "nodeid": i, "ring0_addr": n.ip, "quorum_votes": n.votes}
            for i, n in enumerate(self.nodes.values(), start=1)
        ]
        (node.dir / "etc-corosync" / "corosync.conf").write_text(
            corosync_conf(
                "Written by the fence_gfs2_recorder tests (tests/field_cluster.py).",
                self.cluster_name,
                members,
                logfile="/var/log/corosync/corosync.log",
                timestamp="hires",
            )
        )

    def seed_cib(self, node: Node) -> None:
        cib = node.dir / "var-lib-pacemaker" / "cib" / "cib.xml"
        if not cib.exists():  # a rebooted node keeps its disk
            seed_cib(cib)

    def start_corosync(self, node: Node) -> None:
        self.write_corosync_conf(node)
        node.corosync = self.popen_in(node, "corosync", ["corosync", "-f"], system_env())
        node.procs.append(Proc(node.corosync.pid, f"{node.name}:corosync"))

    def start_pacemaker(self, node: Node) -> None:
        self.seed_cib(node)
        env = pacemaker_env(logfile="/var/log/pacemaker/pacemaker.log")
        node.pacemakerd = self.popen_in(node, "pacemakerd", ["pacemakerd"], env)
        node.procs.append(Proc(node.pacemakerd.pid, f"{node.name}:pacemakerd"))

    def popen_in(
        self, node: Node, label: str, argv: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """A daemon inside the node; nsenter execs it, so the PID is the daemon's."""
        assert node.holder is not None
        self._out += 1
        with open(node.dir / f"{label}-{self._out}.out", "wb") as out:
            return subprocess.Popen(
                ["nsenter", "-t", str(node.holder.pid), "-n", "-m", "-u", "-r", "-w", "--", *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip

    def run_in(
        self, node: Node | str, *argv: str, timeout: float = 90, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        n = self.nodes[node] if isinstance(node, str) else node
        return n.run(*argv, timeout=timeout, stdin=stdin)

    def check_in(self, node: Node | str, *argv: str, timeout: float = 90) -> str:
        return (self.nodes[node] if isinstance(node, str) else node).check(*argv, timeout=timeout)

    def boot(
        self, names: Iterable[str], dc: str | None = None, pacemaker: Iterable[str] | None = None
    ) -> None:
        """Namespaces, corosync on every named node, then Pacemaker (dc first)
        on those of `pacemaker` (default: all)."""
        names = list(names)
        for n in names:
            self.node_up(self.nodes[n])
        for n in names:
            self.start_corosync(self.nodes[n])
        first = dc or names[0]
        up = sum(1 for x in self.nodes.values() if x.corosync is not None)
        wait_until("corosync to see every member", lambda: self.members(first) == up, timeout=60)
        wanted = set(names if pacemaker is None else pacemaker)
        order = [n for n in [first, *(n for n in names if n != first)] if n in wanted]
        for n in order:
            self.start_pacemaker(self.nodes[n])
            if n == first:
                wait_until(f"{n} to be the DC", lambda n=n: self.nodes[n].dc() == n, timeout=90)

    def bring_up(self, dc: str, pacemaker: list[str] | None = None) -> None:
        """The agent installed, the network, every node's corosync, and
        Pacemaker (dc first) online on those of `pacemaker` (default: all)."""
        self.install_agent()
        t = now()
        self.hub_up()
        names = list(self.nodes)
        wanted = names if pacemaker is None else pacemaker
        self.boot(names, dc=dc, pacemaker=wanted)
        poll(f"{', '.join(wanted)} online", lambda: self.nodes[dc].online(wanted), timeout=120)
        self.timing(
            f"boot: namespaces, corosync x{len(names)}, pacemaker x{len(wanted)} online", now() - t
        )

    def settle(self, via: str, devices: dict[str, str], what: str, since: float) -> None:
        """Waits until each device runs on its node alone and the cluster is idle;
        times that from `since` as `what`."""
        for dev, node in devices.items():
            poll(
                f"{dev} started on {node}",
                lambda d=dev, n=node: self.nodes[via].resource_nodes(d) == [n],
                timeout=120,
            )
        self.nodes[via].idle(timeout=120)
        self.timing(what, now() - since)

    def members(self, via: str) -> int:
        return int(self.nodes[via].quorum().get("Nodes", 0))

    # ---------------------------------------------------------------- state

    def pcmk_log(self, node: str) -> str:
        p = self.nodes[node].dir / "var-log" / "pacemaker" / "pacemaker.log"
        try:
            return p.read_text(errors="replace")
        except OSError:
            return ""

    # ---------------------------------------------------------------- faults

    def kill_corosync(self, name: str) -> None:
        node = self.nodes[name]
        assert node.corosync is not None and node.corosync.poll() is None
        node.corosync.send_signal(signal.SIGKILL)
        node.corosync.wait(timeout=10)

    def link_down(self, name: str) -> None:
        self.ip("-n", self.nodes[name].ns, "link", "set", "eth0", "down")

    def reboot(self, names: Iterable[str], via: str) -> None:
        """What a fenced compute does: it goes away whole and boots again."""
        names = list(names)
        for n in names:
            self.node_down(self.nodes[n], grace=10)
        for n in names:
            self.node_up(self.nodes[n])
            self.start_corosync(self.nodes[n])
        wait_until(
            "the rebooted nodes back in corosync",
            lambda: self.members(via) == len(self.nodes),
            timeout=60,
        )
        for n in names:
            self.start_pacemaker(self.nodes[n])

    # ---------------------------------------------------------------- responders

    def start_responder(self, rabbit: str, *args: str) -> None:
        self.stop_responder(rabbit)
        node = self.nodes[rabbit]
        for d in (REQUESTS, RESPONSES):
            node.host_path(d).mkdir(parents=True, exist_ok=True)
        argv = [
            self.responder_command,
            *("--request-dir", str(REQUESTS), "--response-dir", str(RESPONSES)),
            *args,
        ]
        p = self.popen_in(node, "responder", argv, system_env())
        self.responders[rabbit] = (p, " ".join(args) or "success")
        wait_for_banner(p, node.dir / f"responder-{self._out}.out", f"on {rabbit}")

    def stop_responder(self, rabbit: str) -> None:
        entry = self.responders.pop(rabbit, None)
        if entry is not None:
            end(entry[0])

    # ---------------------------------------------------------------- pcs

    def pcs(self, via: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return self.run_in(via, *argv, timeout=120)

    def apply_commands(self, via: str, block: str) -> list[str]:
        """Runs each command of a shell block (no shell: only plain commands)."""
        done = []
        for argv in commands_of(block):
            r = self.pcs(via, argv)
            if r.returncode != 0:
                pytest.fail(f"[{via}] {shlex.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
            done.append(shlex.join(argv) + (f"  ({r.stderr.strip()})" if r.stderr.strip() else ""))
        return done

    # ---------------------------------------------------------------- stop

    def node_down(self, node: Node, grace: float = 60) -> list[str]:
        problems: list[str] = []
        for p, label, g in (
            (node.pacemakerd, "pacemakerd", grace),
            (node.corosync, "corosync", 30.0),
        ):
            if p is not None:
                sigterm(p, f"{node.name}:{label}", g, problems)
        for entry in [r for r, e in self.responders.items() if r == node.name]:
            self.stop_responder(entry)
        # Whatever else lives in the node's network namespace is ours (pacemaker's
        # daemons, agents it ran): the namespace was created by this run.
        holder = node.holder.pid if node.holder is not None else None
        for _ in range(50):
            left = [p for p in ns_pids(node.ns) if p != holder]
            if not left:
                break
            for pid in left:
                proc = Proc(pid, comm_of(pid))
                proc.signal(signal.SIGKILL)
            time.sleep(0.1)
        if node.holder is not None and node.holder.poll() is None:
            node.holder.send_signal(signal.SIGKILL)
            node.holder.wait(timeout=10)
        for p in (node.pacemakerd, node.corosync):
            if p is not None and p.poll() is None:
                p.wait(timeout=10)
        if node.ns in our_namespaces():
            self.ip("netns", "del", node.ns)
        node.holder = node.corosync = node.pacemakerd = None
        node.procs = []
        return problems

    def stop(self) -> list[str]:
        problems: list[str] = []
        for r in list(self.responders):
            self.stop_responder(r)
        for p in self.extra:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        # SIGTERM every pacemakerd first, so no node fences another on its way out.
        for node in self.nodes.values():
            if node.pacemakerd is not None and node.pacemakerd.poll() is None:
                node.pacemakerd.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            problems += self.node_down(node)
        if self.hub_made and HUB in our_namespaces():
            self.ip("netns", "del", HUB)
        left = our_namespaces()
        if left:
            problems.append(f"network namespaces left: {left}")
        running = cluster_processes()
        if running:
            problems.append(f"cluster processes still running after teardown: {running}")
        # The node roots hold only empty mount points on the host side.
        for node in self.nodes.values():
            for dirpath, _dirs, _files in os.walk(node.dir / "root", topdown=False):
                p = Path(dirpath)
                for entry in p.iterdir():
                    if entry.is_symlink():
                        entry.unlink()
                try:
                    p.rmdir()
                except OSError as e:
                    problems.append(f"node root not empty: {p}: {e}")
                    break
        return problems


def ns_pids(ns: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def commands_of(block: str) -> list[list[str]]:
    """The commands of a shell block: comments dropped, continuations joined."""
    joined = block.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(shlex.split(line, comments=True))
    return out


def readme_block(heading: str, readme: Path = REPO / "README.md", index: int = 0) -> str:
    """The index-th ```sh block of a README section (up to the next heading of
    the same or a higher level; sub-sections included)."""
    level = heading.split(" ", 1)[0]
    lines = readme.read_text().splitlines()
    start = lines.index(heading) + 1
    blocks: list[list[str]] = []
    in_block = False
    for line in lines[start:]:
        if in_block:
            if line.startswith("```"):
                in_block = False
            else:
                blocks[-1].append(line)
        elif line.startswith("```sh"):
            in_block = True
            blocks.append([])
        elif line.startswith("#") and len(line.split(" ", 1)[0]) <= len(level):
            break
    return "\n".join(blocks[index]) + "\n"
