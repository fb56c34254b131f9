"""make dist's four artefacts, read from the files: versions, the glibc and
rpm levels they need (at most RHEL 8's), their dependencies, and the same
files in the .deb and in the RPM's payload."""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from dist_files import (
    LIBDIR,
    PACKAGE,
    REPO,
    RHEL8_GLIBC,
    RHEL8_RPMLIB,
    Artefacts,
    artefacts,
    files_of,
    glibc_versions,
    run,
    unpack_deb,
    unpack_rpm,
    version,
)

# Only in one of the two: Debian's copyright and changelog; the RPM's
# pexpect and pycurl for RHEL 8's newer interpreters.
DEB_ONLY = f"usr/share/doc/{PACKAGE}/"
RPM_ONLY = f"{LIBDIR}/vendor/"
LAYOUT = {
    "usr/sbin/fence_gfs2_recorder": 0o755,
    "usr/bin/fence-gfs2-report": 0o755,
    "usr/bin/fence-gfs2-responder": 0o755,
    "usr/share/man/man8/fence_gfs2_recorder.8.gz": 0o644,
    "etc/logrotate.d/fence_gfs2_recorder": 0o644,
    "usr/share/fence_gfs2_recorder/fence-gfs2-rotate-hold": 0o755,
    "usr/share/fence_gfs2_recorder/logrotate-copytruncate.conf": 0o644,
    f"{LIBDIR}/run.py": 0o644,
    f"{LIBDIR}/python-choice.sh": 0o644,
    f"{LIBDIR}/site/fence_gfs2_recorder/agent.py": 0o644,
}


@pytest.fixture(scope="module")
def made() -> Artefacts:
    return artefacts()


