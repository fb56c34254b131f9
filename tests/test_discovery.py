"""GFS2 discovery through the installed agent, with stand-in kubectl scripts.

Discovery runs beside the fence wait: its result lands in the records when it
arrives in time, and any problem with kubectl gives [] and one warning line
in the main log, never a delayed fence. kubectl is always given its
kubeconfig: the fencer sets no HOME. monitor fails, and validate-all says
why, when discovery is on but cannot list the NnfNodeBlockStorages.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DATA, Dirs, clean_env, run_agent
from helpers import (
    NOT_CONFIGURED,
    assert_group_gone,
    config_finding_kubectl,
    final_record,
    kubeconfig,
    main_log,
    storages_on,
)

TARGET = "compute-node-3"
NAMES = ["nnf-storage-1", "nnf-storage-4", "default-wf-gfs2c-0-gfs2-0"]
FOUND_LINE = (
    'GFS2 filesystems for compute-node-3: ["nnf-storage-1","nnf-storage-4",'
    '"default-wf-gfs2c-0-gfs2-0"]'
)
LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[(?P<level>[A-Z]+)\] (?P<msg>.*)$")


def stand_in(directory: Path, body: str, name: str = "kubectl") -> Path:
    """An executable kubectl stand-in that checks how it was called first:
    a readable ``--kubeconfig`` file, then the constant arguments."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(
        "#!/bin/sh\n"
        '[ "$1" = --kubeconfig ] && [ -r "$2" ] || '
        '{ echo "no --kubeconfig FILE: $*" >&2; exit 63; }\n'
        "shift 2\n"
        '[ "$*" = "get nnfnodeblockstorages -A -o json" ] || '
        '{ echo "unexpected arguments: $*" >&2; exit 64; }\n'
        f"{body}\n"
    )
    path.chmod(0o755)
    return path


def printing_fixture(tmp_path: Path) -> Path:
    copy = tmp_path / "storages.json"
    shutil.copyfile(DATA / "nnfnodeblockstorages.json", copy)
    return stand_in(tmp_path / "bin", f"cat '{copy}'")


def main_log_entries(dirs: Dirs) -> list[tuple[str, str]]:
    """(level, message) of every main log line."""
    lines = []
    for line in main_log(dirs).splitlines():
        m = LOG_LINE.match(line)
        assert m, f"unexpected main log line: {line!r}"
        lines.append((m["level"], m["msg"]))
    return lines


def gfs2_lines(dirs: Dirs) -> list[tuple[str, str]]:
    return [
        (lv, msg) for lv, msg in main_log_entries(dirs) if msg.startswith("GFS2 filesystems for ")
    ]


def completed_record(dirs: Dirs) -> dict[str, Any]:
    """The final record of a fence whose records are initiated, then completed."""
    return final_record(dirs, ["initiated", "completed"])


@pytest.mark.parametrize("via", ["stdin", "argv"])
def test_names_found_land_in_the_final_record_and_the_main_log(
    dirs: Dirs, responder: Any, tmp_path: Path, via: str
) -> None:
    kubectl = printing_fixture(tmp_path)
    # The answer comes after discovery has finished.
    responder("--delay", "0.5")
    if via == "stdin":
        r = run_agent(
            stdin=dirs.stdin(action="off", plug=TARGET, kubectl_path=str(kubectl)),
        )
    else:
        r = run_agent(dirs.argv("-o", "off", "-n", TARGET, "--kubectl-path", str(kubectl)))
    assert r.returncode == 0, r.stderr
    assert completed_record(dirs)["gfs2_filesystems"] == NAMES
    assert gfs2_lines(dirs) == [("INFO", FOUND_LINE)]


def test_bare_name_is_looked_up_in_path_with_the_kubeconfig_of_its_variable(
    dirs: Dirs, responder: Any, tmp_path: Path
) -> None:
    copy = tmp_path / "storages.json"
    shutil.copyfile(DATA / "nnfnodeblockstorages.json", copy)
    config = kubeconfig(tmp_path / "kubeconfig")
    bin_dir = tmp_path / "bin"
    stand_in(
        bin_dir,
        f'[ "$KUBECONFIG" = "{config}" ] || {{ echo "KUBECONFIG not passed on" >&2; exit 65; }}\n'
        f"cat '{copy}'",
    )
    env = clean_env(
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        KUBECONFIG=str(config),
    )
    del env["FENCE_KUBECTL"]
    responder("--delay", "0.5")
    r = run_agent(stdin=dirs.stdin(action="off", plug=TARGET), env=env)
    assert r.returncode == 0, r.stderr
    assert completed_record(dirs)["gfs2_filesystems"] == NAMES
    assert gfs2_lines(dirs) == [("INFO", FOUND_LINE)]


