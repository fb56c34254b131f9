"""Load: many agents at once against one responder, many writers of one
journal, and spool directories holding a hundred thousand files.

Bounds are generous: the machine is small and shared. Each test prints its
measured figures (run with -s to see them); docs/RELIABILITY.md keeps the
last ones, and scripts/load.sh runs heavier versions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Dirs, clean_env, run_agent
from helpers import (
    DETAILED_LOG,
    MAIN_LOG,
    READABLE_LOG,
    answering,
    lines_of,
    read_logs,
    records_of,
    success,
)


def size(name: str, default: int) -> int:
    """A load size; scripts/load.sh raises them through the environment."""
    return int(os.environ.get(name, default))


AGENTS = size("LOAD_AGENTS", 64)
SAME_TARGET_AGENTS = size("LOAD_SAME_TARGET_AGENTS", 8)
JOURNAL_PROCS = size("LOAD_JOURNAL_PROCS", 32)
JOURNAL_PER_PROC = size("LOAD_JOURNAL_PER_PROC", 313)
OLD_RESPONSES = size("LOAD_OLD_RESPONSES", 100_000)
STALE_REQUESTS = size("LOAD_STALE_REQUESTS", 10_000)
OLD_TARGETS = 1_000
# Time bounds grow with the sizes (generous: a small, shared machine).
SCALE = max(1.0, AGENTS / 64, OLD_RESPONSES / 100_000)


def fence_all(d: Dirs, targets: list[str], timeout: str = "50") -> list[tuple[int, str, str]]:
    """Starts one agent per target at once; returns (exit, stdout, stderr) of each."""
    procs = [
        subprocess.Popen(
            [AGENT, "-o", "off", "-n", t, *d.argv("--fence-timeout", timeout)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for t in targets
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120 * SCALE)
        results.append((p.returncode, out, err))
    return results


def timed_run(label: str, argv: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs the agent once; prints and returns how long it took."""
    started = time.monotonic()
    r = run_agent(argv)
    took = time.monotonic() - started
    print(f"{label}: {took:.2f} s")
    return r, took


def check_exchanges(d: Dirs, targets: list[str]) -> None:
    """One initiated and one completed record per agent, each with its own
    request and its own response file; every line of every log whole and in
    its format."""
    logs = read_logs(d.log)
    records = logs.detailed
    assert len(records) == 2 * len(targets)
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_id[r["request_id"]].append(r)
    assert len(by_id) == len(targets), "every agent has its own request_id"
    assert Counter(r["target_node"] for r in records if r["status"] == "completed") == Counter(
        targets
    )
    for rid, pair in by_id.items():
        assert [r["status"] for r in pair] == ["initiated", "completed"], pair
        assert pair[0]["target_node"] == pair[1]["target_node"]
        response = Path(pair[1]["response_file"])
        assert response == d.resp / f"{rid}.json", "its own response file"
        body = json.loads(response.read_text())
        assert body["request_id"] == rid and body["target_node"] == pair[0]["target_node"]
        assert body["success"] is True
    assert len(d.responses()) == len(targets)
    assert len(logs.readable) == 2 * len(targets)
    # requested, written, GFS2, initiated, answer, completed
    assert len(logs.main) == 6 * len(targets), logs.main
    assert list(d.req.iterdir()) == [], "every request was taken"
    leftovers = [
        p
        for x in (d.req, d.resp, d.log)
        for p in x.iterdir()
        # The journal's rotation lock is meant to stay; temp files are not.
        if p.name[0] == "." and p.name != ".fence-events.lock"
    ]
    assert leftovers == [], leftovers


def test_64_agents_fence_64_targets_at_once(dirs: Dirs, responder: Any) -> None:
    responder("--quiet")
    targets = [f"compute-node-{i}" for i in range(AGENTS)]
    started = time.monotonic()
    results = fence_all(dirs, targets, timeout=str(int(50 * SCALE)))
    took = time.monotonic() - started
    print(f"{AGENTS} agents, {AGENTS} targets: {took:.1f} s wall")
    for (code, out, err), t in zip(results, targets):
        assert code == 0, (t, err)
        assert out.startswith(f"Success: {t} fenced"), out
    check_exchanges(dirs, targets)
    assert took < 100 * SCALE, took


def test_8_agents_fence_the_same_target_at_once(dirs: Dirs, responder: Any) -> None:
    responder("--quiet")
    targets = ["compute-node-3"] * SAME_TARGET_AGENTS
    started = time.monotonic()
    results = fence_all(dirs, targets)
    took = time.monotonic() - started
    print(f"{SAME_TARGET_AGENTS} agents, one target: {took:.1f} s wall")
    for code, out, err in results:
        assert code == 0, err
        assert out.startswith("Success: compute-node-3 fenced"), out
    check_exchanges(dirs, targets)


JOURNAL_WRITER = """
import sys
from fence_gfs2_recorder import _native
req, resp, log, proc, count = sys.argv[1:]
s = _native.resolve_settings(request_dir=req, response_dir=resp, log_dir=log, kubectl_path="")
for i in range(int(count)):
    r = _native.unfence(s, f"node-{proc}-{i}".encode(), "rabbit-load")
    assert r.kind == "nothing_to_remove", r.message
"""