@pytest.fixture(scope="module")
def trees(made: Artefacts, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("unpacked")
    return unpack_deb(made.deb, base / "deb"), unpack_rpm(made.rpm, base / "rpm")


def native(tree: Path) -> Path:
    found = sorted((tree / LIBDIR / "site").rglob("_native*.so"))
    assert len(found) == 1, found
    return found[0]


def test_wheel_is_abi3_manylinux2014_and_needs_at_most_rhel8_glibc(
    made: Artefacts, tmp_path: Path
) -> None:
    assert "manylinux_2_17_x86_64" in made.wheel.name, made.wheel.name
    with zipfile.ZipFile(made.wheel) as z:
        sos = [n for n in z.namelist() if n.endswith(".so")]
        assert sos == ["fence_gfs2_recorder/_native.abi3.so"], sos
        meta = z.read(f"fence_gfs2_recorder-{version()}.dist-info/METADATA").decode()
        so = tmp_path / "native.so"
        so.write_bytes(z.read(sos[0]))
    assert "Requires-Python: >=3.9" in meta
    needed = glibc_versions(so)
    assert needed, "no GLIBC version found: the reading is wrong, not the library"
    newest = max(needed)
    print(f"wheel: newest glibc symbol version GLIBC_{'.'.join(map(str, newest))}")
    assert newest <= (2, 17), f"manylinux2014 promises glibc 2.17, the library needs {newest}"
    assert newest <= RHEL8_GLIBC


def test_sdist_builds_the_same_version(made: Artefacts) -> None:
    with tarfile.open(made.sdist) as t:
        names = t.getnames()
    top = f"fence_gfs2_recorder-{version()}"
    for name in ("Cargo.toml", "Cargo.lock", "pyproject.toml", "src/lib.rs"):
        assert f"{top}/{name}" in names, name
    assert any(n.startswith(f"{top}/python/fence_gfs2_recorder/") for n in names)


def rpm_query(rpm: Path, *what: str) -> list[str]:
    return run("rpm", "-qp", *what, rpm).splitlines()


def test_rpm_requires_are_at_most_rhel8_level(made: Artefacts) -> None:
    requires = rpm_query(made.rpm, "--requires")
    print("RPM Requires:\n  " + "\n  ".join(requires))
    assert "fence-agents-common" in requires
    assert "python(abi) >= 3.9" in requires
    glibc, other = [], []
    for req in requires:
        if m := re.fullmatch(r"rpmlib\((\w+)\) <= [\d.-]+", req):
            assert m.group(1) in RHEL8_RPMLIB, f"{req}: unknown to RHEL 8's rpm 4.14"
        elif m := re.fullmatch(r"[\w+.-]+\.so[.\d]*\(GLIBC_([\d.]+)\)\(64bit\)", req):
            glibc.append(tuple(int(x) for x in m.group(1).split(".")))
        else:
            other.append(req)
    assert glibc, "no libc requirement: the native module's was not read"
    assert max(glibc) <= RHEL8_GLIBC, requires
    allowed = re.compile(
        r"fence-agents-common|python\(abi\) >= 3\.9|/bin/sh|logrotate"
        rf"|config\({PACKAGE}\) = {re.escape(version())}-1"
        r"|(ld-linux-x86-64|lib(c|m|gcc_s|pthread|dl|rt))\.so\.\d+\((GCC_[\d.]+)?\)\(64bit\)"
        r"|rtld\(GNU_HASH\)"
    )
    assert [r for r in other if not allowed.fullmatch(r)] == []


def test_rpm_payload_is_xz_and_names_version_and_scripts(made: Artefacts) -> None:
    fmt = "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{PAYLOADCOMPRESSOR}"
    assert rpm_query(made.rpm, "--qf", fmt) == [f"{PACKAGE} {version()} 1 x86_64 xz"]
    scripts = "\n".join(rpm_query(made.rpm, "--scripts"))
    assert "preinstall scriptlet" in scripts and "fgr_choose_python" in scripts
    config = rpm_query(made.rpm, "--configfiles")
    assert config == ["/etc/logrotate.d/fence_gfs2_recorder"]


def test_deb_depends_on_the_fencing_library_python_and_rhel8_level_libc(
    made: Artefacts, trees: tuple[Path, Path]
) -> None:
    fields = dict(
        line.split(": ", 1)
        for line in run("dpkg-deb", "-f", made.deb).splitlines()
        if ": " in line and not line.startswith(" ")
    )
    assert fields["Package"] == PACKAGE and fields["Version"] == f"{version()}-1"
    assert fields["Architecture"] == "amd64"
    depends = [d.strip() for d in fields["Depends"].split(",")]
    print(f"deb Depends: {depends}")
    assert "fence-agents-common | fence-agents" in depends
    assert "python3 (>= 3.9)" in depends
    assert {"python3-pexpect", "python3-pycurl"} <= set(depends)
    [libc] = [d for d in depends if d.startswith("libc6 ")]
    m = re.fullmatch(r"libc6 \(>= ([\d.]+)\)", libc)
    assert m, libc
    bound = tuple(int(x) for x in m.group(1).split("."))
    assert bound == max(glibc_versions(native(trees[0]))) and bound <= RHEL8_GLIBC


def test_deb_and_rpm_payload_hold_the_same_files(trees: tuple[Path, Path]) -> None:
    deb, rpm = (files_of(t) for t in trees)
    deb_common = {k: v for k, v in deb.items() if not k.startswith(DEB_ONLY)}
    rpm_common = {k: v for k, v in rpm.items() if not k.startswith(RPM_ONLY)}
    assert sorted(deb_common) == sorted(rpm_common)
    for name, path in deb_common.items():
        other = rpm_common[name]
        assert path.read_bytes() == other.read_bytes(), name
        assert path.stat().st_mode == other.stat().st_mode, name
    for name, mode in LAYOUT.items():
        assert name in deb_common, name
        assert deb_common[name].stat().st_mode & 0o7777 == mode, name
    vendored = {k.split("/")[4] for k in rpm if k.startswith(RPM_ONLY)}
    assert vendored == {"py3", "cp39", "cp311", "cp312"}
    assert any(k.startswith(DEB_ONLY) for k in deb)


def test_rpm_vendored_libraries_need_at_most_rhel8_glibc(trees: tuple[Path, Path]) -> None:
    sos = sorted((trees[1] / RPM_ONLY).rglob("*.so*"))
    assert sos
    newest = max(max(glibc_versions(so), default=(0,)) for so in sos)
    print(f"vendored pycurl: newest glibc symbol version {newest}")
    assert newest <= RHEL8_GLIBC


def lint(*argv: str | Path) -> str:
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)
    print(r.stdout, r.stderr)
    return r.stdout


def test_lintian_finds_no_error(made: Artefacts) -> None:
    out = lint("lintian", "--no-tag-display-limit", made.deb)
    assert [line for line in out.splitlines() if line.startswith("E:")] == [], out


def test_rpmlint_finds_no_error(made: Artefacts) -> None:
    out = lint("rpmlint", "-r", REPO / "packaging" / "rpm" / "rpmlintrc", made.rpm)
    assert [line for line in out.splitlines() if ": E: " in line] == [], out
