"""A private view of the file system in which commands with absolute paths
(/localdisk/..., /var/log/gfs2-fencing, /etc/...) run as written, while
every such path is a temp directory of the test.

The commands run as root in a mount namespace of their own, chrooted into
an overlay of / whose writes go to a tmpfs; the named paths are bind mounts
of temp directories, visible to the test from outside. Nothing on the host
changes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest


def available() -> str | None:
    """Why a sandbox cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "sandboxes need root (mount namespaces)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"no mount namespaces here: {probe.stderr.strip()}"
    return None


def require() -> None:
    why = available()
    if why is not None:
        pytest.skip(why)


class Sandbox:
    """Maps absolute paths to temp dirs; runs bash commands as written."""

    def __init__(self, tmp_path: Path, mapped: list[str]) -> None:
        self.tmp = tmp_path
        self.scratch = tmp_path / ".sandbox"
        self.scratch.mkdir()
        self.binds: dict[str, Path] = {}
        for target in mapped:
            source = tmp_path / "site" / target.strip("/").replace("/", "_")
            source.mkdir(parents=True)
            source.chmod(0o755)
            self.binds[target] = source

    def host(self, path: str) -> Path:
        """Where `path` (inside the sandbox) is on the host."""
        for target, source in sorted(self.binds.items(), key=lambda x: -len(x[0])):
            if path == target or path.startswith(target + "/"):
                return source / path[len(target) :].lstrip("/")
        raise KeyError(path)

    def script(self, command: str) -> str:
        t = shlex.quote(str(self.scratch))
        lines = [
            "set -e",
            f"T={t}",
            "mount -t tmpfs none $T",
            "mkdir $T/u $T/w $T/m",
            "mount -t overlay overlay -o lowerdir=/,upperdir=$T/u,workdir=$T/w $T/m",
            "for d in proc sys dev; do mount --rbind /$d $T/m/$d; done",
            # The test's own temp tree stays live inside.
            f"mkdir -p $T/m{shlex.quote(str(self.tmp))}",
            f"mount --bind {shlex.quote(str(self.tmp))} $T/m{shlex.quote(str(self.tmp))}",
        ]
        for target, source in self.binds.items():
            lines.append(f"mkdir -p $T/m{shlex.quote(target)}")
            lines.append(f"mount --bind {shlex.quote(str(source))} $T/m{shlex.quote(target)}")
        lines.append(f"cd /; exec chroot $T/m /bin/bash -c {shlex.quote(command)}")
        return "\n".join(lines)

    def argv(self, command: str) -> list[str]:
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            self.script(command),
        ]

    def run(
        self, command: str, env: dict[str, str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command),
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    def popen(self, command: str, env: dict[str, str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
