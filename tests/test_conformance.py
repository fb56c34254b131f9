"""The checks fence-agents runs on its own agents, run on ours.

The metadata and the manpage XML validate against metadata.rng, render
through fence2man.xsl and fence2rng.xsl, every option the agent reads is
declared, the standard delay is honoured, and the metadata (which
pacemaker-controld runs as user hacluster) works unprivileged without
creating a single file. The stylesheets and schema come with the Debian
package fence-agents.
"""

from __future__ import annotations

import ast
import difflib
import grp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cluster_env import INSTALL_VENV, ensure_installed, system_env

from conftest import DATA, Dirs, have, run_agent

RELAXNG = Path("/usr/share/cluster/relaxng")
METADATA_RNG = RELAXNG / "metadata.rng"
FENCE2MAN = RELAXNG / "fence2man.xsl"
FENCE2RNG = RELAXNG / "fence2rng.xsl"
FENCE_LIB = Path(os.environ.get("FENCE_AGENTS_LIB") or "/usr/share/fence")
AGENT_SOURCE = Path(__file__).resolve().parent.parent / "python/fence_gfs2_recorder/agent.py"
# Regenerate after an intended change of options or texts, then review the diff:
#   .venv/bin/fence_gfs2_recorder -o metadata > tests/data/metadata.golden.xml
# (or run this module with UPDATE_GOLDEN=1).
GOLDEN = DATA / "metadata.golden.xml"


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


needs_xml_tools = pytest.mark.skipif(
    not (have("xmllint") and have("xsltproc") and METADATA_RNG.exists()),
    reason="needs xmllint, xsltproc and fence-agents' relaxng files",
)
NOBODY_GROUP = next((g for g in ("nogroup", "nobody") if _group_exists(g)), "nogroup")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: installs the agent like Pacemaker runs it"
)


def agent_output(action: str) -> str:
    r = run_agent(["-o", action])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return r.stdout


def tool(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def validate(xml: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(xml)
    r = tool(["xmllint", "--noout", "--relaxng", str(METADATA_RNG), str(path)])
    assert r.returncode == 0, f"{name} does not validate:\n{r.stderr}\n{xml}"


def declared_longopts(metadata: str) -> set[str]:
    """Every --long option named in the metadata's getopt mixed strings."""
    found: set[str] = set()
    for getopt in ET.fromstring(metadata).iter("getopt"):
        found.update(re.findall(r"--[A-Za-z0-9][A-Za-z0-9-]*", getopt.get("mixed", "")))
    return found


def own_options() -> dict[str, dict[str, object]]:
    """OWN_OPTIONS as written in agent.py, read without importing it."""
    tree = ast.parse(AGENT_SOURCE.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Assign, ast.AnnAssign))
            and any(
                isinstance(t, ast.Name) and t.id == "OWN_OPTIONS"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            and node.value is not None
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, dict)
            return value
    raise AssertionError("OWN_OPTIONS not found in agent.py")


def used_longopts() -> dict[str, int]:
    """Every "--x" the agent reads from an options dict, with a line number.

    Literal uses: options["--x"], options.get("--x"), "--x" in options. Uses
    through OWN_OPTIONS (options.get("--" + OWN_OPTIONS[name]["longopt"]) in a
    helper called with the key, e.g. opt("request_dir")) resolve to the key's
    longopt.
    """
    source = AGENT_SOURCE.read_text()
    tree = ast.parse(source)
    own = own_options()
    used: dict[str, int] = {}

    def literal(node: ast.AST) -> str | None:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("--")
        ):
            return node.value
        return None

    dynamic = False
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript):
            key = literal(node.slice)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            key = literal(node.args[0])
            arg = node.args[0]
            if (
                isinstance(arg, ast.BinOp)
                and literal(arg.left) == "--"
                and "OWN_OPTIONS" in ast.unparse(arg.right)
            ):
                dynamic = True
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, (ast.In, ast.NotIn)) for op in node.ops
        ):
            key = literal(node.left)
        if key is not None:
            used.setdefault(key, node.lineno)
    if dynamic:
        # The helper's callers name OWN_OPTIONS keys as plain string arguments.
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                for arg in node.args:
                    if (
                        isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and arg.value in own
                    ):
                        used.setdefault("--" + str(own[arg.value]["longopt"]), node.lineno)
        # ... or all of them at once, for every setting the engine resolves.
        from fence_gfs2_recorder import _native

        for node in ast.walk(tree):
            if isinstance(node, ast.comprehension) and "SETTINGS" in ast.unparse(node.iter):
                for name, _env in _native.SETTINGS:
                    longopt = own[name]["longopt"] if name in own else name.replace("_", "-")
                    used.setdefault("--" + str(longopt), node.target.lineno)
    return used


