"""fence-gfs2-report on a hand-written journal with known numbers.

tests/data/report-journal.jsonl holds, in UTC:
- compute-node-1: five reboots in January (completed 100 ms, completed 200,
  failed 300, timeout 60000, completed 400), then a failed unfencing and an
  unfencing (action on; elapsed 5 ms, not a fence latency); GFS2 nnf-a, nnf-b
- compute-node-2: twenty offs on 2025-02-01..20, completed in 10, 20 .. 200 ms
- compute-node-3: one attempt initiated and never finished (2025-01-16 08:00),
  one failed answer (50 ms) whose "initiated" is not in the journal
- a refused target named  bad"node<newline>  (one failed record, no request_id)
- compute-node-4: initiated on 2025-02-21 and never finished
- four malformed lines (not JSON, a list, a bad timestamp, a cut-off record)
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, DATA, Dirs, clean_env, run_agent

JOURNAL = DATA / "report-journal.jsonl"
JOURNAL_NAME = "fence-events-detailed.jsonl"
BAD = 'bad"node\n'
RID = "00000000-0000-4000-8000-{:012d}".format


def report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": "UTC"}
    return subprocess.run(
        [sys.executable, "-m", "fence_gfs2_recorder.report", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def report_json(*args: str | Path) -> dict[str, Any]:
    r = report("--json", *args)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


NODE1 = {
    "attempts": 5,
    "outcomes": {"completed": 3, "failed": 1, "timeout": 1, "unfence_failed": 1, "unfenced": 1},
    "last_outcome": {"status": "unfenced", "timestamp": "2025-01-15T09:00:00Z"},
    "latency_ms": {"count": 5, "p50": 300, "p95": 60000, "max": 60000},
    "gfs2_filesystems": ["nnf-a", "nnf-b"],
}
NODE2 = {
    "attempts": 20,
    "outcomes": {"completed": 20},
    "last_outcome": {"status": "completed", "timestamp": "2025-02-20T12:00:01Z"},
    "latency_ms": {"count": 20, "p50": 100, "p95": 190, "max": 200},
    "gfs2_filesystems": ["nnf-c"],
}
NODE3 = {
    "attempts": 2,
    "outcomes": {"failed": 1},
    "last_outcome": {"status": "failed", "timestamp": "2025-01-16T09:00:00Z"},
    "latency_ms": {"count": 1, "p50": 50, "p95": 50, "max": 50},
    "gfs2_filesystems": ["nnf-d"],
}
NODE4 = {
    "attempts": 1,
    "outcomes": {},
    "last_outcome": None,
    "latency_ms": None,
    "gfs2_filesystems": [],
}
BAD_TARGET = {
    "attempts": 1,
    "outcomes": {"failed": 1},
    "last_outcome": {"status": "failed", "timestamp": "2025-01-17T00:00:00Z"},
    "latency_ms": None,
    "gfs2_filesystems": [],
}
UNFINISHED_3 = {
    "request_id": RID(301),
    "target_node": "compute-node-3",
    "action": "reboot",
    "initiated_at": "2025-01-16T08:00:00Z",
}
UNFINISHED_4 = {
    "request_id": RID(401),
    "target_node": "compute-node-4",
    "action": "reboot",
    "initiated_at": "2025-02-21T00:00:00Z",
}


def test_json_numbers_of_the_known_journal() -> None:
    out = report_json(JOURNAL)
    assert out["files"] == [str(JOURNAL)]
    assert out["unreadable"] == []
    assert (out["records"], out["selected"]) == (56, 56)
    assert out["malformed"] == {
        "count": 4,
        "examples": [
            "report-journal.jsonl line 11: not JSON",
            "report-journal.jsonl line 15: not a JSON object",
            "report-journal.jsonl line 18: timestamp is not an ISO 8601 time",
            "report-journal.jsonl line 60: not JSON",
        ],
    }
    assert out["targets"] == {
        BAD: BAD_TARGET,
        "compute-node-1": NODE1,
        "compute-node-2": NODE2,
        "compute-node-3": NODE3,
        "compute-node-4": NODE4,
    }
    assert out["unfinished"] == [UNFINISHED_3, UNFINISHED_4]


def test_text_summary() -> None:
    r = report(JOURNAL)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith("56 records from 1 file(s), 56 selected\n4 malformed line(s) skipped:\n")
    block = text.split("\ncompute-node-1\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [
        "  attempts:      5",
        "  outcomes:      completed=3 failed=1 timeout=1 unfence_failed=1 unfenced=1",
        "  last outcome:  unfenced at 2025-01-15T09:00:00Z",
        "  latency (ms):  p50=300 p95=60000 max=60000 (5 finished)",
        "  GFS2:          nnf-a, nnf-b",
    ]
    assert "  latency (ms):  p50=100 p95=190 max=200 (20 finished)\n" in text
    # A hostile target name cannot break the report into extra lines.
    assert "\n'bad\"node\\n'\n  attempts:      1\n" in text
    tail = text.split("Initiated, never finished (agent killed, or still waiting):\n", 1)[1]
    assert tail.splitlines() == [
        f"  2025-01-16T08:00:00Z  compute-node-3  reboot  request_id={RID(301)}",
        f"  2025-02-21T00:00:00Z  compute-node-4  reboot  request_id={RID(401)}",
    ]


@pytest.mark.parametrize("since", ["2025-02-01T00:00:00Z", "2025-02-01", "2025-02-01T01:00+01:00"])
def test_since_absolute(since: str) -> None:
    out = report_json("--since", since, JOURNAL)
    assert out["records"] == 56 and out["selected"] == 41
    assert out["targets"] == {"compute-node-2": NODE2, "compute-node-4": NODE4}
    assert out["unfinished"] == [UNFINISHED_4]


def test_since_cuts_an_attempt_in_half() -> None:
    # The never-finished initiated of compute-node-3 is left out; its other
    # attempt is known from the final record alone.
    out = report_json("--since", "2025-01-16T08:30:00Z", JOURNAL)
    assert out["targets"]["compute-node-3"] == {
        **NODE3,
        "attempts": 1,
        "gfs2_filesystems": ["nnf-d"],
    }
    assert "compute-node-1" not in out["targets"]
    assert out["unfinished"] == [UNFINISHED_4]


def test_since_relative(tmp_path: Path) -> None:
    now = datetime.now(timezone.utc)

    def rec(age: timedelta, status: str, rid: str, elapsed: int | None = None) -> str:
        when = (now - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        fields: dict[str, Any] = {"timestamp": when, "action": "off", "target_node": "n1"}
        fields.update(status=status, request_id=rid, gfs2_filesystems=[])
        if elapsed is not None:
            fields["elapsed_ms"] = elapsed
        return json.dumps(fields) + "\n"

    journal = tmp_path / JOURNAL_NAME
    journal.write_text(
        rec(timedelta(days=3), "initiated", "a")
        + rec(timedelta(days=3), "timeout", "a", 1000)
        + rec(timedelta(hours=2), "initiated", "b")
        + rec(timedelta(hours=2), "completed", "b", 20)
    )
    day = report_json("--since", "24h", "--log-dir", tmp_path)
    assert day["targets"]["n1"]["outcomes"] == {"completed": 1}
    assert day["targets"]["n1"]["latency_ms"] == {"count": 1, "p50": 20, "p95": 20, "max": 20}
    assert report_json("--since", "90m", "--log-dir", tmp_path)["targets"] == {}
    week = report_json("--since", "7d", "--log-dir", tmp_path)
    assert week["targets"]["n1"]["outcomes"] == {"completed": 1, "timeout": 1}
    assert week["targets"]["n1"]["attempts"] == 2


def test_bad_since_is_refused() -> None:
    for bad in ("last tuesday", "99999999999d"):
        r = report("--since", bad, JOURNAL)
        assert r.returncode == 2
        assert f"--since {bad!r} is not a time" in r.stderr


def test_target_filter() -> None:
    out = report_json("--target", "compute-node-1", JOURNAL)
    assert out["targets"] == {"compute-node-1": NODE1}
    assert out["unfinished"] == []
    both = report_json("--target", "compute-node-1", "--target", "compute-node-3", JOURNAL)
    assert both["targets"] == {"compute-node-1": NODE1, "compute-node-3": NODE3}
    assert both["unfinished"] == [UNFINISHED_3]
    assert report_json("--target", "nobody", JOURNAL)["targets"] == {}


def split_into_rotated(log_dir: Path) -> list[Path]:
    """The known journal as logrotate leaves it with compress + delaycompress."""
    lines = JOURNAL.read_bytes().splitlines(keepends=True)
    log_dir.mkdir()
    parts = [
        (log_dir / f"{JOURNAL_NAME}.3.gz", lines[:12]),
        (log_dir / f"{JOURNAL_NAME}.2.gz", lines[12:30]),
        (log_dir / f"{JOURNAL_NAME}.1", lines[30:50]),
        (log_dir / JOURNAL_NAME, lines[50:]),
    ]
    for path, chunk in parts:
        data = b"".join(chunk)
        path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    (log_dir / "fence-events.log.1").write_text("not the journal\n")
    return [p for p, _ in parts]


def test_rotated_and_gzipped_files_from_the_log_dir(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    parts = split_into_rotated(log_dir)
    out = report_json("--log-dir", log_dir)
    assert out["files"] == [str(p) for p in parts]  # oldest first
    whole = report_json(JOURNAL)
    for key in ("records", "selected", "targets", "unfinished"):
        assert out[key] == whole[key], key
    assert out["malformed"]["count"] == 4
    # The same files named on the command line.
    assert report_json(*parts)["targets"] == whole["targets"]


def test_dateext_rotation_names(tmp_path: Path) -> None:
    lines = JOURNAL.read_bytes().splitlines(keepends=True)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    parts = [
        (log_dir / f"{JOURNAL_NAME}-20250131.gz", lines[:25]),
        (log_dir / f"{JOURNAL_NAME}-20250210", lines[25:45]),
        (log_dir / JOURNAL_NAME, lines[45:]),
    ]
    for path, chunk in reversed(parts):
        data = b"".join(chunk)
        path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    out = report_json("--log-dir", log_dir)
    assert out["files"] == [str(p) for p, _ in parts]
    assert out["targets"] == report_json(JOURNAL)["targets"]


def test_damaged_input_never_crashes(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    split_into_rotated(log_dir)
    gz = log_dir / f"{JOURNAL_NAME}.2.gz"
    gz.write_bytes(gz.read_bytes()[:-30])  # cut off: the tail of the stream is gone
    current = log_dir / JOURNAL_NAME
    with current.open("ab") as f:
        f.write(b"\xff\xfe not utf-8\n\n   \n{}\n" + json.dumps({"timestamp": 5}).encode() + b"\n")
        f.write(b"[" * 100_000 + b"\n")
        old = {"timestamp": "0001-01-01T00:00:00", "target_node": "n", "status": "failed"}
        f.write(json.dumps(old).encode() + b"\n")
    r = report("--json", "--log-dir", log_dir)
    assert r.returncode == 1
    assert f"could not read all of {gz}" in r.stderr
    out = json.loads(r.stdout)
    assert len(out["unreadable"]) == 1
    # Blank lines are neither records nor malformed; the five others are
    # malformed (a local time in year 1 cannot be placed on the time line).
    assert out["malformed"]["count"] == 4 + 5
    assert out["records"] < 56


def test_no_journal_in_log_dir(tmp_path: Path) -> None:
    r = report("--log-dir", tmp_path / "missing")
    assert r.returncode == 1
    assert f"no {JOURNAL_NAME}* in {tmp_path / 'missing'}" in r.stderr


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf'^({NAME})(?:\{{((?:{NAME}="(?:[^"\\\n]|\\.)*",?)*)\}})? (\S+)$')
LABEL = re.compile(rf'({NAME})="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset[Any]], float]]:
    """TYPE per metric family, and every sample keyed by name and labels."""
    types: dict[str, str] = {}
    helps: set[str] = set()
    samples: dict[tuple[str, frozenset[Any]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split()[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name in helps, f"TYPE before HELP: {line}"
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"sample before its TYPE: {line}"
        key = (name, frozenset(LABEL.findall(labels or "")))
        assert key not in samples, f"duplicate sample: {line}"
        samples[key] = float(value)
    return types, samples


def test_prometheus_textfile() -> None:
    r = report("--prometheus", JOURNAL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.endswith("\n")
    types, samples = parse_prometheus(r.stdout)
    assert types == {
        "fence_gfs2_events_total": "counter",
        "fence_gfs2_fence_duration_seconds": "histogram",
        "fence_gfs2_last_fence_timestamp_seconds": "gauge",
        "fence_gfs2_unfinished_fences": "gauge",
        "fence_gfs2_journal_malformed_lines": "gauge",
    }

    def events(target: str, outcome: str) -> tuple[str, frozenset[Any]]:
        labels = frozenset({("target", target), ("outcome", outcome)})
        return ("fence_gfs2_events_total", labels)

    counters = {k: v for k, v in samples.items() if k[0] == "fence_gfs2_events_total"}
    assert counters == {
        events('bad\\"node\\n', "failed"): 1,
        events("compute-node-1", "completed"): 3,
        events("compute-node-1", "failed"): 1,
        events("compute-node-1", "timeout"): 1,
        events("compute-node-1", "unfence_failed"): 1,
        events("compute-node-1", "unfenced"): 1,
        events("compute-node-2", "completed"): 20,
        events("compute-node-3", "failed"): 1,
    }
    # The escaped label, as it stands in the file.
    assert 'fence_gfs2_events_total{target="bad\\"node\\n",outcome="failed"} 1\n' in r.stdout

    buckets = {dict(k[1])["le"]: v for k, v in samples.items() if k[0].endswith("_seconds_bucket")}
    # 26 finished fences: 100 200 300 400 60000 (node 1), 50 (node 3), 10..200 (node 2).
    assert buckets == {
        "0.1": 12,
        "0.25": 23,
        "0.5": 25,
        "1": 25,
        "2.5": 25,
        "5": 25,
        "10": 25,
        "30": 25,
        "60": 26,
        "120": 26,
        "300": 26,
        "+Inf": 26,
    }
    assert samples[("fence_gfs2_fence_duration_seconds_count", frozenset())] == 26
    assert samples[("fence_gfs2_fence_duration_seconds_sum", frozenset())] == pytest.approx(63.15)

    def last(target: str) -> float:
        return samples[("fence_gfs2_last_fence_timestamp_seconds", frozenset({("target", target)}))]

    def epoch(stamp: str) -> float:
        return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc).timestamp()

    # The latest fence, not the later unfencing.
    assert last("compute-node-1") == epoch("2025-01-14T10:00:01")
    assert last("compute-node-2") == epoch("2025-02-20T12:00:01")
    assert last("compute-node-3") == epoch("2025-01-16T09:00:00")
    assert (
        "fence_gfs2_last_fence_timestamp_seconds",
        frozenset({("target", "compute-node-4")}),
    ) not in samples
    assert samples[("fence_gfs2_unfinished_fences", frozenset())] == 2
    assert samples[("fence_gfs2_journal_malformed_lines", frozenset())] == 4


LOGROTATE = "/usr/sbin/logrotate"


@pytest.mark.skipif(not os.path.exists(LOGROTATE), reason="logrotate is not installed")
def test_report_after_real_fences_and_rotations(dirs: Dirs, responder: Any, tmp_path: Path) -> None:
    """The agent writes, the shipped logrotate config rotates, the report reads it all."""
    responder()
    shipped = Path(__file__).parent.parent / "contrib/logrotate.d/fence_gfs2_recorder"
    config = tmp_path / "logrotate.conf"
    config.write_text(shipped.read_text().replace("/var/log/gfs2-fencing", str(dirs.log)))
    rotate = [LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(config)]
    for i in range(3):
        r = run_agent(["-o", "off", "-n", "compute-node-7", *dirs.argv()])
        assert r.returncode == 0, r.stderr
        if i < 2:
            subprocess.run(rotate, check=True, capture_output=True)
    assert sorted(p.name for p in dirs.log.glob(JOURNAL_NAME + "*")) == [
        JOURNAL_NAME,
        JOURNAL_NAME + ".1",
        JOURNAL_NAME + ".2.gz",
    ]
    for _ in range(2):  # unfenced, then already_unfenced
        r = run_agent(["-o", "on", "-n", "compute-node-7", *dirs.argv()])
        assert r.returncode == 0, r.stderr
    out = report_json("--log-dir", dirs.log)
    assert out["malformed"]["count"] == 0
    node = out["targets"]["compute-node-7"]
    assert node["attempts"] == 3
    assert node["outcomes"] == {"completed": 3, "unfenced": 1, "already_unfenced": 1}
    assert node["last_outcome"]["status"] == "already_unfenced"
    assert node["latency_ms"]["count"] == 3
    assert out["unfinished"] == []


def test_killed_agent_is_listed_as_unfinished(dirs: Dirs) -> None:
    """Pacemaker kills an agent at its deadline: only "initiated" is written."""
    proc = subprocess.Popen(
        [AGENT, "-o", "reboot", "-n", "compute-node-9", *dirs.argv("--fence-timeout", "60")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=clean_env(),
    )
    try:
        deadline = time.monotonic() + 30
        while not dirs.jsonl() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    (initiated,) = dirs.jsonl()
    out = report_json("--log-dir", dirs.log)
    assert out["unfinished"] == [
        {
            "request_id": initiated["request_id"],
            "target_node": "compute-node-9",
            "action": "reboot",
            "initiated_at": initiated["timestamp"],
        }
    ]
    assert out["targets"]["compute-node-9"]["attempts"] == 1
    assert out["targets"]["compute-node-9"]["outcomes"] == {}
    prom = report("--prometheus", "--log-dir", dirs.log).stdout
    assert "\nfence_gfs2_unfinished_fences 1\n" in prom
