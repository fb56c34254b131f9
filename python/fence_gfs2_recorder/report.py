"""``fence-gfs2-report``: a summary of the fence event journal.

Reads ``fence-events-detailed.jsonl`` (and its rotated copies, gzipped or
not) and prints, per target node: how many fences were attempted, how they
ended, the latest outcome, the latency of finished fences and the GFS2 file
systems seen. Attempts that were initiated but never finished (the agent was
killed, or is still waiting) are listed apart.

Output is text for people, ``--json`` for programs, or ``--prometheus`` for
the node_exporter textfile collector. Lines that are not journal records are
counted and reported; they never stop the report.

Records of the "on" action (unfencing) are outcomes of their own
(``unfenced``, ``already_unfenced``, ``unfence_failed``), never fence
attempts or fence latencies.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DEFAULT_LOG_DIR = "/var/log/gfs2-fencing"
JOURNAL_NAME = "fence-events-detailed.jsonl"

INITIATED = "initiated"
# How a fence attempt ends: exactly one of these follows "initiated".
FINAL = ("completed", "failed", "timeout", "interrupted")
# Records of the "on" action (unfencing): outcomes, but not fence attempts.
UNFENCE = ("unfenced", "already_unfenced")

# Upper bounds (seconds) of the latency histogram buckets.
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MALFORMED_EXAMPLES = 5


@dataclass
class Record:
    when: datetime
    timestamp: str
    target: str
    status: str
    action: str
    request_id: str | None
    elapsed_ms: int | None
    gfs2: list[str]


@dataclass
class Journal:
    files: list[str] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    malformed: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def bad_line(self, where: str, why: str) -> None:
        self.malformed += 1
        if len(self.malformed_examples) < MALFORMED_EXAMPLES:
            self.malformed_examples.append(f"{where}: {why}")


@dataclass
class TargetStats:
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    last: tuple[str, str] | None = None  # outcome, timestamp
    last_fence: Record | None = None
    latencies_ms: list[int] = field(default_factory=list)
    gfs2: set[str] = field(default_factory=set)


# --- reading ---------------------------------------------------------------


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; ``Z`` is UTC and a time without a zone is local time."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``24h``, ``30m``, ``7d``, ``2w``, ``90s`` ago, or an ISO date/time."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
        delta = timedelta(**{unit[m.group(2)]: int(m.group(1))})
        return (now or datetime.now(timezone.utc)) - delta
    return parse_time(text)


def journal_files(log_dir: Path) -> list[Path]:
    """The journal and its rotated copies in ``log_dir``, oldest first."""

    def age(p: Path) -> tuple[int, int, str]:
        suffix = p.name[len(JOURNAL_NAME) :].removesuffix(".gz")
        if not suffix:
            return (2, 0, "")  # the current file is the newest
        if re.fullmatch(r"\.\d+", suffix):
            return (0, -int(suffix[1:]), "")  # logrotate numbers grow with age
        return (1, 0, suffix)  # dateext suffixes grow with time

    found = [
        p
        for p in log_dir.glob(JOURNAL_NAME + "*")
        if p.is_file() and re.fullmatch(r"([.-][\w.-]*)?", p.name[len(JOURNAL_NAME) :])
    ]
    return sorted(found, key=age)


def read_lines(path: Path) -> Iterator[bytes]:
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as gz:
            yield from gz
    else:
        with path.open("rb") as f:
            yield from f


def to_record(obj: Any) -> Record | str:
    """The record in a parsed line, or why it is not one."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    for key in ("timestamp", "target_node", "status"):
        if not isinstance(obj.get(key), str):
            return f"no {key} text"
    try:
        when = parse_time(obj["timestamp"])
    except (ValueError, OverflowError):
        return "timestamp is not an ISO 8601 time"
    elapsed = obj.get("elapsed_ms")
    gfs2 = obj.get("gfs2_filesystems")
    request_id = obj.get("request_id")
    return Record(
        when=when,
        timestamp=obj["timestamp"],
        target=obj["target_node"],
        status=obj["status"],
        action=str(obj.get("action", "")),
        request_id=request_id if isinstance(request_id, str) and request_id else None,
        elapsed_ms=elapsed if isinstance(elapsed, int) and not isinstance(elapsed, bool) else None,
        gfs2=[g for g in gfs2 if isinstance(g, str)] if isinstance(gfs2, list) else [],
    )


