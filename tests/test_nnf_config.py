"""NNF's shared config.py through the installed agent: read without running
it, refused unless only root can change it, lower than options and the
environment; and the warnings that nnf-sos is not on the other side."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sandbox

from conftest import BIN, Dirs, clean_env, run_agent
from fence_gfs2_recorder import _native

# The shape of nnf-sos's pkg/fence/config.py (current form).
NNF_SOS_FORM = """\
\"\"\"Fence recorder paths, shared with nnf-sos.\"\"\"

import os

_DEFAULT_REQUEST_DIR = "{req}"
_DEFAULT_RESPONSE_DIR = "{resp}"

REQUEST_DIR = os.environ.get("NNF_FENCE_REQUEST_DIR", _DEFAULT_REQUEST_DIR)
RESPONSE_DIR = os.environ.get("NNF_FENCE_RESPONSE_DIR", _DEFAULT_RESPONSE_DIR)
"""

# The fork's form: plain assignments.
PLAIN_FORM = 'REQUEST_DIR = "{req}"\nRESPONSE_DIR = "{resp}"\n'

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root's files are read")


def write_config(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def origins(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        key, _, rest = line.partition("=")
        if key in ("request_dir", "response_dir", "log_dir", "nnf_config"):
            found[key] = rest
    return found


@needs_root
@pytest.mark.parametrize("form", [NNF_SOS_FORM, PLAIN_FORM], ids=["nnf-sos", "plain"])
def test_the_shared_config_names_the_directories_of_a_fence(
    dirs: Dirs, responder, tmp_path: Path, form: str
) -> None:
    config = write_config(tmp_path / "etc" / "config.py", form.format(req=dirs.req, resp=dirs.resp))
    responder()
    args = ["-o", "off", "-n", "compute-node-3", "--log-dir", str(dirs.log)]
    r = run_agent([*args, "--nnf-config", str(config), "--fence-timeout", "5"])
    assert r.returncode == 0, r.stderr
    assert len(dirs.responses()) == 1
    # The same through the environment variable.
    env = clean_env(NNF_FENCE_CONFIG=str(config))
    r = run_agent(["-o", "validate-all", "--log-dir", str(dirs.log)], env=env)
    assert r.returncode == 0, r.stderr
    found = origins(r.stdout)
    assert found["request_dir"].startswith(f"{dirs.req} (from REQUEST_DIR in {config} line ")
    assert found["nnf_config"] == f"{config} (from environment variable NNF_FENCE_CONFIG)"


@needs_root
def test_option_beats_environment_beats_shared_config_beats_default(
    dirs: Dirs, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "etc" / "config.py",
        PLAIN_FORM.format(req=tmp_path / "cfg-req", resp=tmp_path / "cfg-resp"),
    )
    env = clean_env(
        NNF_FENCE_CONFIG=str(config),
        NNF_FENCE_RESPONSE_DIR=str(tmp_path / "env-resp"),
    )
    r = run_agent(["-o", "validate-all", "--request-dir", str(dirs.req)], env=env)
    found = origins(r.stdout)
    assert found["request_dir"] == f"{dirs.req} (from option request_dir)"
    assert found["response_dir"] == (
        f"{tmp_path / 'env-resp'} (from environment variable NNF_FENCE_RESPONSE_DIR)"
    )
    assert found["log_dir"] == "/var/log/gfs2-fencing (from default)"
    env = clean_env(NNF_FENCE_CONFIG=str(config))
    found = origins(run_agent(["-o", "validate-all"], env=env).stdout)
    assert (
        found["response_dir"] == f"{tmp_path / 'cfg-resp'} (from RESPONSE_DIR in {config} line 2)"
    )
    env = clean_env(NNF_FENCE_CONFIG="")
    found = origins(run_agent(["-o", "validate-all"], env=env).stdout)
    assert found["request_dir"] == "/localdisk/fence-recorder/requests (from default)"
    assert found["nnf_config"] == " (none: environment variable NNF_FENCE_CONFIG is empty)"


@needs_root
@pytest.mark.parametrize("what", ["file", "directory", "owner"])
def test_a_config_others_could_change_is_refused_naming_it(
    dirs: Dirs, tmp_path: Path, what: str
) -> None:
    config = write_config(
        tmp_path / "etc" / "config.py", PLAIN_FORM.format(req=dirs.req, resp=dirs.resp)
    )
    if what == "file":
        config.chmod(0o666)
    elif what == "directory":
        config.parent.chmod(0o775)
    else:
        os.chown(config, 65534, 65534)
    for action in ("off", "validate-all"):
        r = run_agent(
            ["-o", action, "-n", "compute-node-3", "--log-dir", str(dirs.log)],
            env=clean_env(NNF_FENCE_CONFIG=str(config)),
        )
        assert r.returncode == 1, r.stdout
        assert str(config) in r.stderr and "refused" in r.stderr, r.stderr
    assert list(dirs.req.iterdir()) == [], "no request without trusted directories"


@needs_root
def test_the_config_is_read_never_run(dirs: Dirs, tmp_path: Path) -> None:
    marker = tmp_path / "it-ran"
    text = (
        "import subprocess\n"
        f"open({str(marker)!r}, 'w').write('x')\n"
        f"subprocess.run(['touch', {str(marker)!r}])\n"
        + PLAIN_FORM.format(req=dirs.req, resp=dirs.resp)
    )
    config = write_config(tmp_path / "etc" / "config.py", text)
    r = run_agent(["-o", "validate-all", "--log-dir", str(dirs.log), "--nnf-config", str(config)])
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert "nnf_config: line 1 ignored: import subprocess" in r.stdout
    assert "nnf_config: line 3 ignored: subprocess.run(" in r.stdout
    # A statement that might change a directory refuses the file.
    config.write_text(text + f"if True:\n    REQUEST_DIR = {str(tmp_path)!r}\n")
    r = run_agent(["-o", "validate-all", "--log-dir", str(dirs.log), "--nnf-config", str(config)])
    assert r.returncode == 1
    assert str(config) in r.stderr and "line 7" in r.stderr and "REQUEST_DIR" in r.stderr


def test_a_named_config_that_is_missing_is_an_error(dirs: Dirs, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "config.py"
    r = run_agent(["-o", "monitor", *dirs.argv("--nnf-config", str(missing))])
    assert r.returncode == 1
    assert str(missing) in r.stderr and "does not exist" in r.stderr


def test_old_unanswered_requests_are_warned_about_naming_the_directory(dirs: Dirs) -> None:
    old = dirs.req / f"{uuid.uuid4()}.json"
    old.write_text("{}")
    young = dirs.req / f"{uuid.uuid4()}.json"
    young.write_text("{}")
    past = time.time() - 40  # more than 3 x fence_timeout (10 s), less than stale_age
    os.utime(old, (past, past))
    args = dirs.argv("--fence-timeout", "10", "--nnf-config", "")
    for action in ("monitor", "validate-all"):
        r = run_agent(["-o", action, *args])
        assert r.returncode == 0, r.stderr
        assert f"1 fence request(s) in {dirs.req} unanswered for more than 30 s" in r.stderr
        assert old.name in r.stderr
    assert old.exists() and young.exists(), "monitor only removes requests older than stale_age"
    os.utime(old, None)
    r = run_agent(["-o", "monitor", *args])
    assert "unanswered" not in r.stderr


def test_another_nnf_default_directory_beside_the_configured_one(tmp_path: Path) -> None:
    sandbox.require()
    box = sandbox.Sandbox(tmp_path, ["/localdisk", "/var/log/gfs2-fencing"])
    env = clean_env(PATH=f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin")
    # The agent's defaults, as current nnf-sos; nnf-sos's earlier defaults too.
    r = box.run("fence_gfs2_recorder -o monitor", env)
    # Nothing to warn about but discovery, which the tests switch off.
    others = [x for x in r.stderr.splitlines() if "GFS2 discovery is switched off" not in x]
    assert r.returncode == 0 and others == [], r.stderr
    assert box.host("/localdisk/fence-recorder/requests").is_dir()
    box.host("/localdisk/gfs2-fencing/requests").mkdir(parents=True)
    for action in ("monitor", "validate-all"):
        r = box.run(f"fence_gfs2_recorder -o {action}", env)
        assert r.returncode == 0, r.stderr
        assert (
            "/localdisk/gfs2-fencing/requests exists beside the configured request directory "
            "/localdisk/fence-recorder/requests"
        ) in r.stderr


# Every form the reader takes, and some it notes: read through each CPython
# the agent supports, the result must be the same (the syntax tree's shapes
# differ between versions; what the reader makes of them must not).
ALL_FORMS = '''\
"""Docstring naming REQUEST_DIR."""
import os
import sys

_BASE = "/cfg" '/base'
_RAW = r"\\x"  # a raw string keeps its backslash
REQUEST_DIR: str = os.environ.get("FGR_UNSET_VARIABLE", _BASE)
RESPONSE_DIR = os.getenv("FGR_UNSET_VARIABLE", '/cfg/\\x72esp')
if sys.version_info >= (3, 9):
    X = [n for n in range(3)]
match = 1
'''

READ_CONFIG = """\
import sys
sys.path.insert(0, sys.argv[1])
from fence_gfs2_recorder import _native
s = _native.resolve_settings(nnf_config=sys.argv[2], log_dir="/tmp")
print(repr((s.request_dir, s.response_dir, s.origins[:2], s.nnf_config_notes)))
"""


def interpreter(version: str) -> str | None:
    """A working python<version> on this machine: on PATH, or built by pyenv
    (whose shims on PATH may not run a version that is not selected)."""
    name = f"python{version}"
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [shutil.which(name), *map(str, sorted(root.glob(f"versions/{version}.*/bin/{name}")))]
    for candidate in filter(None, found):
        probe = subprocess.run([candidate, "-c", "pass"], capture_output=True)
        if probe.returncode == 0:
            return candidate
    return None


@needs_root
@pytest.mark.parametrize("version", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_every_supported_python_reads_the_config_alike(tmp_path: Path, version: str) -> None:
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine")
    config = write_config(tmp_path / "etc" / "config.py", ALL_FORMS)
    package = Path(_native.__file__).resolve().parent.parent
    env = clean_env()
    here = subprocess.run(
        [sys.executable, "-I", "-S", "-c", READ_CONFIG, str(package), str(config)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "/cfg/base" in here and "/cfg/resp" in here, here
    assert "line 3 ignored: import sys" in here and "line 10 ignored: X = " in here, here
    assert "line 11 ignored: match = 1" in here, here
    there = subprocess.run(
        [python, "-I", "-S", "-c", READ_CONFIG, str(package), str(config)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert there.returncode == 0, there.stderr
    assert there.stdout == here
