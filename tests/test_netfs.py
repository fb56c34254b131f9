"""The agent on a network mount with negative-entry caching.

The agent sees its directories through a FUSE mount (bindfs) that caches
"no such file" for 20 s, as an NFS client does for a name it looked up before
the file existed; the responder writes the backing directory directly, as
another host would, so no inotify event reaches the agent. The answer must
still be seen within the poll interval plus a second.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RESPONDER, Dirs, clean_env, have, run_agent

pytestmark = pytest.mark.skipif(
    not (have("bindfs") and (have("fusermount3") or have("fusermount"))),
    reason="bindfs and fuse3 are not installed (scripts/setup.sh installs them)",
)

NEGATIVE_TIMEOUT = 20
# The responder answers this long after it sees a request.
ANSWER_DELAY = 1.0


def unmount(mnt: Path) -> None:
    for cmd in (["fusermount3", "-u", str(mnt)], ["fusermount", "-u", str(mnt)]):
        if have(cmd[0]) and subprocess.run(cmd, capture_output=True).returncode == 0:
            return
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def is_mounted(mnt: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(mnt) for line in f)


class NetMount:
    """`store` is the backing directory (the responder's side), `dirs` the
    agent's view of it through bindfs."""

    def __init__(self, root: Path) -> None:
        self.store = root / "store"
        self.mnt = root / "mnt"
        for d in (self.store / "requests", self.store / "responses", self.mnt):
            d.mkdir(parents=True)
        subprocess.run(
            [
                "bindfs",
                "-o",
                f"negative_timeout={NEGATIVE_TIMEOUT}",
                str(self.store),
                str(self.mnt),
            ],
            check=True,
            capture_output=True,
        )
        self.dirs = Dirs(root, self.mnt / "requests", self.mnt / "responses", root / "logs")
        self.responders: list[subprocess.Popen[str]] = []

    def start_responder(self, *args: str) -> None:
        p = subprocess.Popen(
            [
                RESPONDER,
                "--request-dir",
                str(self.store / "requests"),
                "--response-dir",
                str(self.store / "responses"),
                "--delay",
                str(ANSWER_DELAY),
                "--poll-interval",
                "0.05",
                "--quiet",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert p.stdout is not None
        p.stdout.readline()  # the banner: about to watch
        self.responders.append(p)

    def close(self) -> None:
        for p in self.responders:
            if p.poll() is None:
                p.terminate()
            p.communicate(timeout=10)
        unmount(self.mnt)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetMount]:
    m = NetMount(tmp_path)
    try:
        yield m
    finally:
        m.close()
    assert not is_mounted(m.mnt), f"{m.mnt} is still mounted"


def fence(net: NetMount, poll: str, timeout: str = "10") -> subprocess.CompletedProcess[str]:
    return run_agent(
        net.dirs.argv("-o", "reboot", "-n", "compute-node-3"),
        env=clean_env(FENCE_TIMEOUT=timeout, FENCE_POLL_INTERVAL=poll),
    )


def test_the_mount_caches_missing_names(net: NetMount) -> None:
    """The premise: a name looked up before it exists stays missing on this mount."""
    name = "probe.json"
    assert not (net.mnt / "responses" / name).exists()
    (net.store / "responses" / name).write_text("{}")
    assert (net.store / "responses" / name).exists()
    assert not (net.mnt / "responses" / name).exists()
    # A listing shows it, and still the name is missing.
    assert name in os.listdir(net.mnt / "responses")
    assert not (net.mnt / "responses" / name).exists()


@pytest.mark.parametrize("poll", ["0.5", "0.05"])
@pytest.mark.parametrize("mode", ["success", "inplace"])
def test_answers_are_seen_within_the_poll_interval_plus_a_second(
    net: NetMount, poll: str, mode: str
) -> None:
    net.start_responder("--mode", mode)
    for _ in range(3):
        r = fence(net, poll)
        assert r.returncode == 0, r.stdout + r.stderr
        final = net.dirs.jsonl()[-1]
        assert final["status"] == "completed", final
        # The answer comes ANSWER_DELAY (+ the responder's 0.05 s scan) after
        # the request; a generous window, far below the 20 s of the cache.
        budget_ms = (ANSWER_DELAY + 0.05 + float(poll) + 1.0) * 1000 + 1500
        assert final["elapsed_ms"] < budget_ms, final
    # Every response stays, and nothing is left in the request directory.
    assert len(net.dirs.responses()) == 3
    assert os.listdir(net.store / "requests") == []


def test_status_and_on_are_right_through_the_mount(net: NetMount) -> None:
    net.start_responder()
    argv = net.dirs.argv("-n", "compute-node-3")
    env = clean_env()
    assert run_agent([*argv, "-o", "status"], env=env).returncode == 0
    assert fence(net, "0.5").returncode == 0
    s = run_agent([*argv, "-o", "status"], env=env)
    assert (s.returncode, s.stdout.strip()) == (2, "Status: OFF"), s.stdout + s.stderr
    on = run_agent([*argv, "-o", "on"], env=env)
    assert on.returncode == 0, on.stdout + on.stderr
    assert os.listdir(net.store / "responses") == []
    s = run_agent([*argv, "-o", "status"], env=env)
    assert (s.returncode, s.stdout.strip()) == (0, "Status: ON"), s.stdout + s.stderr


def test_a_silent_responder_still_times_out_and_the_request_is_withdrawn(
    net: NetMount,
) -> None:
    started = time.monotonic()
    r = fence(net, "0.5", timeout="2")
    assert r.returncode == 1
    assert time.monotonic() - started < 10
    final = net.dirs.jsonl()[-1]
    assert final["status"] == "timeout", final
    assert "withdrawn" in final["details"], final
    # FUSE keeps a file unlinked while open as .fuse_hidden* until the
    # daemon handles its release, which the kernel sends after the agent's
    # exit has closed it: give that a moment, then nothing may be left.
    deadline = time.monotonic() + 10
    while os.listdir(net.store / "requests") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(net.store / "requests") == []


def test_the_agents_own_probes_are_not_taken_for_the_storage_side(net: NetMount) -> None:
    """Nobody reads the request: the agent opens it at every poll (to
    revalidate its name on a network mount), and those opens are its own. Opens
    made on other hosts cannot be seen here, so the record says it is unknown."""
    r = fence(net, "0.05", timeout="2")
    assert r.returncode == 1
    final = net.dirs.jsonl()[-1]
    assert final["status"] == "timeout", final
    assert "had already opened" not in final["details"], final
    assert "whether the storage side had already read it is unknown" in final["details"], final


@pytest.mark.parametrize("action", ["monitor", "validate-all"])
def test_monitor_and_validate_name_the_file_system(net: NetMount, action: str) -> None:
    r = run_agent(net.dirs.argv("-o", action), env=clean_env())
    assert r.returncode == 0, r.stdout + r.stderr
    for role, d in (("request", net.dirs.req), ("response", net.dirs.resp)):
        assert f"{role} directory {d} is on fuse" in r.stdout, r.stdout
    # Not NFS: nothing to warn about (but discovery, which the tests switch off).
    warnings = [x for x in r.stderr.splitlines() if "Warning" in x]
    assert all("GFS2 discovery is switched off" in x for x in warnings), r.stderr


SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")


@pytest.fixture
def sshfs(tmp_path: Path) -> Iterator[NetMount]:
    """The same directories through sshfs with its 20 s directory cache, the
    SFTP server run directly (no sshd, no network)."""
    if not (have("sshfs") and SFTP_SERVER.exists()):
        pytest.skip("sshfs and openssh-sftp-server are not installed (scripts/setup.sh)")
    ssh = tmp_path / "ssh-command"
    ssh.write_text(f"#!/bin/sh\nexec {SFTP_SERVER}\n")
    ssh.chmod(0o755)
    m = NetMount.__new__(NetMount)
    m.store, m.mnt = tmp_path / "store", tmp_path / "mnt"
    for d in (m.store / "requests", m.store / "responses", m.mnt):
        d.mkdir(parents=True)
    opts = f"ssh_command={ssh},dir_cache=yes,dcache_timeout=20"
    subprocess.run(["sshfs", "-o", opts, f"x:{m.store}", str(m.mnt)], check=True)
    m.dirs = Dirs(tmp_path, m.mnt / "requests", m.mnt / "responses", tmp_path / "logs")
    m.responders = []
    try:
        yield m
    finally:
        m.close()
    assert not is_mounted(m.mnt), f"{m.mnt} is still mounted"


def fenced_behind_a_lagging_listing(sshfs: NetMount) -> list[str]:
    """Fences compute-node-3 through sshfs after its empty listing was cached;
    returns the agent's argv for the node. The listing does not show the response."""
    sshfs.start_responder()
    argv = sshfs.dirs.argv("-n", "compute-node-3")
    # Caches the (empty) listing for 20 s.
    assert run_agent([*argv, "-o", "status"]).stdout.strip() == "Status: ON"
    r = fence(sshfs, "0.5")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sshfs.dirs.jsonl()[-1]["elapsed_ms"] < 5000
    assert len(list((sshfs.store / "responses").glob("*.json"))) == 1
    # The premise: the listing does not show the new response yet.
    listed = run_agent([*sshfs.dirs.argv(), "-o", "list"])
    assert "compute-node-3" not in listed.stdout, listed.stdout
    return argv


def test_status_is_off_right_after_a_fence_although_the_listing_lags(sshfs: NetMount) -> None:
    argv = fenced_behind_a_lagging_listing(sshfs)
    s = run_agent([*argv, "-o", "status"])
    assert (s.returncode, s.stdout.strip()) == (2, "Status: OFF"), s.stdout + s.stderr


def test_on_right_after_a_fence_removes_the_response_although_the_listing_lags(
    sshfs: NetMount,
) -> None:
    argv = fenced_behind_a_lagging_listing(sshfs)
    stored = sshfs.store / "responses"
    u = run_agent([*argv, "-o", "on"])
    assert u.returncode == 0, u.stdout + u.stderr
    # Gone from the storage side's own directory, and the record says it was removed.
    assert list(stored.glob("*.json")) == []
    assert sshfs.dirs.jsonl()[-1]["status"] == "unfenced", sshfs.dirs.jsonl()[-1]
    s = run_agent([*argv, "-o", "status"])
    assert (s.returncode, s.stdout.strip()) == (0, "Status: ON"), s.stdout + s.stderr