def test_32_processes_write_10000_journal_records_without_a_torn_line(dirs: Dirs) -> None:
    procs, per = JOURNAL_PROCS, JOURNAL_PER_PROC
    started = time.monotonic()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                JOURNAL_WRITER,
                *(str(dirs.req), str(dirs.resp), str(dirs.log), str(p), str(per)),
            ],
            env=clean_env(),
        )
        for p in range(procs)
    ]
    for w in writers:
        assert w.wait(timeout=120 * SCALE) == 0
    took = time.monotonic() - started
    total = procs * per
    print(f"{total} events from {procs} processes: {took:.1f} s, {total / took:.0f} events/s")
    expected = {f"node-{p}-{i}" for p in range(procs) for i in range(per)}

    records = records_of(dirs.log / DETAILED_LOG)
    assert len(records) == total
    assert {r["target_node"] for r in records} == expected
    assert {r["status"] for r in records} == {"already_unfenced"}

    readable = lines_of(dirs.log / READABLE_LOG)
    assert len(readable) == total
    pattern = re.compile(
        r"^\[[\d :-]{19}\] ACTION=on TARGET=(node-\d+-\d+) GFS2=\[\] "
        r"STATUS=already_unfenced DETAILS=no fenced record for (node-\d+-\d+) in \S+$"
    )
    seen = []
    for line in readable:
        m = pattern.match(line)
        assert m and m[1] == m[2], line
        seen.append(m[1])
    assert Counter(seen) == Counter(expected)

    main = lines_of(dirs.log / MAIN_LOG)
    assert len(main) == 2 * total
    main_pattern = re.compile(
        r"^\[[\d :-]{19}\] \[INFO\] (?:Fence action requested: on for target: (node-\d+-\d+)|"
        r"Recorded fence event: action=on, target=(node-\d+-\d+), status=already_unfenced)$"
    )
    counts: Counter[str] = Counter()
    for line in main:
        m = main_pattern.match(line)
        assert m, line
        counts[m[1] or m[2]] += 1
    assert counts == Counter({t: 2 for t in expected})


# --------------------------------------------------------------------------
# huge spool directories


def write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dirs]:
    root = tmp_path_factory.mktemp("big")
    d = Dirs(root, root / "requests", root / "responses", root / "logs")
    d.req.mkdir()
    d.resp.mkdir()
    started = time.monotonic()
    old = time.time() - 86_400
    for i in range(OLD_RESPONSES):
        rid = str(uuid.uuid4())
        body = {
            "request_id": rid,
            "target_node": f"old-node-{i % OLD_TARGETS}",
            "success": True,
            "message": "fenced long ago",
            "action_performed": "off",
        }
        write_file(d.resp / f"{rid}.json", json.dumps(body).encode())
    for _ in range(STALE_REQUESTS):
        rid = str(uuid.uuid4())
        path = d.req / f"{rid}.json"
        write_file(path, json.dumps({"request_id": rid, "target_node": "gone"}).encode())
        os.utime(path, (old, old))
    print(f"created {OLD_RESPONSES} responses, {STALE_REQUESTS} requests in "
          f"{time.monotonic() - started:.1f} s")  # fmt: skip
    yield d
    subprocess.run(["rm", "-rf", str(root)], check=False)


def test_fence_answers_beside_100000_responses_and_10000_stale_requests(big: Dirs) -> None:
    # The stale requests stay unanswered.
    with answering(big, success("answered under load"), new_only=True):
        r, took = timed_run(
            f"fence beside {OLD_RESPONSES} responses",
            ["-o", "off", "-n", "compute-node-3", *big.argv("--fence-timeout", "30")],
        )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Success: compute-node-3 fenced")
    final = big.jsonl()[-1]
    assert final["status"] == "completed" and final["details"] == "answered under load"
    assert len(os.listdir(big.req)) == STALE_REQUESTS, "a fence never touches other requests"
    assert len(os.listdir(big.resp)) == OLD_RESPONSES + 1
    assert took < 30 * SCALE


def test_status_answers_beside_100000_responses(big: Dirs) -> None:
    r, took = timed_run(
        f"status over {OLD_RESPONSES} responses", ["-o", "status", "-n", "old-node-5", *big.argv()]
    )
    assert r.returncode == 2, r.stderr
    assert "Status: OFF" in r.stdout
    r = run_agent(["-o", "status", "-n", "never-fenced-node", *big.argv()])
    assert r.returncode == 0, r.stderr
    assert "Status: ON" in r.stdout
    r = run_agent(["-o", "list", *big.argv()])
    assert r.returncode == 0, r.stderr
    listed = {line.split(",")[0] for line in r.stdout.splitlines()}
    assert {f"old-node-{i}" for i in range(OLD_TARGETS)} <= listed
    assert took < 50 * SCALE


def test_unfence_beside_100000_responses(big: Dirs) -> None:
    r, took = timed_run(
        f"on over {OLD_RESPONSES} responses", ["-o", "on", "-n", "old-node-7", *big.argv()]
    )
    assert r.returncode == 0, r.stderr
    per_target = OLD_RESPONSES // OLD_TARGETS
    assert f"removed {per_target} fenced record(s)" in r.stdout
    assert len(os.listdir(big.log / "unfenced")) == per_target
    r = run_agent(["-o", "status", "-n", "old-node-7", *big.argv()])
    assert r.returncode == 0, r.stderr
    assert took < 50 * SCALE


def test_monitor_removes_10000_stale_requests(big: Dirs) -> None:
    r, took = timed_run(
        f"monitor removing {STALE_REQUESTS} stale requests",
        ["-o", "monitor", *big.argv("--fence-timeout", "1", "--stale-age", "2")],
    )
    assert r.returncode == 0, r.stderr
    assert os.listdir(big.req) == []
    removed = [
        line for line in lines_of(big.log / MAIN_LOG) if "Removed stale request file" in line
    ]
    assert len(removed) == STALE_REQUESTS
    assert len(os.listdir(big.resp)) == OLD_RESPONSES + 1 - OLD_RESPONSES // OLD_TARGETS
    assert took < 50 * SCALE
