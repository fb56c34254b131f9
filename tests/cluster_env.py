"""A real one-node corosync + Pacemaker cluster on 127.0.0.1, for the tests,
and what every test cluster shares (tests/field_cluster.py builds on it).

Runs as root without systemd. It refuses to start beside any corosync or
Pacemaker process it did not start, signals only the processes it started
(by PID, checked against their start time so a reused PID is never hit), and
removes only the state it created.

Also installs the agent the way Pacemaker runs it (scripts/install.sh).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import RESPONDER, Dirs
from helpers import (
    all_pids,
    comm_of,
    config_finding_kubectl,
    kubeconfig,
    parent_of,
    start_time,
    stat_fields,
    storages_on,
)

REPO = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO / "scripts" / "install.sh"
INSTALLED_AGENT = Path("/usr/sbin/fence_gfs2_recorder")
INSTALL_VENV = Path("/opt/fence_gfs2_recorder/venv")
PACKAGED_RESPONDER = Path("/usr/bin/fence-gfs2-responder")

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# systemd's PATH for system services (Debian 12, systemd 252), which
# pacemaker.service has: the unit sets no PATH, HOME or USER of its own.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What an agent of ours must never count on finding under the fencer.
LOGIN_VARIABLES = ("HOME", "USER", "LOGNAME", "SHELL", "KUBECONFIG")
CLUSTER_BINARIES = (
    "corosync",
    "corosync-quorumtool",
    "pacemakerd",
    "cibadmin",
    "crm_mon",
    "crm_attribute",
    "stonith_admin",
)
PCMK_STATE = Path("/var/lib/pacemaker")
COROSYNC_STATE = Path("/var/lib/corosync")
JOURNAL_NAME = "fence-events-detailed.jsonl"

_install_output: str | None = None


def run_install(**env: str) -> str:
    """scripts/install.sh with the wheel scripts/setup.sh built for the
    virtualenv running the tests; `env` says where to install. Its output."""
    r = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        env=dict(os.environ, VENV=str(Path(sys.executable).parent.parent), **env),
        timeout=900,
    )
    if r.returncode != 0:
        pytest.fail(f"scripts/install.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def preinstalled() -> bool:
    """FGR_INSTALLED=1: the package installed the agent and its commands (the
    Debian roots of make dist-check); the tests build and install nothing."""
    if os.environ.get("FGR_INSTALLED") != "1":
        return False
    for path in (INSTALLED_AGENT, PACKAGED_RESPONDER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"FGR_INSTALLED=1 but {path} is not installed")
    return True


def ensure_installed() -> Path:
    """Runs scripts/install.sh once per test run; returns the installed agent.
    With FGR_INSTALLED=1 the agent is already there (the package, in the
    Debian roots of make dist-check) and nothing is built or installed."""
    global _install_output
    if preinstalled():
        return INSTALLED_AGENT
    if _install_output is None:
        _install_output = run_install()
    return INSTALLED_AGENT


def system_env(**extra: str) -> dict[str, str]:
    """What pacemakerd and the cluster tools get: nothing but a system PATH."""
    return {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **extra}


def pacemaker_env(logfile: str) -> dict[str, str]:
    """pacemakerd's environment as systemd starts pacemaker.service: the
    service PATH and what /etc/default/pacemaker (the unit's EnvironmentFile)
    sets, here its own log file. No HOME, USER or LANG: the unit has no User=
    and the tests' agents must meet the fencer's real environment. The tests
    check it against the environment of an agent the fencer ran
    (`read_environ`)."""
    return {
        "PATH": SERVICE_PATH,
        "PCMK_logfile": logfile,
        "PCMK_logfacility": "none",
        "PCMK_logpriority": "info",
    }


def read_environ(path: Path) -> dict[str, str]:
    """An environment copied from /proc/PID/environ (NUL-separated NAME=value)."""
    entries = [e for e in path.read_bytes().split(b"\0") if e]
    pairs = (os.fsdecode(e).partition("=") for e in entries)
    return {name: value for name, _, value in pairs}


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH)


def needs(what: str, root_for: str, binaries: Iterable[str], packages: str) -> str | None:
    """Why `what` cannot run here (not root, a binary missing), or None."""
    if os.geteuid() != 0:
        return f"{what} needs root ({root_for})"
    missing = [b for b in binaries if find_binary(b) is None]
    if missing:
        return (
            f"{what} needs the Debian packages {packages} "
            f"(missing: {', '.join(missing)}; scripts/setup.sh installs them)"
        )
    return None


def skip_reason() -> str | None:
    """Why the cluster tests cannot run here, or None."""
    return needs(
        "the real cluster test",
        "it starts corosync and pacemakerd",
        CLUSTER_BINARIES,
        "pacemaker, pacemaker-cli-utils and corosync",
    )


def cluster_marks(skip: str | None, timeout: int, *extra: pytest.MarkDecorator) -> list[Any]:
    """A cluster test module's pytestmark: skipped where `skip` says, and a
    timeout long enough for its first test, which starts the cluster."""
    return [
        pytest.mark.cluster,
        *extra,
        pytest.mark.skipif(skip is not None, reason=skip or ""),
        pytest.mark.timeout(timeout),
    ]


# ---------------------------------------------------------------- processes


def cluster_processes() -> list[tuple[int, str]]:
    """Every corosync or Pacemaker daemon on the machine."""
    found = []
    for pid in all_pids():
        name = comm_of(pid)
        if name == "corosync" or name.startswith("pacemaker"):
            found.append((pid, name))
    return found


class Proc:
    """A process we are responsible for, pinned by PID and start time."""

    def __init__(self, pid: int, name: str) -> None:
        self.pid = pid
        self.name = name
        self.started = start_time(pid)

    def alive(self) -> bool:
        st = start_time(self.pid)
        if st is None or st != self.started:
            return False
        fields = stat_fields(self.pid)
        return fields is not None and fields[0] != "Z"

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def __repr__(self) -> str:
        return f"{self.name}[{self.pid}]"


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Polls check() until it returns something truthy; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.2) -> float:
    """wait_until, returning the seconds it took."""
    t = time.monotonic()
    wait_until(what, check, timeout=timeout, interval=interval)
    return time.monotonic() - t


def sigterm(
    popen: subprocess.Popen[bytes], label: str, grace: float, problems: list[str]
) -> float | None:
    """SIGTERM, and SIGKILL (a problem) if it is still there after `grace` s.
    The seconds it took to stop; None if it had already ended or was killed."""
    if popen.poll() is not None:
        return None
    t = time.monotonic()
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        problems.append(f"{label} ignored SIGTERM for {grace:.0f} s: SIGKILL")
        popen.kill()
        popen.wait(timeout=30)
        return None
    return time.monotonic() - t


def wait_for_banner(popen: subprocess.Popen[bytes], out: Path, what: str) -> None:
    """Waits until the responder writing to `out` says it watches."""

    def banner() -> bool:
        if popen.poll() is not None:
            pytest.fail(f"responder exited: {out.read_text(errors='replace')}")
        return out.stat().st_size > 0

    wait_until(f"the responder {what} to watch", banner, timeout=15, interval=0.05)
    time.sleep(0.1)


def end(popen: subprocess.Popen[bytes]) -> None:
    """Stops a helper process of ours: SIGTERM, SIGKILL after 10 s."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=10)


# ---------------------------------------------------------------- what every cluster shares


def refuse_beside_others(what: str) -> None:
    """Fails (never kills anything) if corosync or Pacemaker runs already."""
    running = cluster_processes()
    if running:
        pytest.fail(
            f"refusing to start {what}: corosync/Pacemaker processes are already "
            f"running and are not ours (left untouched): {running}",
            pytrace=False,
        )


def corosync_conf(
    comment: str, cluster_name: str, nodes: list[dict[str, Any]], logfile: str, timestamp: str
) -> str:
    """corosync.conf of a knet cluster of `nodes` (their nodelist entries)."""
    members = "".join(
        "    node {\n" + "".join(f"        {k}: {v}\n" for k, v in n.items()) + "    }\n"
        for n in nodes
    )
    return (
        f"# {comment}\n"
        "totem {\n"
        "    version: 2\n"
        f"    cluster_name: {cluster_name}\n"
        "    transport: knet\n"
        "    crypto_cipher: none\n"
        "    crypto_hash: none\n"
        "}\n"
        f"nodelist {{\n{members}}}\n"
        "quorum {\n"
        "    provider: corosync_votequorum\n"
        "}\n"
        "logging {\n"
        "    to_stderr: no\n"
        "    to_syslog: no\n"
        "    to_logfile: yes\n"
        f"    logfile: {logfile}\n"
        f"    timestamp: {timestamp}\n"
        "}\n"
    )


def seed_cib(cib: Path) -> None:
    """A first CIB whose only setting is a short dc-deadtime (default 20 s)."""
    cib.write_text(
        '<cib validate-with="pacemaker-3.9" admin_epoch="0" epoch="1" num_updates="0">\n'
        "  <configuration>\n"
        "    <crm_config>\n"
        '      <cluster_property_set id="cib-bootstrap-options">\n'
        '        <nvpair id="cib-bootstrap-options-dc-deadtime" name="dc-deadtime"'
        ' value="2s"/>\n'
        "      </cluster_property_set>\n"
        "    </crm_config>\n"
        "    <nodes/>\n"
        "    <resources/>\n"
        "    <constraints/>\n"
        "  </configuration>\n"
        "  <status/>\n"
        "</cib>\n"
    )
    shutil.chown(cib, "hacluster", "haclient")
    cib.chmod(0o600)


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The agent's journal (one JSON record a line); empty if there is none."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def responses_for(directory: Path, target: str, only_success: bool = False) -> list[Path]:
    """The response files in `directory` that answer for `target`."""
    found = []
    for p in sorted(directory.glob("*.json")):
        try:
            body = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if body.get("target_node") == target and (not only_success or body.get("success") is True):
            found.append(p)
    return found


class Tools:
    """The cluster as one node's command-line tools show it."""

    name: str

    def run(
        self, *argv: str, timeout: float = 90, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def check(self, *argv: str, timeout: float = 90) -> str:
        r = self.run(*argv, timeout=timeout)
        if r.returncode != 0:
            pytest.fail(
                f"[{self.name}] {shlex.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
            )
        return r.stdout

    def quorum(self, timeout: float = 15) -> dict[str, str]:
        """corosync-quorumtool -s: its "Name: value" lines (the first of each)."""
        r = self.run("corosync-quorumtool", "-s", timeout=timeout)
        found: dict[str, str] = {}
        for line in r.stdout.splitlines():
            if ":" in line:
                key, value = line.split(":", 1)
                found.setdefault(key.strip(), value.strip())
        return found

    def status_xml(self) -> ET.Element | None:
        r = self.run("crm_mon", "-1", "--output-as=xml", timeout=30)
        if r.returncode != 0:
            return None
        try:
            return ET.fromstring(r.stdout)
        except ET.ParseError:
            return None

    def crm_mon(self) -> str:
        return self.run("crm_mon", "-1", "-rf", timeout=30).stdout

    def dc(self) -> str | None:
        return current_dc(self.status_xml())

    def node_state(self) -> dict[str, dict[str, str]]:
        return node_state(self.status_xml())

    def online(self, names: Iterable[str]) -> bool:
        state = self.node_state()
        return all(state.get(n, {}).get("online") == "true" for n in names)

    def offline_clean(self, name: str) -> bool:
        s = self.node_state().get(name, {})
        return s.get("online") == "false" and s.get("unclean") == "false"

    def unclean(self, name: str) -> bool:
        return self.node_state().get(name, {}).get("unclean") == "true"

    def resource_nodes(self, rsc: str) -> list[str] | None:
        """Nodes a Started resource runs on; None if it is not Started."""
        doc = self.status_xml()
        res = None if doc is None else doc.find(f".//resource[@id='{rsc}']")
        if res is None or res.get("role") != "Started":
            return None
        return [n.get("name", "") for n in res.findall("node")]

    def idle(self, timeout: float = 60) -> None:
        r = self.run("crm_resource", "--wait", f"--timeout={int(timeout)}s", timeout=timeout + 30)
        if r.returncode != 0:
            pytest.fail(f"cluster not idle after {timeout:.0f} s: {r.stderr}\n{self.crm_mon()}")

    def history(self, target: str) -> list[dict[str, str]]:
        # --verbose: without it stonith_admin shows only the latest event per action.
        r = self.run(
            "stonith_admin", "--history", target, "--verbose", "--output-as=xml", timeout=30
        )
        try:
            doc = ET.fromstring(r.stdout)
        except ET.ParseError:
            return []
        return [dict(e.attrib) for e in doc.iter("fence_event")]

    def fenced_count(self, target: str, status: str = "success") -> int:
        """Distinct off/reboot events of that status for target in the history."""
        return len(
            {
                (e.get("action"), e.get("completed"), e.get("delegate"))
                for e in self.history(target)
                if e.get("status") == status and e.get("action") in ("reboot", "off")
            }
        )


def current_dc(doc: ET.Element | None) -> str | None:
    """The DC's name in crm_mon's XML, if there is one."""
    dc = None if doc is None else doc.find("./summary/current_dc")
    return None if dc is None or dc.get("present") != "true" else dc.get("name")


def node_state(doc: ET.Element | None) -> dict[str, dict[str, str]]:
    """Each node's attributes in crm_mon's XML (online, unclean, ...)."""
    if doc is None:
        return {}
    return {n.get("name", ""): dict(n.attrib) for n in doc.findall("./nodes/node")}


class Harness:
    """What every test cluster keeps: its run directory, notes and timings."""

    def __init__(self, prefix: str) -> None:
        self.t0 = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.root.chmod(0o755)  # world-traversable: the daemons run as hacluster
        self.notes: list[str] = []
        self.timings: list[str] = []

    def stop(self) -> list[str]:
        """Stops what it started; returns problems (empty = clean)."""
        raise NotImplementedError

    def remove_root(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def timing(self, what: str, seconds: float, digits: int = 1) -> None:
        self.timings.append(f"{what}: {seconds:.{digits}f} s")


H = TypeVar("H", bound=Harness)


def serve(
    request: pytest.FixtureRequest, c: H, title: str, about: str, set_up: Callable[[H], None]
) -> Iterator[H]:
    """A module fixture's test cluster: set up (if that fails: stopped,
    reported, logs kept), the module's tests, then stopped and reported, its
    logs kept when a test failed, teardown found a problem or
    FGR_KEEP_CLUSTER_LOGS=1. Teardown problems fail the module."""
    failed_before = request.session.testsfailed
    try:
        set_up(c)
    except BaseException:
        problems = c.stop()
        _report_run(request, c, f"{title} FAILED TO START after", about, problems, keep=True)
        raise
    yield c
    problems = c.stop()
    keep = (
        bool(problems)
        or request.session.testsfailed > failed_before
        or os.environ.get("FGR_KEEP_CLUSTER_LOGS") == "1"
    )
    _report_run(request, c, f"{title} RAN in", about, problems, keep)
    if not keep:
        c.remove_root()
    assert not problems, problems


def _report_run(
    request: pytest.FixtureRequest,
    c: Harness,
    head: str,
    about: str,
    problems: list[str],
    keep: bool,
) -> None:
    lines = [
        f"{head} {time.monotonic() - c.t0:.1f} s ({about})",
        *(f"  {n}" for n in c.notes),
        *(f"  TIMING {t}" for t in c.timings),
        *(f"  PROBLEM: {p}" for p in problems),
    ]
    if keep:
        lines.append(f"  logs kept in {c.root}")
    report(request, lines)


def report(request: pytest.FixtureRequest, lines: list[str]) -> None:
    """Shown whatever the capture setting: the run must visibly say what it measured."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        sys.stderr.write("\n".join(lines) + "\n")
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        for line in lines:
            reporter.write_line(line, bold=True)


# ---------------------------------------------------------------- the one-node cluster


def refuse_if_busy() -> None:
    """Fails (never kills anything) if another cluster runs or left its CIB."""
    refuse_beside_others("a test cluster")
    leftover = sorted(p.name for p in (PCMK_STATE / "cib").iterdir())
    if leftover:
        pytest.fail(
            f"refusing to start a test cluster: {PCMK_STATE / 'cib'} holds another "
            f"cluster's configuration ({', '.join(leftover)}); remove it first",
            pytrace=False,
        )


class Cluster(Harness, Tools):
    """corosync + pacemakerd started by us, plus the dirs our agent uses."""

    def __init__(self) -> None:
        super().__init__("fgr-cluster-")
        self.name = self.node = os.uname().nodename
        self.dirs = Dirs(
            self.root, self.root / "requests", self.root / "responses", self.root / "logs"
        )
        self.req, self.resp, self.log = self.dirs.req, self.dirs.resp, self.dirs.log
        self.pcmk_log = self.root / "pacemaker.log"
        self.corosync_log = self.root / "corosync.log"
        for d in (self.req, self.resp, self.log):
            d.mkdir(mode=0o755)
        # Discovery's kubectl finds its config only where the agent names it,
        # as the real one does under the fencer; it lists this host's storages
        # and copies the environment of the agent that runs it.
        self.agent_environ = self.root / "agent.environ"
        self.kubectl = config_finding_kubectl(
            self.root / "bin", storages_on(self.node, self.root), self.agent_environ
        )
        self.kubeconfig = kubeconfig(self.root / "kubeconfig")
        self.corosync: subprocess.Popen[bytes] | None = None
        self.pacemakerd: subprocess.Popen[bytes] | None = None
        self.corosync_proc: Proc | None = None
        self.pacemakerd_proc: Proc | None = None
        self.children: list[Proc] = []
        self.responder: subprocess.Popen[bytes] | None = None
        self.responder_mode: str | None = None
        self._responder_runs = 0
        self._state_before: dict[Path, set[str]] = {}
        self._cib_seeded = False

    # -- tools

    def run(
        self, *argv: str, timeout: float = 90, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=system_env(),
            timeout=timeout,
        )

    def log_tail(self, path: Path | None = None, lines: int = 60) -> str:
        path = path or self.pcmk_log
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"({path}: {e})"

    # -- start

    def preflight(self) -> None:
        refuse_if_busy()
        for d in ("pengine", "blackbox", "cores"):
            self._state_before[PCMK_STATE / d] = set(os.listdir(PCMK_STATE / d))
        self._state_before[COROSYNC_STATE] = set(os.listdir(COROSYNC_STATE))

    def start(self) -> None:
        self.preflight()
        self.start_corosync()
        self.seed_cib()
        self.start_pacemaker()

    def start_corosync(self) -> None:
        conf = self.root / "corosync.conf"
        conf.write_text(
            corosync_conf(
                "One node on the loopback address, for the fence_gfs2_recorder tests.",
                "fgr-test",
                [{"name": self.node, "nodeid": 1, "ring0_addr": "127.0.0.1"}],
                logfile=str(self.corosync_log),
                timestamp="on",
            )
        )
        with open(self.root / "corosync.out", "wb") as out:
            self.corosync = subprocess.Popen(
                [find_binary("corosync") or "corosync", "-f", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=system_env(),
                start_new_session=True,
            )
        self.corosync_proc = Proc(self.corosync.pid, "corosync")

        def quorate() -> bool:
            if self.corosync is not None and self.corosync.poll() is not None:
                pytest.fail(
                    f"corosync exited with {self.corosync.returncode}:\n"
                    + self.log_tail(self.corosync_log)
                    + self.log_tail(self.root / "corosync.out")
                )
            return "Yes" in self.quorum(timeout=10).get("Quorate", "")

        wait_until("corosync to be quorate", quorate, timeout=30)

    def seed_cib(self) -> None:
        seed_cib(PCMK_STATE / "cib" / "cib.xml")
        self._cib_seeded = True

    def start_pacemaker(self) -> None:
        env = pacemaker_env(logfile=str(self.pcmk_log))
        with open(self.root / "pacemakerd.out", "wb") as out:
            self.pacemakerd = subprocess.Popen(
                [find_binary("pacemakerd") or "pacemakerd"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.pacemakerd_proc = Proc(self.pacemakerd.pid, "pacemakerd")

        def children() -> bool:
            self._check_pacemakerd()
            kids = [p for p in all_pids() if parent_of(p) == self.pacemakerd_pid]
            if len(kids) < 6:
                return False
            self.children = [Proc(p, comm_of(p)) for p in kids]
            return True

        wait_until("pacemakerd to start its six daemons", children, timeout=30)
        wait_until(f"node {self.node} online as DC", self._online_as_dc, timeout=90)

    @property
    def pacemakerd_pid(self) -> int:
        assert self.pacemakerd is not None
        return self.pacemakerd.pid

    def _check_pacemakerd(self) -> None:
        if self.pacemakerd is not None and self.pacemakerd.poll() is not None:
            pytest.fail(f"pacemakerd exited with {self.pacemakerd.returncode}:\n{self.log_tail()}")

    def _online_as_dc(self) -> bool:
        self._check_pacemakerd()
        doc = self.status_xml()
        me = node_state(doc).get(self.node, {})
        return current_dc(doc) == self.node and me.get("online") == "true"

    # -- configuration

    def set_property(self, name: str, value: str) -> None:
        self.check("crm_attribute", "--type", "crm_config", "--name", name, "--update", value)

    def device_params(self, **extra: str) -> dict[str, str]:
        """The options of a device of ours: the ones the fencer sends on stdin."""
        extra = {"kubectl_path": str(self.kubectl), "kubeconfig": str(self.kubeconfig), **extra}
        return dict(line.split("=", 1) for line in self.dirs.stdin(**extra).splitlines())

    def fencer_env(self) -> dict[str, str]:
        """The environment the fencer gave the last agent that ran discovery
        (every monitor does), read from that agent's /proc/PID/environ."""
        wait_until(
            "an agent run by the fencer to start discovery",
            self.agent_environ.exists,
            timeout=90,
        )
        return read_environ(self.agent_environ)

    def add_device(self, dev_id: str, params: dict[str, str]) -> None:
        nvpairs = "".join(
            f"<nvpair id='{dev_id}-{k}' name='{k}' value='{v}'/>" for k, v in params.items()
        )
        xml = (
            f"<primitive id='{dev_id}' class='stonith' type='fence_gfs2_recorder'>"
            f"<instance_attributes id='{dev_id}-ia'>{nvpairs}</instance_attributes>"
            f"<operations><op id='{dev_id}-monitor' name='monitor' interval='60s'/>"
            "</operations></primitive>"
        )
        self.check("cibadmin", "--create", "-o", "resources", "--xml-text", xml)

        def registered() -> bool:
            return dev_id in self.run("stonith_admin", "--list-registered").stdout.split()

        wait_until(f"device {dev_id} registered with the fencer", registered, timeout=60)
        wait_until(
            f"device {dev_id} started", lambda: self.resource_nodes(dev_id) is not None, timeout=60
        )

    # -- the responder (test double of the NNF reconciler)

    def start_responder(self, mode: str, *args: str) -> None:
        self.stop_responder()
        self._responder_runs += 1
        out_path = self.root / f"responder-{self._responder_runs}-{mode}.out"
        with open(out_path, "wb") as out:
            self.responder = subprocess.Popen(
                [
                    RESPONDER,
                    *("--request-dir", str(self.req), "--response-dir", str(self.resp)),
                    *("--mode", mode),
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.responder_mode = " ".join([mode, *args])
        wait_for_banner(self.responder, out_path, f"({mode})")

    def stop_responder(self) -> None:
        if self.responder is not None:
            end(self.responder)
        self.responder = None
        self.responder_mode = None

    # -- what the agent left behind

    def journal(self, target: str | None = None) -> list[dict[str, Any]]:
        records = read_journal(self.log / JOURNAL_NAME)
        return [r for r in records if target is None or r.get("target_node") == target]

    def responses_for(self, target: str) -> list[Path]:
        return responses_for(self.resp, target)

    # -- stop

    def stop(self, grace_pacemaker: float = 60, grace_corosync: float = 30) -> list[str]:
        """Stops what we started, wipes our state; returns problems (empty = clean)."""
        problems: list[str] = []
        self.stop_responder()
        # Fence agents the fencer runs right now are its children (our tree too).
        fenced = [c for c in self.children if c.name.startswith("pacemaker-fence")]
        agents = [
            Proc(p, comm_of(p))
            for f in fenced
            for p in all_pids()
            if f.alive() and parent_of(p) == f.pid
        ]
        self._stop(self.pacemakerd_proc, self.pacemakerd, grace_pacemaker, problems)
        for kid in self.children + agents:
            if kid.alive():
                problems.append(f"{kid} outlived pacemakerd")
                kid.signal(signal.SIGTERM)
        for kid in self.children + agents:
            deadline = time.monotonic() + 10
            while kid.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if kid.alive():
                kid.signal(signal.SIGKILL)
        self._stop(self.corosync_proc, self.corosync, grace_corosync, problems)
        self._remove_ipc_leftovers()
        self.wipe_state()
        left = cluster_processes()
        if left and self.corosync is not None:
            problems.append(f"cluster processes still running after teardown: {left}")
        return problems

    def _stop(
        self,
        proc: Proc | None,
        popen: subprocess.Popen[bytes] | None,
        grace: float,
        problems: list[str],
    ) -> None:
        if popen is None or proc is None:
            return
        took = sigterm(popen, str(proc), grace, problems)
        if took is not None:
            self.notes.append(f"{proc} stopped in {took:.1f} s")

    def _remove_ipc_leftovers(self) -> None:
        """libqb removes its /dev/shm rings; drop any left by our PIDs only."""
        ours = [self.corosync_proc, self.pacemakerd_proc, *self.children]
        pids = {str(p.pid) for p in ours if p is not None}
        shm = Path("/dev/shm")
        if not shm.is_dir():
            return
        for entry in shm.iterdir():
            parts = entry.name.split("-")
            if entry.name.startswith("qb-") and pids.intersection(parts[1:3]):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def wipe_state(self) -> None:
        if self._cib_seeded:
            for entry in (PCMK_STATE / "cib").iterdir():
                _remove(entry)
        for d, before in self._state_before.items():
            for name in set(os.listdir(d)) - before:
                if d == COROSYNC_STATE and not name.startswith("ringid_"):
                    continue
                _remove(d / name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