def standard_device_longopts() -> set[str]:
    """Long options fencing.py gives this device (its options plus the defaults)."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(FENCE_LIB)!r})\n"
        "import fencing\n"
        "from fence_gfs2_recorder import agent\n"
        "fencing.all_opt.update(agent.OWN_OPTIONS)\n"
        "opts = list(agent.DEVICE_OPT)\n"
        "opts += fencing._add_dependency_options(opts)\n"
        "print(json.dumps(sorted('--' + fencing.all_opt[o]['longopt'] for o in opts\n"
        "                        if 'longopt' in fencing.all_opt[o])))\n"
    )
    r = subprocess.run(
        [sys.executable, "-B", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout))


# ---------------------------------------------------------------- metadata / manpage


@needs_xml_tools
@pytest.mark.parametrize("action", ["metadata", "manpage"])
def test_xml_validates_against_metadata_rng(action: str, tmp_path: Path) -> None:
    validate(agent_output(action), tmp_path, f"{action}.xml")


@needs_xml_tools
def test_manpage_renders_through_fence2man(tmp_path: Path) -> None:
    xml = agent_output("manpage")
    src = tmp_path / "manpage.xml"
    src.write_text(xml)
    r = tool(["xsltproc", str(FENCE2MAN), str(src)])
    assert r.returncode == 0, r.stderr
    troff = r.stdout
    assert troff.strip(), "fence2man.xsl produced nothing"
    assert ".TH FENCE_AGENT 8" in troff
    assert "fence_gfs2_recorder - " in troff
    for name, opt in own_options().items():
        if opt.get("help"):
            assert f"--{opt['longopt']}" in troff, f"--{opt['longopt']} not in the man page"
            assert f".B {name}" in troff, f"stdin parameter {name} not in the man page"
    for action in ("off", "reboot", "on", "status", "monitor"):
        assert f"\\fB{action} \\fP" in troff


@needs_xml_tools
def test_fence2rng_output_is_well_formed(tmp_path: Path) -> None:
    r = tool(["xsltproc", str(FENCE2RNG), "-"], stdin=agent_output("metadata"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    out = tmp_path / "fence.rng.part"
    out.write_text(r.stdout)
    check = tool(["xmllint", "--noout", str(out)])
    assert check.returncode == 0, f"{check.stderr}\n{r.stdout}"
    assert 'name="request_dir"' in r.stdout


def test_metadata_matches_the_golden_file() -> None:
    actual = agent_output("metadata")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(actual)
    expected = GOLDEN.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=str(GOLDEN.relative_to(DATA.parent.parent)),
                tofile="fence_gfs2_recorder -o metadata",
            )
        )
        pytest.fail(
            "metadata differs from the golden file; if intended, regenerate it with\n"
            "  .venv/bin/fence_gfs2_recorder -o metadata > tests/data/metadata.golden.xml\n"
            f"and review the change:\n{diff}",
            pytrace=False,
        )


def test_every_option_the_agent_reads_is_declared() -> None:
    metadata = agent_output("metadata")
    declared = declared_longopts(metadata)
    standard = standard_device_longopts()
    used = used_longopts()
    # The parser must see the obvious ones, or it found nothing at all.
    assert {"--action", "--plug", "--request-dir", "--fence-timeout"} <= set(used), used
    undeclared = {
        opt: line for opt, line in used.items() if opt not in declared and opt not in standard
    }
    assert not undeclared, (
        "options read by agent.py but neither in the metadata nor standard fencing.py "
        f"options of this device: {undeclared} (option: line)"
    )
    # Our own documented options are all in the metadata.
    for opt in own_options().values():
        if opt.get("help"):
            assert f"--{opt['longopt']}" in declared, opt["longopt"]


# ---------------------------------------------------------------- behaviour


def test_delay_is_honoured_before_the_request(dirs: Dirs, responder) -> None:
    responder()
    t = time.monotonic()
    r = run_agent(
        stdin=dirs.stdin(action="reboot", port="compute-node-3", delay="10", fence_timeout="20"),
        timeout=90,
    )
    took = time.monotonic() - t
    assert r.returncode == 0, r.stderr
    assert took >= 10, f"fenced after {took:.1f} s despite delay=10"
    assert took < 40, took
    records = dirs.jsonl()
    assert [x["status"] for x in records] == ["initiated", "completed"]
    # The request went out after the delay: the answer took well under it.
    assert records[-1]["elapsed_ms"] < 10_000


# ---------------------------------------------------------------- as installed


@needs_root
@pytest.mark.timeout(900)  # the first call builds and installs the wheel
def test_stonith_admin_reads_the_installed_metadata() -> None:
    if not have("stonith_admin") and not Path("/usr/sbin/stonith_admin").exists():
        pytest.skip("needs stonith_admin (Debian package pacemaker-cli-utils)")
    ensure_installed()
    r = subprocess.run(
        ["stonith_admin", "--metadata", "--agent", "fence_gfs2_recorder"],
        capture_output=True,
        text=True,
        env=system_env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    doc = ET.fromstring(r.stdout)
    assert doc.get("name") == "fence_gfs2_recorder"
    names = {p.get("name") for p in doc.iter("parameter")}
    assert {"request_dir", "response_dir", "log_dir", "fence_timeout"} <= names


@needs_root
@pytest.mark.timeout(900)
def test_installed_man_page_mentions_the_options() -> None:
    ensure_installed()
    page = Path("/usr/share/man/man8/fence_gfs2_recorder.8.gz")
    assert page.is_file()
    r = subprocess.run(["gzip", "-dc", str(page)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and ".TH FENCE_AGENT 8" in r.stdout
    assert "--request-dir" in r.stdout and "--fence-timeout" in r.stdout


def _new_files(roots: list[Path], marker: Path, extra: list[str]) -> list[str]:
    args = ["find", *map(str, roots), "-xdev", "-newer", str(marker), *extra, "-print"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    # find may warn about vanishing or unreadable entries; the listing is what counts.
    return [p for p in r.stdout.splitlines() if p != str(marker)]


@needs_root
@pytest.mark.timeout(900)
def test_metadata_as_nobody_creates_no_file() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    agent = ensure_installed()
    work = Path(tempfile.mkdtemp(prefix="fgr-nobody-"))
    marker = Path(tempfile.mkstemp(prefix="fgr-marker-")[1])
    try:
        work.chmod(0o777)
        time.sleep(0.05)  # keep our own set-up out of the -newer window
        pycache = FENCE_LIB / "__pycache__"
        pycache_before = sorted(os.listdir(pycache)) if pycache.is_dir() else []
        r = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                f"--regid={NOBODY_GROUP}",
                "--clear-groups",
                "env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/nonexistent",
                str(agent),
                "-o",
                "metadata",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
        assert ET.fromstring(r.stdout).get("name") == "fence_gfs2_recorder"
        assert "request_dir" in {p.get("name") for p in ET.fromstring(r.stdout).iter("parameter")}
        assert sorted(os.listdir(work)) == []
        pycache_after = sorted(os.listdir(pycache)) if pycache.is_dir() else []
        assert pycache_after == pycache_before
        # Nothing new in the library, the venv or the agent's own tree...
        assert _new_files([FENCE_LIB, INSTALL_VENV.parent], marker, []) == []
        # ...and nothing anywhere owned by nobody (others may write to /tmp meanwhile).
        roots = [Path(p) for p in ("/", "/tmp", "/var/tmp", "/dev/shm") if Path(p).is_dir()]
        assert _new_files(roots, marker, ["-user", "nobody"]) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
        marker.unlink(missing_ok=True)
