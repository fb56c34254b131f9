"""Which Python runs the packaged agent, and the refusals where none can.

The package's commands and its install-time check share one choice
(packaging/python-choice.sh): /usr/bin/python3 when it is 3.9 or newer, else
the newest python3.N >= 3.9 (RHEL 8's python39, python3.11, python3.12), and a
refusal naming every version found where only 3.6 exists. The interpreters
are the pyenv builds of this machine (/root/.pyenv/versions), put in a
directory in place of /usr/bin.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from dist_files import LIBDIR, REPO, artefacts, run, unpack_deb, unpack_rpm

PYENV = Path(os.environ.get("PYENV_VERSIONS", "/root/.pyenv/versions"))


def pyenv(version: str) -> Path:
    p = PYENV / version / "bin" / f"python{version.rsplit('.', 1)[0]}"
    assert p.exists(), f"{p} missing: the interpreter tests need pyenv's {version}"
    return p


PY36, PY39, PY311, PY312, PY313 = (
    pyenv(v) for v in ("3.6.15", "3.9.18", "3.11.7", "3.12.1", "3.13.0")
)


def bindir(tmp_path: Path, **names: Path) -> Path:
    """A directory standing in for /usr/bin: name -> interpreter symlinks."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, target in names.items():
        (d / name.replace("_", ".")).symlink_to(target)
    return d


def choose(d: Path) -> subprocess.CompletedProcess[str]:
    choice = REPO / "packaging" / "python-choice.sh"
    script = f'FGR_BINDIR={d}; . {choice}; fgr_choose_python && echo "$FGR_PYTHON"'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_system_python3_is_chosen_when_it_is_new_enough(tmp_path: Path) -> None:
    # RHEL 9 (3.9) and Debian: python3 is the distribution's, with its pexpect and pycurl.
    d = bindir(tmp_path, python3=PY39, python3_12=PY312)
    r = choose(d)
    assert (r.returncode, r.stdout.strip()) == (0, f"{d}/python3"), r.stderr


def test_rhel8_takes_the_newest_python3_n_beside_its_36(tmp_path: Path) -> None:
    d = bindir(tmp_path, python3=PY36, python3_6=PY36, python3_9=PY39, python3_11=PY311)
    r = choose(d)
    assert (r.returncode, r.stdout.strip()) == (0, f"{d}/python3.11"), r.stderr


def test_only_36_is_refused_naming_the_version_found(tmp_path: Path) -> None:
    d = bindir(tmp_path, python3=PY36, python3_6=PY36)
    r = choose(d)
    assert r.returncode == 1 and r.stdout == ""
    assert "needs Python 3.9 or newer" in r.stderr
    assert f"{d}/python3 is Python 3.6.15" in r.stderr, r.stderr
    assert "dnf install python39" in r.stderr


def scriptlets(tmp_path: Path) -> dict[str, str]:
    """The install-time checks as packed: the .deb's postinst, the RPM's %pre."""
    made = artefacts()
    control = tmp_path / "control"
    run("dpkg-deb", "-e", made.deb, control)
    pre = run("rpm", "-qp", "--queryformat", "%{PREIN}", made.rpm)
    return {"deb postinst": (control / "postinst").read_text(), "rpm %pre": pre}


