"""The artefacts of make dist, found and unpacked for the tests in this directory.

tests/conftest.py keeps this directory out of a plain ``pytest`` (make test):
make dist-check runs these tests by name, after make dist.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
PACKAGE = "fence-agents-gfs2-recorder"
LIBDIR = "usr/lib/fence_gfs2_recorder"
# RHEL 8: glibc 2.28 and rpm 4.14, the oldest targets.
RHEL8_GLIBC = (2, 28)
# What rpm 4.14 (RHEL 8) knows of rpmlib(...) requirements; rpmbuild adds
# these on its own, and a newer one (zstd payload, caret versions, sysusers)
# would make RHEL 8's rpm refuse the package.
RHEL8_RPMLIB = {
    "CompressedFileNames",
    "FileDigests",
    "PayloadFilesHavePrefix",
    "PayloadIsXz",
    "PayloadIsBzip2",
    "PayloadIsLzma",
    "PartialHardlinkSets",
    "VersionedDependencies",
    "ExplicitPackageProvide",
    "HeaderLoadSortsTags",
    "ScriptletInterpreterArgs",
    "FileCaps",
    "RichDependencies",
    "TildeInVersions",
    "LargeFiles",
    "BuiltinLuaScripts",
    "ConcurrentAccess",
}


def version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        return str(tomllib.load(f)["package"]["version"])


def one(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected one {pattern} in {DIST} (make dist), found {found}"
    return found[0]


@dataclass(frozen=True)
class Artefacts:
    wheel: Path
    sdist: Path
    deb: Path
    rpm: Path


def artefacts() -> Artefacts:
    v = version()
    return Artefacts(
        wheel=one(f"fence_gfs2_recorder-{v}-cp39-abi3-*.whl"),
        sdist=one(f"fence_gfs2_recorder-{v}.tar.gz"),
        deb=one(f"{PACKAGE}_{v}-1_amd64.deb"),
        rpm=one(f"{PACKAGE}-{v}-1.x86_64.rpm"),
    )


def run(*argv: str | Path, cwd: Path | None = None, stdin: bytes | None = None) -> str:
    r = subprocess.run(
        [str(a) for a in argv], capture_output=True, cwd=cwd, input=stdin, timeout=300
    )
    assert r.returncode == 0, f"{argv} -> {r.returncode}\n{r.stdout!r}\n{r.stderr!r}"
    return r.stdout.decode(errors="replace")


def unpack_deb(deb: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    run("dpkg-deb", "-x", deb, into)
    return into


def unpack_rpm(rpm: Path, into: Path) -> Path:
    """The RPM's payload, as rpm2cpio gives it, unpacked by cpio."""
    into.mkdir(parents=True)
    payload = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    run("cpio", "-idm", "--quiet", "--no-absolute-filenames", cwd=into, stdin=payload)
    return into


def files_of(root: Path) -> dict[str, Path]:
    """Every file and symlink under root, by its path relative to root."""
    return {
        str(p.relative_to(root)): p
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def glibc_versions(elf: Path) -> list[tuple[int, ...]]:
    """The GLIBC_x.y versions an ELF file needs (its version-needs section, as
    readelf prints it)."""
    out = run("readelf", "-W", "--version-info", elf)
    needed = re.findall(r"Name: GLIBC_([0-9.]+)\s", out)
    return sorted({tuple(int(x) for x in v.split(".")) for v in needed})