def fencer_env(**extra: str) -> dict[str, str]:
    """The environment Pacemaker's fencer gives an agent: no HOME, no KUBECONFIG
    (tests/test_cluster.py reads the real one from a fence agent it runs)."""
    env = clean_env()
    for name in ("HOME", "KUBECONFIG", "USER", "LOGNAME"):
        env.pop(name, None)
    return {**env, **extra}


def test_a_nothing_found_answer_is_checked_without_home(
    dirs: Dirs, responder: Any, tmp_path: Path
) -> None:
    """Under the fencer, kubectl finds no config by itself: the agent names it."""
    data = storages_on(os.uname().nodename, tmp_path)
    kubectl = config_finding_kubectl(tmp_path / "bin", data)
    config = kubeconfig(tmp_path / "site" / "kubeconfig")
    responder("--nothing-found", TARGET)
    r = run_agent(
        stdin=dirs.stdin(
            action="off", plug=TARGET, kubectl_path=str(kubectl), kubeconfig=str(config)
        ),
        env=fencer_env(),
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    final = final_record(dirs, ["initiated", "failed"])
    assert "this rabbit" in final["details"], final
    assert final["gfs2_filesystems"] == NAMES


def test_kubectl_gets_a_home_when_the_agent_has_none(
    dirs: Dirs, responder: Any, tmp_path: Path
) -> None:
    """kubectl keeps its cache under ~/.kube: the agent's user's home, not the fencer's cwd."""
    seen = tmp_path / "home-seen"
    kubectl = stand_in(tmp_path / "bin", f"echo \"$HOME\" > '{seen}'\necho '{{\"items\": []}}'")
    responder("--delay", "0.5")
    r = run_agent(
        stdin=dirs.stdin(action="off", plug=TARGET, kubectl_path=str(kubectl)),
        env=fencer_env(KUBECONFIG=str(DATA / "kubeconfig")),
    )
    assert r.returncode == 0, r.stderr
    assert seen.read_text().strip() == pwd.getpwuid(os.geteuid()).pw_dir


def test_the_default_kubeconfig_is_the_users_from_the_password_database(
    dirs: Dirs, tmp_path: Path
) -> None:
    """Not HOME's: the agent names the same file from a shell and under the fencer."""
    data = storages_on(os.uname().nodename, tmp_path)
    kubectl = config_finding_kubectl(tmp_path / "bin", data)
    home = tmp_path / "home"
    kubeconfig(home / ".kube" / "config")
    expected = Path(pwd.getpwuid(os.geteuid()).pw_dir) / ".kube" / "config"
    env = fencer_env(HOME=str(home))
    r = run_agent(["-o", "monitor", *dirs.argv("--kubectl-path", str(kubectl))], env=env)
    if expected.is_file():
        assert r.returncode == 0, r.stderr
        assert f"with kubeconfig {expected}" in r.stdout
    else:
        assert r.returncode == 1, r.stdout
        assert f"cannot list NnfNodeBlockStorages (kubeconfig {expected} does not exist)" in (
            r.stderr
        )
    r = run_agent(["-o", "validate-all", *dirs.argv("--kubectl-path", str(kubectl))], env=env)
    assert f"kubeconfig={expected} (from default: ~/.kube/config of uid {os.geteuid()}" in (
        r.stdout
    )


def test_monitor_fails_and_validate_all_says_why_when_discovery_cannot_list(
    dirs: Dirs, tmp_path: Path
) -> None:
    data = storages_on(os.uname().nodename, tmp_path)
    kubectl = config_finding_kubectl(tmp_path / "bin", data)
    config = kubeconfig(tmp_path / "kubeconfig")
    gone = tmp_path / "no-such-kubeconfig"
    refused = stand_in(tmp_path / "refused", f"echo '{NOT_CONFIGURED}' >&2; exit 1")
    cases = {
        "missing kubeconfig": (kubectl, gone, f"kubeconfig {gone} does not exist"),
        "kubectl cannot reach the cluster": (refused, config, NOT_CONFIGURED),
        "kubectl missing": (tmp_path / "nowhere" / "kubectl", config, "kubectl not found"),
    }
    for case, (k, c, why) in cases.items():
        argv = dirs.argv("--kubectl-path", str(k), "--kubeconfig", str(c))
        for action in ("monitor", "validate-all"):
            r = run_agent(["-o", action, *argv], env=fencer_env())
            assert r.returncode == 1, (case, action, r.stdout, r.stderr)
            failed = [line for line in r.stderr.splitlines() if "Failed: " in line]
            assert len(failed) == 1, (case, action, r.stderr)
            assert "GFS2 discovery is on but cannot list NnfNodeBlockStorages" in failed[0]
            assert why in failed[0], (case, failed)
            assert "kubectl_path=off to switch discovery off" in failed[0]
    # Listing works: both succeed and say with what.
    argv = dirs.argv("--kubectl-path", str(kubectl), "--kubeconfig", str(config))
    for action in ("monitor", "validate-all"):
        r = run_agent(["-o", action, *argv], env=fencer_env())
        assert r.returncode == 0, (action, r.stderr)
        assert f"GFS2 discovery: {kubectl} lists NnfNodeBlockStorages with kubeconfig {config}" in (
            r.stdout
        )
    # Switched off on purpose: a warning, not a failure.
    for action, off in (("monitor", ""), ("validate-all", ""), ("monitor", "off")):
        r = run_agent(["-o", action, *dirs.argv(f"--kubectl-path={off}")], env=fencer_env())
        assert r.returncode == 0, (action, r.stderr)
        assert "Warning: GFS2 discovery is switched off (kubectl_path is empty or off)" in (
            r.stderr
        )


PROBLEMS = {
    # name: (stand-in body or None for a missing kubectl, extra environment,
    #        responder delay, what the warning says). fencing.py takes whole
    #        seconds only on stdin, so a shorter time limit comes from the environment.
    "sleeps": ("echo $$ > '{pid}'\nsleep 30\ncat '{data}'", {"FENCE_DISCOVERY_TIMEOUT": "0.5"},
               "1.5", "did not answer within 0.5 s"),
    "fails": (
        "echo 'error: You must be logged in to the server (Unauthorized)' >&2\n"
        "echo 'more detail' >&2\nexit 1",
        {},
        "0.5",
        "exited with status 1: error: You must be logged in to the server (Unauthorized)",
    ),
    "prints junk": ("echo 'No resources found'", {}, "0.5", "the kubectl output is not JSON"),
    "is missing": (None, {}, "0.5", "kubectl not found: "),
}  # fmt: skip


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_kubectl_problems_give_an_empty_list_and_one_warning(
    dirs: Dirs, responder: Any, tmp_path: Path, problem: str
) -> None:
    body, extra, delay, reason = PROBLEMS[problem]
    pid_file = tmp_path / "kubectl.pid"
    if body is None:
        kubectl = tmp_path / "bin" / "kubectl"
    else:
        data = DATA / "nnfnodeblockstorages.json"
        kubectl = stand_in(tmp_path / "bin", body.format(pid=pid_file, data=data))
    responder("--delay", delay)
    r = run_agent(
        stdin=dirs.stdin(action="off", plug=TARGET, kubectl_path=str(kubectl)),
        env=clean_env(**extra),
    )
    assert r.returncode == 0, r.stderr
    records = dirs.jsonl()
    assert [rec["status"] for rec in records] == ["initiated", "completed"]
    assert all(rec["gfs2_filesystems"] == [] for rec in records), records
    lines = gfs2_lines(dirs)
    assert len(lines) == 1, lines
    level, msg = lines[0]
    assert level == "WARNING"
    assert msg.startswith(f"GFS2 filesystems for {TARGET}: [] (discovery failed: ")
    assert reason in msg
    if problem == "is missing":
        assert str(kubectl) in msg
    if problem == "sleeps":
        # Killed at its time limit with its whole process group (the sleep too).
        assert_group_gone(int(pid_file.read_text()))


def test_switched_off_discovery_says_so_once(dirs: Dirs, responder: Any) -> None:
    responder("--delay", "0.5")
    r = run_agent(stdin=dirs.stdin(action="off", plug=TARGET))
    assert r.returncode == 0, r.stderr
    assert all(rec["gfs2_filesystems"] == [] for rec in dirs.jsonl())
    assert gfs2_lines(dirs) == [
        (
            "WARNING",
            f"GFS2 filesystems for {TARGET}: [] (discovery failed: "
            "GFS2 discovery is switched off (kubectl_path is empty or off))",
        )
    ]


def test_slow_kubectl_never_delays_the_fence(dirs: Dirs, responder: Any, tmp_path: Path) -> None:
    pid_file = tmp_path / "kubectl.pid"
    done = tmp_path / "kubectl.done"
    kubectl = stand_in(
        tmp_path / "bin",
        f"echo $$ > '{pid_file}'\nsleep 1.5\ntouch '{done}'\n"
        f"cat '{DATA / 'nnfnodeblockstorages.json'}'",
    )
    responder()
    started = time.monotonic()
    r = run_agent(stdin=dirs.stdin(action="off", plug=TARGET, kubectl_path=str(kubectl)))
    assert r.returncode == 0, r.stderr
    final = completed_record(dirs)
    assert final["elapsed_ms"] < 1400, final
    assert final["gfs2_filesystems"] == []
    # The agent did not leave kubectl running behind it.
    if pid_file.exists():
        assert_group_gone(int(pid_file.read_text()))
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))
    assert not done.exists(), "the stand-in kubectl ran to its end after the agent exited"
