"""Every command of the original agent's documentation that concerns the agent
and its logs, run as written by bash, with `fence_gfs2_recorder` on PATH as
the built agent.

The commands name absolute paths (/localdisk/gfs2-fencing, /var/log/
gfs2-fencing, /data/fence-logs, /custom/logs, /etc/logrotate.d); they run in
a sandbox (tests/sandbox.py) where those are temp directories. The site has
the original docs' config.py, shared with NNF, at the agent's default
location /etc/nnf/fence/config.py, so the directories the original docs
create are the ones the agent uses. The command texts below are the
original's, byte for byte; commands that cannot work as written are listed
in the README's "Coming from the original agent" instead.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import sandbox

from conftest import BIN, DATA, RESPONDER, clean_env, run_agent

# --- The original documentation's commands (data, verbatim) ---------------

INSTALL_LOG_DIR = """\
# Create log directory
sudo mkdir -p /var/log/gfs2-fencing
sudo chmod 755 /var/log/gfs2-fencing
"""

VERIFY_METADATA = "fence_gfs2_recorder --action metadata"
VERIFY_MONITOR = "fence_gfs2_recorder --action monitor --hostname compute-node-2"

DIRECTORY_SETUP = """\
# Create directories
sudo mkdir -p /localdisk/gfs2-fencing/{requests,responses}
sudo chmod 755 /localdisk/gfs2-fencing/{requests,responses}
"""

CONFIG_PY = """\
# Directory where fence agents write fence request files
REQUEST_DIR = "/localdisk/gfs2-fencing/requests"

# Directory where nnf-sos writes fence response files
RESPONSE_DIR = "/localdisk/gfs2-fencing/responses"
"""

MANUAL_REBOOT = """\
# Test recording a reboot event
fence_gfs2_recorder --action reboot --hostname compute-node-3
"""
MANUAL_OFF = """\
# Test recording a shutdown event
fence_gfs2_recorder --action off --hostname compute-node-4
"""
MANUAL_MONITOR = """\
# Monitor operation
fence_gfs2_recorder --action monitor --hostname compute-node-2
"""

CUSTOM_ENV = """\
# Use custom timeout and log directory
FENCE_TIMEOUT=120 LOG_DIR=/data/fence-logs \\
    fence_gfs2_recorder --action reboot --hostname compute-node-2
"""
CUSTOM_OPTION = """\
# Override log directory via command line
fence_gfs2_recorder --action reboot --hostname compute-node-2 --log-dir /custom/logs
"""

TAIL_F = """\
# Tail the main log
tail -f /var/log/gfs2-fencing/fence-events.log
"""
CAT_READABLE = """\
# View human-readable events
cat /var/log/gfs2-fencing/fence-events-readable.log
"""
JQ_ALL = """\
# Parse JSON logs
jq . /var/log/gfs2-fencing/fence-events-detailed.jsonl
"""
GREP_NODE = """\
# Find all fence events for a specific node
grep "compute-node-3" /var/log/gfs2-fencing/fence-events-readable.log
"""
JQ_GFS2 = """\
# Get GFS2 filesystems involved in fencing
jq -r 'select(.target_node == "compute-node-3") | .gfs2_filesystems[]' \\
    /var/log/gfs2-fencing/fence-events-detailed.jsonl
"""
JQ_DASHBOARD = """\
# Generate fence event statistics
jq -r '[.target_node, .gfs2_filesystems | length] | @csv' \\
    /var/log/gfs2-fencing/fence-events-detailed.jsonl | \\
    sort | uniq -c
"""

TROUBLESHOOT_LOG_DIR = """\
# Check permissions
ls -ld /var/log/gfs2-fencing

# Fix permissions
sudo chmod 755 /var/log/gfs2-fencing
sudo chown root:root /var/log/gfs2-fencing
"""
TROUBLESHOOT_REQUESTS = """\
# Check for orphaned request files
ls -la /localdisk/gfs2-fencing/requests/

