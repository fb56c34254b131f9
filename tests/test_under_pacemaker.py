"""What Pacemaker's fencer does to an agent besides asking: a deadline that
covers everything, streams it may close or stop reading, a SIGKILL at any
moment, options it passes through.

- Everything done for a fence (start-up, the CIB query for pcmk_host_map,
  ``delay``) counts within ``fence_timeout``.
- The exit code of a fence or an unfence is the outcome recorded, whatever
  became of stdout and stderr; a fence killed during its delay leaves a line.
- fencing.py's power-loop options are not advertised (they do nothing), and
  a byte that is not UTF-8 in a setting is one error line naming it.

The CIB is played by a stand-in ``cibadmin`` first on PATH, as in
tests/test_field_agent.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Dirs, clean_env, run_agent
from helpers import main_log

MAPPED = "compute-node-1:nid0001"
CIB = f"""<resources>
  <primitive id="gfs2-fence" class="stonith" type="fence_gfs2_recorder">
    <instance_attributes id="gfs2-fence-ia">
      <nvpair id="gfs2-fence-map" name="pcmk_host_map" value="{MAPPED}"/>
    </instance_attributes>
  </primitive>
</resources>
"""


def slow_cibadmin(tmp: Path, seconds: float) -> dict[str, str]:
    """An environment whose cibadmin answers the map after `seconds`."""
    bin_dir = tmp / "slowbin"
    bin_dir.mkdir()
    (bin_dir / "cib.xml").write_text(CIB)
    script = bin_dir / "cibadmin"
    script.write_text(f"#!/bin/sh\nsleep {seconds}\ncat '{bin_dir / 'cib.xml'}'\n")
    script.chmod(0o755)
    return clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}")


def mapped_fence(dirs: Dirs, env: dict[str, str], **extra: str) -> tuple[Any, float]:
    """A reboot Pacemaker asks for by cluster name through pcmk_host_map."""
    t = time.monotonic()
    r = run_agent(
        stdin=dirs.stdin(action="reboot", nodename="compute-node-1", port="nid0001", **extra),
        env=env,
    )
    return r, time.monotonic() - t


# ---------------------------------------------------------------- the deadline


def test_a_slow_cib_query_counts_within_fence_timeout(dirs: Dirs, tmp_path: Path) -> None:
    """Before: the query's seconds came on top of fence_timeout (5.5 s here)."""
    r, took = mapped_fence(dirs, slow_cibadmin(tmp_path, 2.5), fence_timeout="3")
    assert r.returncode == 1, r.stderr
    assert took < 3 + 1.5, f"{took:.2f} s for fence_timeout 3 s"
    final = dirs.jsonl()[-1]
    assert final["status"] == "timeout", final
    assert final["target_node"] == "nid0001"


def test_a_cib_query_longer_than_fence_timeout_ends_at_its_deadline(
    dirs: Dirs, tmp_path: Path
) -> None:
    """Before: cibadmin had its own 5 s, whatever fence_timeout was."""
    r, took = mapped_fence(dirs, slow_cibadmin(tmp_path, 30), fence_timeout="2")
    assert r.returncode == 1
    assert took < 2 + 1.5, f"{took:.2f} s for fence_timeout 2 s"
    records = dirs.jsonl()
    assert [x["status"] for x in records] == ["failed"], records
    assert "cibadmin did not answer within" in records[0]["details"], records
    assert list(dirs.req.iterdir()) == []


def test_no_request_is_sent_once_fence_timeout_is_spent(dirs: Dirs, tmp_path: Path) -> None:
    """The CIB query (1.5 s) and delay (2 s) use up fence_timeout (3 s): a
    request sent now would be withdrawn at once, so none is. Before: the
    agent still waited 1 s more than fence_timeout."""
    r, took = mapped_fence(dirs, slow_cibadmin(tmp_path, 1.5), fence_timeout="3", delay="2")
    assert r.returncode == 1
    assert took < 3 + 1.5, f"{took:.2f} s for fence_timeout 3 s"
    records = dirs.jsonl()
    assert [x["status"] for x in records] == ["failed"], records
    assert (
        "fence_timeout (3 s) was spent before the request could be sent" in (records[0]["details"])
    ), records
    assert list(dirs.req.iterdir()) == []


# ---------------------------------------------------------------- streams and signals


def closing(*fds: int) -> Any:
    """A preexec_fn closing `fds` in the agent before it starts."""

    def close() -> None:
        for fd in fds:
            os.close(fd)

    return close


@pytest.fixture
def gone_reader() -> Iterator[int]:
    """The write end of a pipe whose reader is already gone."""
    read, write = os.pipe()
    os.close(read)
    yield write
    os.close(write)


STREAMS = ["stdout closed", "stderr closed", "both closed", "stdout reader gone",
           "stderr reader gone"]  # fmt: skip


def run_with_streams(how: str, gone: int, stdin: str) -> int:
    """Runs the agent with its streams as `how` says; its exit code."""
    kwargs: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if how == "stdout closed":
        kwargs["preexec_fn"] = closing(1)
    elif how == "stderr closed":
        kwargs["preexec_fn"] = closing(2)
    elif how == "both closed":
        kwargs["preexec_fn"] = closing(1, 2)
    elif how == "stdout reader gone":
        kwargs["stdout"] = gone
    else:
        kwargs["stderr"] = gone
    p = subprocess.run(
        [AGENT], input=stdin.encode(), env=clean_env(), timeout=60, check=False, **kwargs
    )
    return p.returncode