def load(paths: Iterable[Path]) -> Journal:
    journal = Journal()
    for path in paths:
        journal.files.append(str(path))
        number = 0
        try:
            for number, raw in enumerate(read_lines(path), 1):
                if not raw.strip():
                    continue
                where = f"{path.name} line {number}"
                try:
                    obj = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError):
                    journal.bad_line(where, "not JSON")
                    continue
                rec = to_record(obj)
                if isinstance(rec, str):
                    journal.bad_line(where, rec)
                else:
                    journal.records.append(rec)
        except (OSError, EOFError) as e:
            # Unreadable, or a gzip cut short: keep what was read.
            journal.unreadable.append(f"{path} (after line {number}): {e}")
    journal.records.sort(key=lambda r: r.when)
    return journal


# --- summarising -----------------------------------------------------------


def percentile(sorted_values: list[int], p: float) -> int:
    """Nearest-rank percentile: the smallest value with p% of values at or below it."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Summary:
    targets: dict[str, TargetStats]
    unfinished: list[Record]
    durations_ms: list[int]
    selected: int


def summarise(records: list[Record]) -> Summary:
    """Per-target statistics of time-ordered records."""
    initiated = {r.request_id: r for r in records if r.status == INITIATED and r.request_id}
    finished = {r.request_id for r in records if r.status in FINAL and r.request_id}
    targets: dict[str, TargetStats] = {}
    durations: list[int] = []
    for rec in records:
        st = targets.setdefault(rec.target, TargetStats())
        st.gfs2.update(rec.gfs2)
        if rec.status == INITIATED:
            st.attempts += 1
            continue
        unfence = rec.action == "on" or rec.status in UNFENCE
        outcome = rec.status if rec.status in UNFENCE or not unfence else f"unfence_{rec.status}"
        st.outcomes[outcome] = st.outcomes.get(outcome, 0) + 1
        st.last = (outcome, rec.timestamp)
        if unfence or rec.status not in FINAL:
            continue
        # A final record whose "initiated" is missing (rotated away, or a
        # refused target) still stands for one attempt.
        if rec.request_id not in initiated:
            st.attempts += 1
        st.last_fence = rec
        if rec.elapsed_ms is not None:
            st.latencies_ms.append(rec.elapsed_ms)
            durations.append(rec.elapsed_ms)
    unfinished = [r for rid, r in initiated.items() if rid not in finished]
    return Summary(targets, unfinished, durations, len(records))


def latency(values: list[int]) -> dict[str, int] | None:
    if not values:
        return None
    s = sorted(values)
    return {"count": len(s), "p50": percentile(s, 50), "p95": percentile(s, 95), "max": s[-1]}


# --- output ----------------------------------------------------------------


def show(text: str) -> str:
    """Text safe for one terminal line."""
    return text if text.isprintable() else ascii(text)


def as_json(journal: Journal, summary: Summary) -> dict[str, Any]:
    return {
        "files": journal.files,
        "unreadable": journal.unreadable,
        "records": len(journal.records),
        "selected": summary.selected,
        "malformed": {"count": journal.malformed, "examples": journal.malformed_examples},
        "targets": {
            name: {
                "attempts": st.attempts,
                "outcomes": dict(sorted(st.outcomes.items())),
                "last_outcome": None
                if st.last is None
                else {"status": st.last[0], "timestamp": st.last[1]},
                "latency_ms": latency(st.latencies_ms),
                "gfs2_filesystems": sorted(st.gfs2),
            }
            for name, st in sorted(summary.targets.items())
        },
        "unfinished": [
            {
                "request_id": r.request_id,
                "target_node": r.target,
                "action": r.action,
                "initiated_at": r.timestamp,
            }
            for r in summary.unfinished
        ],
    }


def as_text(journal: Journal, summary: Summary) -> str:
    out = [
        f"{len(journal.records)} records from {len(journal.files)} file(s), "
        f"{summary.selected} selected"
    ]
    if journal.malformed:
        out.append(f"{journal.malformed} malformed line(s) skipped:")
        out += [f"  {show(e)}" for e in journal.malformed_examples]
    out += [f"unreadable: {show(u)}" for u in journal.unreadable]
    for name, st in sorted(summary.targets.items()):
        outcomes = " ".join(f"{k}={v}" for k, v in sorted(st.outcomes.items()))
        lat = latency(st.latencies_ms)
        out += [
            "",
            show(name),
            f"  attempts:      {st.attempts}",
            f"  outcomes:      {outcomes or '-'}",
            "  last outcome:  " + ("-" if st.last is None else f"{st.last[0]} at {st.last[1]}"),
            "  latency (ms):  "
            + (
                "-"
                if lat is None
                else f"p50={lat['p50']} p95={lat['p95']} max={lat['max']} ({lat['count']} finished)"
            ),
            f"  GFS2:          {', '.join(show(g) for g in sorted(st.gfs2)) or '-'}",
        ]
    if summary.unfinished:
        out += ["", "Initiated, never finished (agent killed, or still waiting):"]
        out += [
            f"  {r.timestamp}  {show(r.target)}  {show(r.action)}  request_id={r.request_id}"
            for r in summary.unfinished
        ]
    return "\n".join(out) + "\n"


def label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fmt_num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def as_prometheus(journal: Journal, summary: Summary) -> str:
    out = [
        "# HELP fence_gfs2_events_total Fence outcomes recorded in the journal.",
        "# TYPE fence_gfs2_events_total counter",
    ]
    for name, st in sorted(summary.targets.items()):
        for status, n in sorted(st.outcomes.items()):
            out.append(
                f'fence_gfs2_events_total{{target="{label(name)}",outcome="{label(status)}"}} {n}'
            )
    seconds = [ms / 1000 for ms in summary.durations_ms]
    out += [
        "# HELP fence_gfs2_fence_duration_seconds Time from fence request to its outcome.",
        "# TYPE fence_gfs2_fence_duration_seconds histogram",
    ]
    for bound in BUCKETS:
        n = sum(1 for s in seconds if s <= bound)
        out.append(f'fence_gfs2_fence_duration_seconds_bucket{{le="{fmt_num(bound)}"}} {n}')
    out += [
        f'fence_gfs2_fence_duration_seconds_bucket{{le="+Inf"}} {len(seconds)}',
        f"fence_gfs2_fence_duration_seconds_sum {fmt_num(sum(summary.durations_ms) / 1000)}",
        f"fence_gfs2_fence_duration_seconds_count {len(seconds)}",
        "# HELP fence_gfs2_last_fence_timestamp_seconds End of the latest fence attempt.",
        "# TYPE fence_gfs2_last_fence_timestamp_seconds gauge",
    ]
    for name, st in sorted(summary.targets.items()):
        if st.last_fence is not None:
            stamp = fmt_num(st.last_fence.when.timestamp())
            out.append(f'fence_gfs2_last_fence_timestamp_seconds{{target="{label(name)}"}} {stamp}')
    out += [
        "# HELP fence_gfs2_unfinished_fences Fence attempts initiated and never finished.",
        "# TYPE fence_gfs2_unfinished_fences gauge",
        f"fence_gfs2_unfinished_fences {len(summary.unfinished)}",
        "# HELP fence_gfs2_journal_malformed_lines Journal lines that are not records.",
        "# TYPE fence_gfs2_journal_malformed_lines gauge",
        f"fence_gfs2_journal_malformed_lines {journal.malformed}",
    ]
    return "\n".join(out) + "\n"


# --- command line ----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fence-gfs2-report",
        description="Summarise the fence_gfs2_recorder event journal "
        f"({JOURNAL_NAME} and its rotated copies).",
    )
    p.add_argument("files", nargs="*", type=Path, help="journal files (default: from --log-dir)")
    p.add_argument(
        "--log-dir",
        type=Path,
        default=Path(DEFAULT_LOG_DIR),
        help="directory of the journal and its rotated copies (default: %(default)s)",
    )
    p.add_argument(
        "--since",
        help="only records from this time on: ISO date/time (local unless a zone is "
        "given), or a span back from now such as 90m, 24h, 7d, 2w",
    )
    p.add_argument("--target", action="append", help="only this target node (repeatable)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable JSON")
    fmt.add_argument(
        "--prometheus", action="store_true", help="node_exporter textfile collector format"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    since: datetime | None = None
    if args.since:
        try:
            since = parse_since(args.since)
        except (ValueError, OverflowError):
            sys.stderr.write(f"fence-gfs2-report: --since {args.since!r} is not a time\n")
            return 2
    paths: list[Path] = args.files or journal_files(args.log_dir)
    if not paths:
        sys.stderr.write(f"fence-gfs2-report: no {JOURNAL_NAME}* in {args.log_dir}\n")
        return 1
    journal = load(paths)
    records = [
        r
        for r in journal.records
        if (since is None or r.when >= since) and (not args.target or r.target in args.target)
    ]
    summary = summarise(records)
    if args.json:
        sys.stdout.write(json.dumps(as_json(journal, summary), indent=2) + "\n")
    elif args.prometheus:
        sys.stdout.write(as_prometheus(journal, summary))
    else:
        sys.stdout.write(as_text(journal, summary))
    for u in journal.unreadable:
        sys.stderr.write(f"fence-gfs2-report: could not read all of {u}\n")
    return 1 if journal.unreadable else 0


if __name__ == "__main__":
    sys.exit(main())
