"""A fence_dummy recorder-mode device with only the agent's name changed.

NNF's HA guide deploys upstream fence_dummy (fence-agents, agents/dummy) in
recorder mode. Its option names are taken as this agent's own, on stdin as
Pacemaker sends them and on the command line; a type other than recorder,
or two spellings of one setting that disagree, are refused before anything
is sent. The answers fence_dummy's sites already hold, named
``<node>-<uuid>.json`` after its requests, count as fenced records.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from conftest import Dirs, run_agent


def dummy_stdin(d: Dirs, **extra: str) -> str:
    fields = {
        "type": "recorder",
        "request_path": str(d.req),
        "response_path": str(d.resp),
        "log_path": str(d.log),
        **extra,
    }
    return "".join(f"{k}={v}\n" for k, v in fields.items())


def dummy_argv(d: Dirs, *extra: str) -> list[str]:
    return [
        "--type=recorder",
        f"--request-path={d.req}",
        f"--response-path={d.resp}",
        f"--log-path={d.log}",
        *extra,
    ]


def test_fence_dummy_stdin_fences_through_its_directories(dirs: Dirs, responder) -> None:
    responder()
    stdin = dummy_stdin(
        dirs,
        action="reboot",
        port="compute-node-3",
        nodename="compute-node-3",
        recorder_timeout="5",
        recorder_poll_interval="0.2",
    )
    r = run_agent(stdin=stdin)
    assert r.returncode == 0, r.stderr
    assert "Ignoring unknown option" not in r.stderr and "Warning" not in r.stderr, r.stderr
    [resp] = dirs.responses()
    assert json.loads(resp.read_text())["target_node"] == "compute-node-3"
    [done] = [x for x in dirs.jsonl() if x["status"] == "completed"]
    assert done["target_node"] == "compute-node-3"


def test_fence_dummy_argv_fences_through_its_directories(dirs: Dirs, responder) -> None:
    responder()
    r = run_agent(["-o", "reboot", "-n", "compute-node-3", *dummy_argv(dirs)])
    assert r.returncode == 0, r.stderr
    assert "Ignoring unknown option" not in r.stderr, r.stderr
    assert [x["status"] for x in dirs.jsonl()] == ["initiated", "completed"]


def test_recorder_timeout_is_the_wait(dirs: Dirs) -> None:
    """No answer: the agent gives up after recorder_timeout, not its default."""
    r = run_agent(
        stdin=dummy_stdin(dirs, action="off", port="compute-node-3", recorder_timeout="2")
    )
    assert r.returncode == 1
    final = dirs.jsonl()[-1]
    assert final["status"] == "timeout" and 1900 <= final["elapsed_ms"] < 10000, final


def test_validate_all_names_fence_dummys_options_as_the_origin(dirs: Dirs) -> None:
    r = run_agent(
        stdin=dummy_stdin(
            dirs, action="validate-all", recorder_timeout="7", recorder_poll_interval="0.25"
        )
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    for ours, theirs, value in (
        ("request_dir", "request_path", str(dirs.req)),
        ("response_dir", "response_path", str(dirs.resp)),
        ("log_dir", "log_path", str(dirs.log)),
        ("fence_timeout", "recorder_timeout", "7"),
        ("poll_interval", "recorder_poll_interval", "0.25"),
    ):
        line = f"{ours}={value} (from option {theirs}, fence_dummy's name for {ours})"
        assert line in lines, r.stdout
    # Our own spelling is named as such, a setting not given as the default.
    r = run_agent(stdin=dirs.stdin(action="validate-all"))
    assert "request_dir=" + str(dirs.req) + " (from option request_dir)" in r.stdout.splitlines()
    assert "fence_timeout=25 (from default)" in r.stdout.splitlines(), r.stdout


@pytest.mark.parametrize("kind", ["file", "fail", "Recorder", ""])
@pytest.mark.parametrize("action", ["reboot", "off", "status", "on", "monitor"])
def test_a_type_other_than_recorder_is_refused_with_nothing_sent(
    dirs: Dirs, responder, kind: str, action: str
) -> None:
    responder()
    kept = dirs.resp / "kept.json"
    kept.write_text('{"target_node": "compute-node-3", "success": true, "request_id": "x"}')
    r = run_agent(stdin=dummy_stdin(dirs, action=action, port="compute-node-3", type=kind))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"type {kind!r} is not 'recorder'" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == [] and dirs.responses() == [kept]
    assert not dirs.log.exists(), "nothing is written for a refused configuration"


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("request_dir", "request_path"),
        ("response_dir", "response_path"),
        ("log_dir", "log_path"),
        ("fence_timeout", "recorder_timeout"),
        ("poll_interval", "recorder_poll_interval"),
    ],
)
def test_both_spellings_with_different_values_are_refused(
    dirs: Dirs, tmp_path: Path, ours: str, theirs: str
) -> None:
    fields = {
        "request_dir": str(dirs.req),
        "response_dir": str(dirs.resp),
        "log_dir": str(dirs.log),
        "fence_timeout": "5",
        "poll_interval": "0.5",
    }
    other = str(tmp_path / "elsewhere") if ours.endswith("_dir") else "3"
    stdin = dirs.stdin(action="reboot", port="compute-node-3", **{ours: fields[ours]})
    stdin += f"{theirs}={other}\n"
    r = run_agent(stdin=stdin)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{ours} {fields[ours]!r} and {theirs}" in r.stderr, r.stderr
    assert repr(other) in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == []


def test_both_spellings_with_the_same_value_are_one_setting(dirs: Dirs, responder) -> None:
    responder()
    stdin = dirs.stdin(action="reboot", port="compute-node-3") + dummy_stdin(dirs)
    r = run_agent(stdin=stdin)
    assert r.returncode == 0, r.stderr


def test_metadata_declares_fence_dummys_names() -> None:
    r = run_agent(["-o", "metadata"])
    assert r.returncode == 0, r.stderr
    for theirs, ours in (
        ("request_path", "request_dir"),
        ("response_path", "response_dir"),
        ("log_path", "log_dir"),
        ("recorder_timeout", "fence_timeout"),
        ("recorder_poll_interval", "poll_interval"),
    ):
        assert f'<parameter name="{theirs}"' in r.stdout
        assert f"fence_dummy&apos;s name for {ours}" in r.stdout or (
            f"fence_dummy's name for {ours}" in r.stdout
        ), theirs
    assert '<parameter name="type"' in r.stdout


# ---------------------------------------------------------------- fence_dummy's answers


def nnf_sos_answer(d: Dirs, target: str) -> Path:
    """A success answer to a fence_dummy request, named after it as nnf-sos names it."""
    rid = str(uuid.uuid4())
    path = d.resp / f"{target}-{rid}.json"
    body = {
        "request_id": rid,
        "target_node": target,
        "action": "off",
        "recorder_node": "rabbit-node-1",
        "success": True,
        "message": "Successfully fenced node",
        "timestamp": "2026-03-01T10:00:00-06:00",
    }
    path.write_text(json.dumps(body, indent=2))
    return path


def test_answers_named_after_fence_dummys_requests_count_for_status_list_and_on(
    dirs: Dirs,
) -> None:
    record = nnf_sos_answer(dirs, "compute-node-5")
    other = nnf_sos_answer(dirs, "compute-node-6")
    r = run_agent(dirs.argv("-o", "status", "-n", "compute-node-5"))
    assert (r.returncode, r.stdout.strip()) == (2, "Status: OFF"), (r.stdout, r.stderr)
    r = run_agent(dirs.argv("-o", "list"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["compute-node-5,", "compute-node-6,"]
    r = run_agent(dirs.argv("-o", "on", "-n", "compute-node-5"))
    assert r.returncode == 0, r.stderr
    assert not record.exists() and other.exists()
    r = run_agent(dirs.argv("-o", "status", "-n", "compute-node-5"))
    assert (r.returncode, r.stdout.strip()) == (0, "Status: ON"), (r.stdout, r.stderr)
    r = run_agent(dirs.argv("-o", "list"))
    assert r.stdout.splitlines() == ["compute-node-6,"]