@pytest.mark.parametrize("how", STREAMS)
def test_exit_code_matches_the_record_whatever_became_of_the_streams(
    dirs: Dirs, responder: Any, gone_reader: int, how: str
) -> None:
    """Before: exit 1 (a traceback flushing a stream that is None, or a
    broken pipe) after a fence recorded completed."""
    responder()
    code = run_with_streams(how, gone_reader, dirs.stdin(action="off", port="compute-node-3"))
    assert [x["status"] for x in dirs.jsonl()] == ["initiated", "completed"]
    assert code == 0, f"exit {code} for a fence recorded completed ({how})"
    code = run_with_streams(how, gone_reader, dirs.stdin(action="on", port="compute-node-3"))
    assert dirs.jsonl()[-1]["status"] == "unfenced"
    assert code == 0, f"exit {code} for an unfence recorded unfenced ({how})"


def test_a_listing_that_cannot_be_delivered_fails(
    dirs: Dirs, responder: Any, gone_reader: int
) -> None:
    """list's output is its result: undelivered, it is a failure (as fencing.py has it)."""
    responder()
    r = run_agent(stdin=dirs.stdin(action="off", port="compute-node-3"))
    assert r.returncode == 0, r.stderr
    assert run_with_streams("stdout reader gone", gone_reader, dirs.stdin(action="list")) == 1
    r = run_agent(stdin=dirs.stdin(action="list"))
    assert r.returncode == 0 and r.stdout == "compute-node-3,\n", (r.stdout, r.stderr)


def start_delayed_fence(dirs: Dirs) -> subprocess.Popen[str]:
    """A reboot with delay=5, once the main log says it is waiting."""
    options = dirs.root / "options"
    options.write_text(dirs.stdin(action="reboot", port="compute-node-3", delay="5"))
    with options.open() as stdin:
        p = subprocess.Popen(
            [AGENT],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
    log = dirs.log / "fence-events.log"
    end = time.monotonic() + 20
    while not (log.exists() and "Waiting delay" in log.read_text()):
        if p.poll() is not None or time.monotonic() > end:
            p.kill()
            out = p.communicate()
            pytest.fail(f"the delay was never announced in the main log: {out}")
        time.sleep(0.05)
    return p


def test_a_fence_killed_during_its_delay_leaves_a_line(dirs: Dirs) -> None:
    """Before: nothing in any log until the request went out."""
    p = start_delayed_fence(dirs)
    p.kill()
    p.communicate(timeout=10)
    text = main_log(dirs)
    assert "Fence action requested: reboot for target: compute-node-3" in text, text
    assert "Waiting delay 5.000 s before sending the request" in text, text
    assert list(dirs.req.iterdir()) == []


def test_sigterm_during_the_delay_sends_nothing_and_is_recorded(dirs: Dirs) -> None:
    p = start_delayed_fence(dirs)
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert time.monotonic() - t < 2, "the delay went on after SIGTERM"
    assert p.returncode == 1, err
    records = dirs.jsonl()
    assert [x["status"] for x in records] == ["failed"], records
    assert "interrupted during the delay (SIGTERM)" in records[0]["details"], records
    assert list(dirs.req.iterdir()) == []


# ---------------------------------------------------------------- options


UNUSED = ["power_timeout", "power_wait", "retry_on", "login_timeout", "shell_timeout",
          "stonith_status_sleep", "disable_timeout"]  # fmt: skip


def test_power_loop_options_are_not_advertised_and_warned_about(dirs: Dirs, responder: Any) -> None:
    r = run_agent(["-o", "metadata"])
    assert r.returncode == 0, r.stderr
    for name in UNUSED:
        assert f'<parameter name="{name}"' not in r.stdout, name
    responder()
    r = run_agent(
        stdin=dirs.stdin(action="off", port="compute-node-3", power_timeout="60", retry_on="3")
    )
    assert r.returncode == 0, r.stderr
    assert "Warning: power_timeout is ignored" in r.stderr, r.stderr
    assert "Warning: retry_on is ignored" in r.stderr, r.stderr


def one_error(r: Any) -> str:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    failed = [line for line in r.stderr.splitlines() if "Failed:" in line]
    assert len(failed) == 1, r.stderr
    return str(failed[0])


def test_a_path_option_that_is_not_utf8_is_one_line_naming_it(dirs: Dirs) -> None:
    """Before: a TypeError traceback for an option, and silently the default
    for an environment variable."""
    raw = b"/tmp/bad-\xff-dir"
    shown = r'"/tmp/bad-\\xff-dir"'
    argv = [os.fsencode(AGENT), b"-o", b"monitor", b"--request-dir", raw]
    r = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60)
    line = one_error(r)
    assert f"invalid request_dir {shown}: not valid UTF-8" in line, line

    stdin = b"action=monitor\nlog_dir=" + raw + b"\n"
    p = subprocess.run([AGENT], input=stdin, capture_output=True, env=clean_env(), timeout=60)
    r = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())
    line = one_error(r)
    assert f"invalid log_dir {shown}: not valid UTF-8" in line, line

    env = {k.encode(): v.encode() for k, v in clean_env().items()}
    env[b"NNF_FENCE_RESPONSE_DIR"] = raw
    p = subprocess.run(
        [AGENT, "-o", "validate-all", "--request-dir", str(dirs.req)],
        capture_output=True,
        env=env,  # type: ignore[arg-type]
        timeout=60,
    )
    r = subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(), p.stderr.decode())
    line = one_error(r)
    assert (
        f"invalid response_dir (from environment variable NNF_FENCE_RESPONSE_DIR) {shown}: "
        "not valid UTF-8" in line
    ), line
