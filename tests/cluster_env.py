"""A real one-node corosync + Pacemaker cluster on 127.0.0.1, for the tests.

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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import RESPONDER
from helpers import all_pids, comm_of, parent_of, start_time, stat_fields

REPO = Path(__file__).resolve().parent.parent
INSTALL_SCRIPT = REPO / "scripts" / "install.sh"
INSTALLED_AGENT = Path("/usr/sbin/fence_gfs2_recorder")
INSTALL_VENV = Path("/opt/fence_gfs2_recorder/venv")

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
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


def ensure_installed() -> Path:
    """Runs scripts/install.sh once per test run; returns the installed agent.

    The install takes the wheel scripts/setup.sh built for the virtualenv
    running the tests.
    """
    global _install_output
    if _install_output is None:
        env = dict(os.environ, VENV=str(Path(sys.executable).parent.parent))
        r = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        if r.returncode != 0:
            pytest.fail(f"scripts/install.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        _install_output = r.stdout
    return INSTALLED_AGENT


def system_env(**extra: str) -> dict[str, str]:
    """What pacemakerd and the cluster tools get: nothing but a system PATH."""
    return {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **extra}


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH)


def skip_reason() -> str | None:
    """Why the cluster tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the real cluster test needs root (it starts corosync and pacemakerd)"
    missing = [b for b in CLUSTER_BINARIES if find_binary(b) is None]
    if missing:
        return (
            "the real cluster test needs the Debian packages pacemaker, pacemaker-cli-utils "
            f"and corosync (missing: {', '.join(missing)}; scripts/setup.sh installs them)"
        )
    return None


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


# ---------------------------------------------------------------- the cluster


def refuse_if_busy() -> None:
    """Fails (never kills anything) if another cluster runs or left its CIB."""
    running = cluster_processes()
    if running:
        pytest.fail(
            "refusing to start a test cluster: corosync/Pacemaker processes are already "
            f"running and are not ours (left untouched): {running}",
            pytrace=False,
        )
    leftover = sorted(p.name for p in (PCMK_STATE / "cib").iterdir())
    if leftover:
        pytest.fail(
            f"refusing to start a test cluster: {PCMK_STATE / 'cib'} holds another "
            f"cluster's configuration ({', '.join(leftover)}); remove it first",
            pytrace=False,
        )


