"""Shared fixtures: the installed agent and responder, run as processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
AGENT = str(BIN / "fence_gfs2_recorder")
RESPONDER = str(BIN / "fence-gfs2-responder")
if os.environ.get("FGR_INSTALLED") == "1":
    # The package's commands (the Debian roots of make dist-check).
    AGENT = "/usr/sbin/fence_gfs2_recorder"
    RESPONDER = "/usr/bin/fence-gfs2-responder"
DATA = Path(__file__).parent / "data"
# tests/packaging/ reads make dist's artefacts and holds make dist-check's
# proofs; that target names it, and a plain pytest (make test) leaves it out.
collect_ignore = ["packaging"]


@dataclass
class Dirs:
    root: Path
    req: Path
    resp: Path
    log: Path

    def argv(self, *extra: str) -> list[str]:
        return [
            "--request-dir",
            str(self.req),
            "--response-dir",
            str(self.resp),
            "--log-dir",
            str(self.log),
            *extra,
        ]

    def stdin(self, **extra: str) -> str:
        fields = {
            "request_dir": str(self.req),
            "response_dir": str(self.resp),
            "log_dir": str(self.log),
            **extra,
        }
        return "".join(f"{k}={v}\n" for k, v in fields.items())

    def jsonl(self) -> list[dict[str, Any]]:
        path = self.log / "fence-events-detailed.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def responses(self) -> list[Path]:
        return sorted(self.resp.glob("*.json"))


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    d = Dirs(tmp_path, tmp_path / "requests", tmp_path / "responses", tmp_path / "logs")
    for p in (d.req, d.resp):
        p.mkdir()
    return d


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any of our variables (tests set what they need)."""
    from fence_gfs2_recorder import _native

    # Every variable the engine reads, and kubectl's, which discovery runs.
    ours = {*_native.ENVIRONMENT, "KUBECONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    # No kubectl unless a test provides one: discovery then says so and goes on.
    env["FENCE_KUBECTL"] = ""
    # The kubeconfig a test's stand-in kubectl is given (the default is the
    # real ~/.kube/config of the user running the tests).
    env["KUBECONFIG"] = str(DATA / "kubeconfig")
    env.update(extra)
    return env


def run_agent(
    args: list[str] | None = None,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Runs the installed agent: argv as a person types it, or stdin as Pacemaker sends it."""
    return subprocess.run(
        [AGENT, *(args or [])],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=timeout,
    )


class Responder:
    def __init__(self, dirs: Dirs, *args: str) -> None:
        self.proc = subprocess.Popen(
            [RESPONDER, "--request-dir", str(dirs.req), "--response-dir", str(dirs.resp), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        # The banner is printed once the responder is about to watch.
        self.banner = self.proc.stdout.readline()
        time.sleep(0.1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out


@pytest.fixture
def responder(dirs: Dirs) -> Iterator[Any]:
    started: list[Responder] = []

    def start(*args: str) -> Responder:
        r = Responder(dirs, *args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None