@pytest.mark.parametrize("which", ["deb postinst", "rpm %pre"])
def test_packages_refuse_to_install_where_only_36_exists(tmp_path: Path, which: str) -> None:
    script = scriptlets(tmp_path)[which]
    assert script.count("FGR_BINDIR=/usr/bin\n") == 1, script
    only36 = bindir(tmp_path, python3=PY36, python3_6=PY36)
    args = ["configure"] if which == "deb postinst" else ["1"]
    r = subprocess.run(
        ["sh", "-c", script.replace("FGR_BINDIR=/usr/bin\n", f"FGR_BINDIR={only36}\n"), "x", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"{only36}/python3 is Python 3.6.15" in r.stderr, r.stderr
    assert "not installed: no Python 3.9 or newer" in r.stderr
    # The same scriptlet accepts the system as soon as python39 is there.
    (only36 / "python3.9").symlink_to(PY39)
    r = subprocess.run(
        ["sh", "-c", script.replace("FGR_BINDIR=/usr/bin\n", f"FGR_BINDIR={only36}\n"), "x", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"run under {only36}/python3.9" in r.stdout


def test_install_sh_refuses_python36_naming_it(tmp_path: Path) -> None:
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "install.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, "BASE_PYTHON": str(PY36), "INSTALL_VENV": str(tmp_path / "venv")},
        timeout=120,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert re.search(r"Python 3\.6\.15.*3\.9 or newer", r.stderr), r.stderr
    assert not (tmp_path / "venv").exists()


@pytest.fixture(scope="module")
def rpm_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_rpm(artefacts().rpm, tmp_path_factory.mktemp("rpm") / "root")


@pytest.fixture(scope="module")
def deb_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_deb(artefacts().deb, tmp_path_factory.mktemp("deb") / "root")


# -S: none of the interpreter's own site-packages either, as on RHEL 8, whose
# python39 has no pexpect or pycurl (pyenv's may have some installed).
BARE = ("-I", "-S")


def packaged(
    tree: Path, python: Path, command: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """A packaged command as its launcher runs it (-I, nothing but PATH), under
    `python` without its site-packages; fencing.py is this machine's, as
    fence-agents-common gives it."""
    return subprocess.run(
        [str(python), *BARE, str(tree / LIBDIR / "run.py"), command, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd="/",
        timeout=120,
    )


@pytest.mark.parametrize("python", [PY39, PY311, PY312], ids=lambda p: p.name)
def test_rpm_runs_under_rhel8_interpreters_with_its_vendored_pexpect_and_pycurl(
    rpm_tree: Path, deb_tree: Path, python: Path, tmp_path: Path
) -> None:
    # Without site-packages these interpreters have neither pexpect nor pycurl ...
    for module in ("pexpect", "pycurl"):
        bare = subprocess.run([str(python), *BARE, "-c", f"import {module}"], capture_output=True)
        assert bare.returncode != 0, f"{python} has {module}: this test would prove nothing"
    # ... so the .deb's tree (no vendor/) cannot run there, and the RPM's can.
    r = packaged(deb_tree, python, "fence_gfs2_recorder", "-o", "metadata")
    assert r.returncode != 0 and "No module named" in r.stderr, (r.stdout, r.stderr)
    r = packaged(rpm_tree, python, "fence_gfs2_recorder", "-o", "metadata")
    assert r.returncode == 0, r.stderr
    assert '<resource-agent name="fence_gfs2_recorder"' in r.stdout
    # A fence, as Pacemaker sends it, against the packaged responder.
    req, resp, logs = (tmp_path / n for n in ("req", "resp", "logs"))
    responder = subprocess.Popen(
        [
            *(str(python), *BARE, str(rpm_tree / LIBDIR / "run.py"), "fence-gfs2-responder"),
            *("--request-dir", str(req), "--response-dir", str(resp), "--count", "1"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert responder.stdout is not None and "test double" in responder.stdout.readline()
        stdin = (
            f"action=reboot\nport=compute-node-3\nrequest_dir={req}\n"
            f"response_dir={resp}\nlog_dir={logs}\nfence_timeout=20\nkubectl_path=\n"
        )
        r = packaged(rpm_tree, python, "fence_gfs2_recorder", stdin=stdin)
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert responder.wait(timeout=30) == 0
    finally:
        if responder.poll() is None:
            responder.kill()
            responder.wait()
        if responder.stdout is not None:
            responder.stdout.close()
    assert '"status":"completed"' in (logs / "fence-events-detailed.jsonl").read_text()
