"""Who may write the spool, and what the spool directories really are.

An answer, a record or a FIFO planted by a user other than root (or the
agent's own user) must never decide a fence or an unfence; one directory
named twice (a symbolic link, a path through `..`) must never be taken for
two; and big junk in the response directory must not stall `status`.

docs/RELIABILITY.md ("Who may write the spool, and what it is") lists each
with its expected behaviour.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import RESPONDER, Dirs, clean_env, run_agent

NOBODY = 65534
TARGET = "compute-node-3"


@pytest.fixture
def shared() -> Iterator[Dirs]:
    """Spool directories another user can reach (pytest's own are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="fgr-trust-"))
    root.chmod(0o755)
    d = Dirs(root, root / "requests", root / "responses", root / "logs")
    for p in (d.req, d.resp, d.log):
        p.mkdir(mode=0o755)
    try:
        yield d
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_nobody(*argv: str) -> subprocess.Popen[str]:
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    return subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_an_answer_planted_by_another_user_never_fences(shared: Dirs) -> None:
    """A response directory anyone may write: an unprivileged user answers
    "success" for every request, and nothing is detached."""
    shared.resp.chmod(0o777)
    hostile = as_nobody(
        RESPONDER,
        "--request-dir",
        str(shared.req),
        "--response-dir",
        str(shared.resp),
        "--mode",
        "success",
        "--poll-interval",
        "0.05",
    )
    try:
        assert hostile.stdout is not None
        hostile.stdout.readline()  # the banner: it watches
        r = run_agent(shared.argv("-o", "off", "-n", TARGET), env=clean_env(FENCE_TIMEOUT="3"))
    finally:
        hostile.terminate()
        hostile.communicate(timeout=10)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"response directory {shared.resp}" in r.stderr, r.stderr
    assert "writable by group or others (mode 0777)" in r.stderr, r.stderr
    assert os.listdir(shared.req) == [], "nothing was sent"
    assert shared.jsonl()[-1]["status"] == "failed"
    # A FIFO planted where on reads would block every unfence: on and monitor
    # name the directory anyone may write instead.
    fifo = as_nobody("mkfifo", str(shared.resp / "block.json"))
    out, _ = fifo.communicate(timeout=30)
    assert fifo.returncode == 0, out
    for action in ("monitor", "validate-all", "on"):
        m = run_agent(shared.argv("-o", action, "-n", TARGET))
        assert m.returncode == 1, (action, m.stdout, m.stderr)
        assert str(shared.resp) in m.stderr and "mode 0777" in m.stderr, (action, m.stderr)


def old_record(directory: Path) -> Path:
    """A fenced record of TARGET named as a request, older than stale_age."""
    p = directory / f"{uuid.uuid4()}.json"
    p.write_text(f'{{"target_node": "{TARGET}", "success": true}}')
    old = time.time() - 7200
    os.utime(p, (old, old))
    return p


@pytest.mark.parametrize("spelling", ["symlink", "dotdot"])
def test_one_directory_under_two_names_fails_monitor_and_keeps_the_records(
    dirs: Dirs, spelling: str
) -> None:
    """With response_dir leading to request_dir, monitor's clean-up would take
    fenced records for stale requests and silently unfence the node."""
    if spelling == "symlink":
        resp = dirs.root / "resp-link"
        resp.symlink_to(dirs.req)
    else:
        resp = dirs.resp / ".." / dirs.req.name
    both = Dirs(dirs.root, dirs.req, resp, dirs.log)
    record = old_record(dirs.req)
    for action in ("validate-all", "monitor"):
        r = run_agent(both.argv("-o", action), env=clean_env(FENCE_STALE_AGE="3600"))
        assert r.returncode == 1, (action, r.stdout, r.stderr)
        assert "same directory" in r.stderr, (action, r.stderr)
    assert record.exists(), "monitor removed a fenced record as a stale request"
    f = run_agent(both.argv("-o", "off", "-n", TARGET), env=clean_env(FENCE_TIMEOUT="2"))
    assert f.returncode == 1 and "same directory" in f.stderr, f.stderr


def test_big_junk_does_not_stall_status_or_on(dirs: Dirs) -> None:
    """An 8 GiB file that is not JSON from its first byte (sparse here): the
    verdict needs one byte, so status and on answer at once."""
    junk = dirs.resp / "junk.json"
    with open(junk, "wb") as f:
        f.truncate(8 << 30)
    (dirs.resp / "a.json").write_text(f'{{"target_node": "{TARGET}", "success": true}}')
    argv = dirs.argv("-n", TARGET)
    started = time.monotonic()
    s = run_agent([*argv, "-o", "status"], timeout=120)
    assert (s.returncode, s.stdout.strip()) == (2, "Status: OFF"), s.stdout + s.stderr
    on = run_agent([*argv, "-o", "on"], timeout=120)
    assert on.returncode == 0, on.stdout + on.stderr
    took = time.monotonic() - started
    # Reading the whole file took over 20 s; a generous window, not a timing.
    assert took < 15, f"status and on took {took:.1f} s"
    assert junk.exists() and not (dirs.resp / "a.json").exists()