class Cluster:
    """corosync + pacemakerd started by us, plus the dirs our agent uses."""

    def __init__(self) -> None:
        self.node = os.uname().nodename
        self.t0 = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="fgr-cluster-", dir="/tmp"))
        self.root.chmod(0o755)  # world-traversable: daemons run as hacluster
        self.req = self.root / "requests"
        self.resp = self.root / "responses"
        self.log = self.root / "logs"
        self.pcmk_log = self.root / "pacemaker.log"
        self.corosync_log = self.root / "corosync.log"
        for d in (self.req, self.resp, self.log):
            d.mkdir(mode=0o755)
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
        self.notes: list[str] = []

    # -- tools

    def run(self, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=system_env(),
            timeout=timeout,
        )

    def check(self, *argv: str, timeout: float = 90) -> str:
        r = self.run(*argv, timeout=timeout)
        if r.returncode != 0:
            pytest.fail(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r.stdout

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
            "# One node on the loopback address, for the fence_gfs2_recorder tests.\n"
            "totem {\n"
            "    version: 2\n"
            "    cluster_name: fgr-test\n"
            "    transport: knet\n"
            "    crypto_cipher: none\n"
            "    crypto_hash: none\n"
            "}\n"
            "nodelist {\n"
            "    node {\n"
            f"        name: {self.node}\n"
            "        nodeid: 1\n"
            "        ring0_addr: 127.0.0.1\n"
            "    }\n"
            "}\n"
            "quorum {\n"
            "    provider: corosync_votequorum\n"
            "}\n"
            "logging {\n"
            "    to_stderr: no\n"
            "    to_syslog: no\n"
            "    to_logfile: yes\n"
            f"    logfile: {self.corosync_log}\n"
            "    timestamp: on\n"
            "}\n"
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
            r = self.run("corosync-quorumtool", "-s", timeout=10)
            return any(
                line.split(":", 1)[0].strip() == "Quorate" and "Yes" in line
                for line in r.stdout.splitlines()
            )

        wait_until("corosync to be quorate", quorate, timeout=30)

    def seed_cib(self) -> None:
        """A first CIB whose only setting is a short dc-deadtime (default 20 s)."""
        cib = PCMK_STATE / "cib" / "cib.xml"
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
        self._cib_seeded = True

    def start_pacemaker(self) -> None:
        env = system_env(
            HOME=str(PCMK_STATE),
            PCMK_logfile=str(self.pcmk_log),
            PCMK_logfacility="none",
            PCMK_logpriority="info",
        )
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

    def status_xml(self) -> ET.Element | None:
        r = self.run("crm_mon", "-1", "--output-as=xml", timeout=30)
        if r.returncode != 0:
            return None
        try:
            return ET.fromstring(r.stdout)
        except ET.ParseError:
            return None

    def _online_as_dc(self) -> bool:
        self._check_pacemakerd()
        doc = self.status_xml()
        if doc is None:
            return False
        dc = doc.find("./summary/current_dc")
        me = doc.find(f"./nodes/node[@name='{self.node}']")
        return (
            dc is not None
            and dc.get("present") == "true"
            and dc.get("name") == self.node
            and me is not None
            and me.get("online") == "true"
        )

    # -- configuration

    def set_property(self, name: str, value: str) -> None:
        self.check("crm_attribute", "--type", "crm_config", "--name", name, "--update", value)

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

        def started() -> bool:
            doc = self.status_xml()
            res = None if doc is None else doc.find(f".//resource[@id='{dev_id}']")
            return res is not None and res.get("role") == "Started"

        wait_until(f"device {dev_id} registered with the fencer", registered, timeout=60)
        wait_until(f"device {dev_id} started", started, timeout=60)

    # -- the responder (test double of the NNF reconciler)

    def start_responder(self, mode: str) -> None:
        self.stop_responder()
        self._responder_runs += 1
        out_path = self.root / f"responder-{self._responder_runs}-{mode}.out"
        with open(out_path, "wb") as out:
            self.responder = subprocess.Popen(
                [
                    RESPONDER,
                    *("--request-dir", str(self.req), "--response-dir", str(self.resp)),
                    *("--mode", mode),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.responder_mode = mode

        def banner() -> bool:
            if self.responder is not None and self.responder.poll() is not None:
                pytest.fail(f"responder exited: {out_path.read_text(errors='replace')}")
            return out_path.stat().st_size > 0

        wait_until(f"the responder ({mode}) to watch", banner, timeout=15, interval=0.05)
        time.sleep(0.1)

    def stop_responder(self) -> None:
        if self.responder is None:
            return
        if self.responder.poll() is None:
            self.responder.terminate()
            try:
                self.responder.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.responder.kill()
                self.responder.wait(timeout=10)
        self.responder = None
        self.responder_mode = None

    # -- what the agent left behind

    def journal(self, target: str | None = None) -> list[dict[str, Any]]:
        path = self.log / JOURNAL_NAME
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r for r in records if target is None or r.get("target_node") == target]

    def device_stdin(self, **extra: str) -> str:
        fields = {
            "request_dir": str(self.req),
            "response_dir": str(self.resp),
            "log_dir": str(self.log),
            **extra,
        }
        return "".join(f"{k}={v}\n" for k, v in fields.items())

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
        if self.pacemakerd is not None and self.pacemakerd_proc is not None:
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
        if self.corosync is not None and self.corosync_proc is not None:
            self._stop(self.corosync_proc, self.corosync, grace_corosync, problems)
        self._remove_ipc_leftovers()
        self.wipe_state()
        left = cluster_processes()
        if left and self.corosync is not None:
            problems.append(f"cluster processes still running after teardown: {left}")
        return problems

    def _stop(
        self,
        proc: Proc,
        popen: subprocess.Popen[bytes],
        grace: float,
        problems: list[str],
    ) -> None:
        if popen.poll() is not None:
            return
        t = time.monotonic()
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=grace)
            self.notes.append(f"{proc} stopped in {time.monotonic() - t:.1f} s")
        except subprocess.TimeoutExpired:
            problems.append(f"{proc} ignored SIGTERM for {grace:.0f} s: SIGKILL")
            popen.kill()
            popen.wait(timeout=30)

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

    def remove_root(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
