"""The fence exchange end to end: the installed agent, the real fencing.py,
the bundled responder, as a person types it and as Pacemaker sends it."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import fence_gfs2_recorder
from conftest import AGENT, Dirs, clean_env, run_agent
from fence_gfs2_recorder import _native
from helpers import answering, main_log, statuses, success


def test_reboot_from_the_command_line_succeeds_and_keeps_the_response(
    dirs: Dirs, responder
) -> None:
    responder()
    r = run_agent(["-o", "reboot", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "5")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Success: compute-node-3 fenced (off)")
    [resp] = dirs.responses()
    body = json.loads(resp.read_text())
    assert body["target_node"] == "compute-node-3" and body["success"] is True
    assert statuses(dirs) == ["initiated", "completed"]
    assert list(dirs.req.iterdir()) == []
    assert "Fence action requested: reboot for target: compute-node-3" in main_log(dirs)


def test_pacemaker_stdin_with_nodename_and_nodeid(dirs: Dirs, responder) -> None:
    responder()
    stdin = dirs.stdin(
        nodename="compute-node-3",
        nodeid="3",
        action="off",
        port="compute-node-3",
        fence_timeout="5",
    )
    r = run_agent(stdin=stdin)
    assert r.returncode == 0, r.stderr
    # nodename/nodeid are declared, so fencing.py does not warn about them.
    assert "Ignoring unknown option" not in r.stderr
    [record] = [x for x in dirs.jsonl() if x["status"] == "completed"]
    assert record["action"] == "off" and record["target_node"] == "compute-node-3"


def test_in_place_answer_in_two_parts(dirs: Dirs, responder) -> None:
    responder("--mode", "inplace", "--pause", "0.3")
    r = run_agent(["-o", "reboot", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "10")])
    assert r.returncode == 0, r.stderr
    [resp] = dirs.responses()
    assert json.loads(resp.read_text())["status"] == "success"
    assert statuses(dirs) == ["initiated", "completed"]


def test_failure_answer_exits_1(dirs: Dirs, responder) -> None:
    responder("--mode", "failure")
    r = run_agent(["-o", "off", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "5")])
    assert r.returncode == 1
    assert "the storage side answered failure" in r.stderr
    assert "Partially fenced node" in r.stderr
    assert statuses(dirs) == ["initiated", "failed"]


def test_no_answer_exits_1_after_the_timeout(dirs: Dirs) -> None:
    start = time.monotonic()
    r = run_agent(["-o", "reboot", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "2")])
    took = time.monotonic() - start
    assert r.returncode == 1
    assert "no answer" in r.stderr
    assert 2.0 <= took < 20, took
    assert statuses(dirs) == ["initiated", "timeout"]
    assert list(dirs.req.iterdir()) == [], "the unanswered request is withdrawn"


def test_every_fence_is_a_fresh_request(dirs: Dirs, responder) -> None:
    responder()
    for _ in range(2):
        r = run_agent(["-o", "off", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "5")])
        assert r.returncode == 0, r.stderr
    assert len(dirs.responses()) == 2
    assert statuses(dirs) == ["initiated", "completed"] * 2


def test_spoofed_request_id_is_ignored(dirs: Dirs) -> None:
    def spoof(request: dict[str, str]) -> str:
        return json.dumps(dict(request, request_id=str(uuid.uuid4()), success=True))

    with answering(dirs, spoof, first_only=True, take=False):
        r = run_agent(["-o", "off", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    [final] = [x for x in dirs.jsonl() if x["status"] != "initiated"]
    assert final["status"] == "timeout"
    assert "ignored" in final["details"] and "request_id" in final["details"]


def test_forced_polling_finds_the_answer(dirs: Dirs, responder) -> None:
    responder()
    r = run_agent(
        [
            "-o",
            "off",
            "-n",
            "compute-node-3",
            *dirs.argv("--fence-timeout", "5", "--force-poll", "yes", "--poll-interval", "0.1"),
        ]
    )
    assert r.returncode == 0, r.stderr
    assert statuses(dirs) == ["initiated", "completed"]


def test_forced_polling_from_the_environment(dirs: Dirs, responder) -> None:
    responder()
    env = clean_env(FENCE_FORCE_POLL="1", FENCE_POLL_INTERVAL="0.05")
    r = run_agent(["-o", "off", "-n", "compute-node-3", *dirs.argv()], env=env)
    assert r.returncode == 0, r.stderr


def test_option_beats_environment_beats_default(dirs: Dirs, tmp_path: Path) -> None:
    env_req = tmp_path / "env-req"
    env_resp = tmp_path / "env-resp"
    env = {
        "NNF_FENCE_REQUEST_DIR": str(env_req),
        "NNF_FENCE_RESPONSE_DIR": str(env_resp),
        "FENCE_TIMEOUT": "30",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        s = _native.resolve_settings(request_dir=str(dirs.req), fence_timeout="7")
        assert s.request_dir == str(dirs.req)  # option
        assert s.response_dir == str(env_resp)  # environment
        assert s.fence_timeout == 7.0  # option over FENCE_TIMEOUT
        assert s.log_dir == "/var/log/gfs2-fencing"  # default
        s = _native.resolve_settings()
        assert s.fence_timeout == 30.0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_every_setting_is_an_option_naming_its_variable() -> None:
    """The engine's table is the one list: each setting has its option, whose
    text names the variable read, and the test environment clears them all."""
    from fence_gfs2_recorder.agent import OWN_OPTIONS

    assert len(_native.SETTINGS) >= 11
    for name, env in _native.SETTINGS:
        assert f"env {env}" in OWN_OPTIONS[name]["shortdesc"], name
        assert env in _native.ENVIRONMENT
    assert "FENCE_LOG" in _native.ENVIRONMENT
    os.environ["FENCE_STALE_AGE"] = "1"
    try:
        # Only discovery's stay: switched off, and a kubeconfig in the tests' data.
        assert set(_native.ENVIRONMENT) & set(clean_env()) == {"FENCE_KUBECTL", "KUBECONFIG"}
    finally:
        del os.environ["FENCE_STALE_AGE"]


def test_an_unknown_setting_name_is_refused() -> None:
    with pytest.raises(TypeError, match="no_such_setting"):
        _native.resolve_settings(no_such_setting="1")
    with pytest.raises(TypeError, match="fence_timeout"):
        _native.resolve_settings(fence_timeout=7)  # type: ignore[arg-type]


def test_fence_timeout_option_overrides_the_environment_in_the_agent(dirs: Dirs) -> None:
    env = clean_env(FENCE_TIMEOUT="abc")
    # The option wins, so the bad environment value is never used.
    r = run_agent(
        ["-o", "off", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "1")], env=env
    )
    assert r.returncode == 1
    assert "no answer" in r.stderr


def test_validate_all_lists_every_problem_without_side_effects(tmp_path: Path) -> None:
    missing = tmp_path / "not-there"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = run_agent(
        [
            "-o",
            "validate-all",
            "--request-dir",
            str(missing / "req"),
            "--response-dir",
            str(missing / "resp"),
            "--log-dir",
            str(blocker / "log"),
        ]
    )
    assert r.returncode == 1
    for p in (missing / "req", missing / "resp", blocker / "log"):
        assert str(p) in r.stderr
    assert not missing.exists()
    # A log dir that does not exist yet but can be created is fine.
    r = run_agent(
        [
            *["-o", "validate-all", "--request-dir", str(tmp_path)],
            *["--response-dir", str(blocker), "--log-dir", str(tmp_path / "new" / "log")],
        ]
    )
    assert r.returncode == 1
    assert str(blocker) in r.stderr and "log" not in r.stderr.replace(str(tmp_path), "")
    assert not (tmp_path / "new").exists()
    r = run_agent(["-o", "validate-all", "--fence-timeout", "x", "--poll-interval", "y"])
    assert r.returncode == 1
    assert '"x"' in r.stderr and '"y"' in r.stderr


def test_validate_all_and_monitor_succeed_on_good_settings(dirs: Dirs) -> None:
    r = run_agent(stdin=dirs.stdin(action="validate-all"))
    assert r.returncode == 0, r.stderr
    r = run_agent(["-o", "monitor", *dirs.argv()])
    assert r.returncode == 0, r.stderr


def test_monitor_creates_missing_directories_and_reports_unusable_ones(tmp_path: Path) -> None:
    d = Dirs(tmp_path, tmp_path / "a" / "req", tmp_path / "a" / "resp", tmp_path / "a" / "log")
    r = run_agent(["-o", "monitor", *d.argv()])
    assert r.returncode == 0, r.stderr
    assert d.req.is_dir() and d.resp.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    d2 = Dirs(tmp_path, blocker / "req", tmp_path / "ok", tmp_path / "log2")
    r = run_agent(["-o", "monitor", *d2.argv()])
    assert r.returncode == 1
    assert str(blocker / "req") in r.stderr


def test_missing_request_dir_fails_naming_it(tmp_path: Path) -> None:
    d = Dirs(tmp_path, tmp_path / "gone", tmp_path / "resp", tmp_path / "log")
    d.resp.mkdir()
    r = run_agent(["-o", "off", "-n", "compute-node-3", *d.argv("--fence-timeout", "2")])
    assert r.returncode == 1
    assert str(d.req) in r.stderr


def test_metadata_manpage_help_create_nothing(tmp_path: Path) -> None:
    env = clean_env(LOG_DIR=str(tmp_path / "log"), HOME=str(tmp_path))
    for args in (["-o", "metadata"], ["-o", "manpage"], ["--help"]):
        r = subprocess.run(
            [AGENT, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout
    assert list(tmp_path.iterdir()) == []
    r = run_agent(["-o", "metadata"])
    assert '<resource-agent name="fence_gfs2_recorder"' in r.stdout
    for name in ("request_dir", "response_dir", "log_dir", "fence_timeout", "poll_interval"):
        assert f'<parameter name="{name}"' in r.stdout
    # Declared for Pacemaker, but not shown.
    assert 'name="nodename"' not in r.stdout and 'name="nodeid"' not in r.stdout


def test_missing_fencing_library_is_one_clear_line(tmp_path: Path) -> None:
    env = clean_env(FENCE_AGENTS_LIB=str(tmp_path / "nowhere"))
    r = subprocess.run(
        [AGENT, "-o", "metadata"], capture_output=True, text=True, env=env, timeout=30
    )
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "fencing.py" in lines[0] and "nowhere" in lines[0], r.stderr


def test_python_m_runs_the_agent() -> None:
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "fence_gfs2_recorder", "-o", "metadata"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert '<resource-agent name="fence_gfs2_recorder"' in r.stdout


def test_version_comes_from_the_native_module() -> None:
    assert fence_gfs2_recorder.__version__ == _native.__version__
    assert fence_gfs2_recorder.__version__.count(".") == 2


def test_sigterm_ends_the_wait_with_an_interrupted_record(dirs: Dirs) -> None:
    p = subprocess.Popen(
        [AGENT, "-o", "off", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "60")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    deadline = time.monotonic() + 20
    while not dirs.jsonl() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert statuses(dirs) == ["initiated"]
    sent = time.monotonic()
    p.terminate()
    _, err = p.communicate(timeout=20)
    took = time.monotonic() - sent
    assert p.returncode == 1, err
    assert took < 5, took
    assert statuses(dirs) == ["initiated", "interrupted"]
    assert "SIGTERM" in dirs.jsonl()[-1]["details"]
    assert list(dirs.req.iterdir()) == [], "the interrupted request is withdrawn"


def test_in_process_answer_is_seen_within_milliseconds(dirs: Dirs) -> None:
    """The GIL is released while waiting: a Python thread can answer."""
    settings = _native.resolve_settings(
        request_dir=str(dirs.req),
        response_dir=str(dirs.resp),
        log_dir=str(dirs.log),
        fence_timeout="10",
        poll_interval="30",
        kubectl_path="",
    )
    with answering(dirs, success("ok"), first_only=True, take=False, poll=0.001) as renamed_at:
        result = _native.fence(settings, "off", b"compute-node-3")
        returned = time.monotonic()
    assert result.kind == "answered" and result.success
    # The poll is 30 s: only the watcher can explain an answer this soon.
    assert returned - renamed_at[0] < 5


def test_outcome_line_cannot_forge_lines_in_pacemaker_logs(dirs: Dirs) -> None:
    hostile = success("done\nFAKE: Success\x1b[0m")
    with answering(dirs, hostile, first_only=True, take=False):
        r = run_agent(["-o", "off", "-n", "compute-node-3", *dirs.argv("--fence-timeout", "5")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    assert "done\\nFAKE: Success\\x1b[0m" in r.stdout