# Manually clean old requests
find /localdisk/gfs2-fencing/requests/ -name "*.json" -mtime +1 -delete
"""
TROUBLESHOOT_NNF = """\
# Test manually
fence_gfs2_recorder --action monitor --hostname compute-node-3

# Check logs
tail -50 /var/log/gfs2-fencing/fence-events.log
"""
TROUBLESHOOT_FLOW = """\
# Check request/response flow
ls -la /localdisk/gfs2-fencing/requests/
ls -la /localdisk/gfs2-fencing/responses/
"""

SECURITY = """\
# Restrict log file permissions
sudo chmod 600 /var/log/gfs2-fencing/*.log
sudo chmod 600 /var/log/gfs2-fencing/*.jsonl
"""

LOGROTATE = """\
# Create /etc/logrotate.d/gfs2-fencing
cat <<EOF | sudo tee /etc/logrotate.d/gfs2-fencing
/var/log/gfs2-fencing/*.log /var/log/gfs2-fencing/*.jsonl {
    daily
    rotate 30
    compress
    delaycompress
    missingok
    notifempty
    create 0644 root root
    sharedscripts
}
EOF
"""

# --- The site --------------------------------------------------------------

MAPPED = [
    "/localdisk",
    "/var/log/gfs2-fencing",
    "/data",
    "/custom",
    "/etc/logrotate.d",
    "/etc/nnf",
]
JSONL = "/var/log/gfs2-fencing/fence-events-detailed.jsonl"


class Site:
    def __init__(self, tmp_path: Path) -> None:
        sandbox.require()
        self.box = sandbox.Sandbox(tmp_path, MAPPED)
        fence_dir = self.box.host("/etc/nnf") / "fence"
        fence_dir.mkdir(mode=0o755)
        config = fence_dir / "config.py"
        config.write_text(CONFIG_PY)
        config.chmod(0o644)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        storages = tmp_path / "storages.json"
        storages.write_text((DATA / "nnfnodeblockstorages.json").read_text())
        kubectl = bin_dir / "kubectl"
        kubectl.write_text(f"#!/bin/sh\nexec cat '{storages}'\n")
        kubectl.chmod(0o755)
        # As a person's root shell: the built agent first, a kubectl, the system.
        self.env = clean_env(PATH=f"{BIN}:{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
        del self.env["FENCE_KUBECTL"]
        self.responder: subprocess.Popen[str] | None = None

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.box.run(command, self.env, timeout)

    def ok(self, command: str) -> subprocess.CompletedProcess[str]:
        r = self.run(command)
        assert r.returncode == 0, f"{command}\nstdout: {r.stdout}\nstderr: {r.stderr}"
        return r

    def start_responder(self) -> None:
        """The NNF side, answering in the directories the original docs create."""
        req = self.box.host("/localdisk/gfs2-fencing/requests")
        resp = self.box.host("/localdisk/gfs2-fencing/responses")
        # Answers after GFS2 discovery has finished, as nnf-sos takes a while.
        self.responder = subprocess.Popen(
            [RESPONDER, "--request-dir", str(req), "--response-dir", str(resp), "--delay", "0.5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.responder.stdout is not None
        self.responder.stdout.readline()
        time.sleep(0.1)

    def stop(self) -> None:
        if self.responder is not None and self.responder.poll() is None:
            self.responder.terminate()
            self.responder.communicate(timeout=10)

    def records(self, log_dir: str = "/var/log/gfs2-fencing") -> list[dict[str, object]]:
        path = self.box.host(log_dir) / "fence-events-detailed.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def installed(site: Site) -> Site:
    """The original docs' installation and directory set-up, then NNF answering."""
    site.ok(INSTALL_LOG_DIR)
    site.ok(DIRECTORY_SETUP)
    site.start_responder()
    return site


# --- Tests -----------------------------------------------------------------


def test_installation_and_directory_setup_create_what_the_agent_uses(site: Site) -> None:
    site.ok(INSTALL_LOG_DIR)
    site.ok(DIRECTORY_SETUP)
    log_dir = site.box.host("/var/log/gfs2-fencing")
    assert log_dir.stat().st_mode & 0o777 == 0o755
    for d in ("requests", "responses"):
        p = site.box.host(f"/localdisk/gfs2-fencing/{d}")
        assert p.is_dir() and p.stat().st_mode & 0o777 == 0o755
    # The shared config.py sends the agent to exactly these directories.
    r = site.ok("fence_gfs2_recorder --action validate-all")
    assert "request_dir=/localdisk/gfs2-fencing/requests (from REQUEST_DIR in " in r.stdout
    assert "/etc/nnf/fence/config.py line 2)" in r.stdout
    assert "log_dir=/var/log/gfs2-fencing (from default)" in r.stdout


def test_verify_installation(installed: Site) -> None:
    r = installed.ok(VERIFY_METADATA)
    root = ET.fromstring(r.stdout)
    names = [p.get("name") for p in root.iter("parameter")]
    assert names.count("hostname") == 1, names
    r = installed.ok(VERIFY_MONITOR)
    assert r.stderr == ""


def test_manual_testing_fences_and_records(installed: Site) -> None:
    r = installed.ok(MANUAL_REBOOT)
    assert r.stdout.startswith("Success: compute-node-3 fenced"), r.stdout
    r = installed.ok(MANUAL_OFF)
    assert r.stdout.startswith("Success: compute-node-4 fenced"), r.stdout
    installed.ok(MANUAL_MONITOR)
    finals = [(x["target_node"], x["status"]) for x in installed.records()]
    assert finals == [
        ("compute-node-3", "initiated"),
        ("compute-node-3", "completed"),
        ("compute-node-4", "initiated"),
        ("compute-node-4", "completed"),
    ]
    responses = installed.box.host("/localdisk/gfs2-fencing/responses")
    assert len(list(responses.glob("*.json"))) == 2


def test_custom_timeout_and_log_directory(installed: Site) -> None:
    installed.ok(CUSTOM_ENV)
    installed.ok(CUSTOM_OPTION)
    for log_dir in ("/data/fence-logs", "/custom/logs"):
        statuses = [x["status"] for x in installed.records(log_dir)]
        assert statuses == ["initiated", "completed"], log_dir
    assert not installed.box.host("/var/log/gfs2-fencing").joinpath("fence-events.log").exists()


def test_viewing_logs(installed: Site) -> None:
    installed.ok(MANUAL_REBOOT)
    installed.ok(MANUAL_OFF)

    tail = installed.box.popen(TAIL_F, installed.env)
    seen: queue.Queue[str] = queue.Queue()
    assert tail.stdout is not None
    reader = threading.Thread(target=lambda: [seen.put(x) for x in tail.stdout or []])
    reader.start()

    def wait_for(text: str) -> None:
        end = time.monotonic() + 20
        while True:
            line = seen.get(timeout=max(0.1, end - time.monotonic()))
            if text in line:
                return

    try:
        wait_for("target=compute-node-4, status=completed")  # the last line so far
        installed.ok(MANUAL_REBOOT)  # followed as it is written
        wait_for("target=compute-node-3, status=completed")
    finally:
        os.killpg(tail.pid, signal.SIGTERM)
        tail.communicate(timeout=10)
        reader.join()

    r = installed.ok(CAT_READABLE)
    assert "ACTION=reboot TARGET=compute-node-3" in r.stdout
    assert "STATUS=completed" in r.stdout

    r = installed.ok(JQ_ALL)
    assert '"target_node": "compute-node-4"' in r.stdout

    r = installed.ok(GREP_NODE)
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and all("TARGET=compute-node-3" in x for x in lines)

    r = installed.ok(JQ_GFS2)
    names = r.stdout.split()
    assert names, "discovery found the node's GFS2 file systems"
    expected = [
        name
        for x in installed.records()
        if x["target_node"] == "compute-node-3"
        for name in x["gfs2_filesystems"]  # type: ignore[attr-defined]
    ]
    assert names == expected

    r = installed.ok(JQ_DASHBOARD)
    # As written, jq's pipe binds last: the recipe counts the length of the
    # node name and of the list (the README gives the intended recipe).
    counts = r.stdout.split()
    assert counts[1].startswith(f"{len('compute-node-3')},"), r.stdout
    intended = installed.ok(
        "jq -r '[.target_node, (.gfs2_filesystems | length)] | @csv' " + JSONL + " | sort | uniq -c"
    )
    assert '"compute-node-3",' in intended.stdout


def test_troubleshooting_and_security_commands(installed: Site) -> None:
    installed.ok(MANUAL_REBOOT)
    r = installed.ok(TROUBLESHOOT_LOG_DIR)
    assert r.stdout.startswith("drwxr-xr-x")
    installed.ok(TROUBLESHOOT_REQUESTS)
    r = installed.ok(TROUBLESHOOT_NNF)
    assert "compute-node-3" in r.stdout
    r = installed.ok(TROUBLESHOOT_FLOW)
    assert ".json" in r.stdout  # the kept response
    installed.ok(SECURITY)
    jsonl = installed.box.host(JSONL)
    assert jsonl.stat().st_mode & 0o777 == 0o600
    installed.ok(MANUAL_OFF)
    assert installed.records()[-1]["status"] == "completed"


def test_logrotate_block_rotates_the_logs_and_the_agent_goes_on(installed: Site) -> None:
    installed.ok(MANUAL_REBOOT)
    r = installed.ok(LOGROTATE)
    assert "create 0644 root root" in r.stdout
    assert installed.box.host("/etc/logrotate.d/gfs2-fencing").is_file()
    state = installed.box.tmp / "logrotate.state"
    installed.ok(f"logrotate -f -s {state} /etc/logrotate.d/gfs2-fencing")
    log_dir = installed.box.host("/var/log/gfs2-fencing")
    assert (log_dir / "fence-events-detailed.jsonl.1").exists()
    installed.ok(MANUAL_OFF)
    assert [x["target_node"] for x in installed.records()] == ["compute-node-4"] * 2


# --- --hostname, the original agent's name for the node ---------------------


def test_hostname_and_plug_must_name_the_same_node(tmp_path: Path) -> None:
    dirs = ["--request-dir", str(tmp_path / "r"), "--response-dir", str(tmp_path / "s")]
    dirs += ["--log-dir", str(tmp_path / "l"), "--nnf-config", ""]
    r = run_agent(["-o", "off", "-n", "compute-node-3", "--hostname", "compute-node-4", *dirs])
    assert r.returncode == 1
    assert "'compute-node-3'" in r.stderr and "'compute-node-4'" in r.stderr
    assert not (tmp_path / "r").exists(), "nothing was written"
    (tmp_path / "s").mkdir()
    r = run_agent(["-o", "status", "-n", "compute-node-3", "--hostname", "compute-node-3", *dirs])
    assert (r.returncode, r.stdout.strip()) == (0, "Status: ON"), r.stderr


def test_hostname_on_stdin_as_pacemaker_would_send_it(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    base = f"response_dir={tmp_path / 's'}\nrequest_dir={tmp_path / 'r'}\nnnf_config=\n"
    r = run_agent(stdin=base + "action=status\nhostname=compute-node-3\n")
    assert (r.returncode, r.stdout.strip()) == (0, "Status: ON"), r.stderr
    assert "Ignoring unknown option" not in r.stderr
    r = run_agent(stdin=base + "action=status\nport=compute-node-2\nhostname=compute-node-3\n")
    assert r.returncode == 1 and "name different nodes" in r.stderr


def test_help_lists_hostname() -> None:
    r = run_agent(["--help"])
    assert "--hostname=[nodename]" in r.stdout
