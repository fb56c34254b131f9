"""`status`, `list` and `on` agree with nnf-sos's own reading of the
response directory, and `on` leaves nothing nnf-sos would act on.

nnf-sos counts a node fenced when a `*.json` entry (not a directory; dot-names
included; symbolic links followed; any size) decodes with Go's encoding/json
into its structs with `target_node` equal to the node and `success` true
(`checkComputeFenced`), or `success` true or `status` `"success"`
(`checkFencedStatus`). The table below gives files and nnf-sos's verdict on
them; each row is checked against the installed agent, and the whole table
against a small Go program that reads the files with the real encoding/json
(tests/data/nnf_oracle).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import AGENT, DATA, Dirs, clean_env, run_agent
from helpers import fill_up, tmpfs, wait_for_request

NODE = "n3"
ORACLE_SRC = DATA / "nnf_oracle" / "main.go"


def body(**fields: Any) -> bytes:
    return json.dumps({"target_node": NODE, **fields}).encode()


def plain(name: str, data: bytes) -> Callable[[Path, Path], None]:
    def make(resp: Path, _outside: Path) -> None:
        (resp / name).write_bytes(data)

    return make


def raw_name(name: bytes, data: bytes) -> Callable[[Path, Path], None]:
    def make(resp: Path, _outside: Path) -> None:
        Path(os.fsdecode(os.fsencode(resp) + b"/" + name)).write_bytes(data)

    return make


def symlinked(data: bytes) -> Callable[[Path, Path], None]:
    def make(resp: Path, outside: Path) -> None:
        (outside / "kept-elsewhere.json").write_bytes(data)
        (resp / "link.json").symlink_to(outside / "kept-elsewhere.json")

    return make


def link_to(target: str) -> Callable[[Path, Path], None]:
    def make(resp: Path, outside: Path) -> None:
        (resp / "link.json").symlink_to(target)

    return make


def directory(resp: Path, _outside: Path) -> None:
    (resp / "d.json").mkdir()
    (resp / "d.json" / "x.json").write_bytes(body(success=True))


def link_to_directory(resp: Path, outside: Path) -> None:
    (outside / "dir").mkdir()
    (resp / "link.json").symlink_to(outside / "dir")


def fifo(resp: Path, _outside: Path) -> None:
    os.mkfifo(resp / "f.json")


def nested(depth: int) -> bytes:
    return b'{"target_node":"n3","success":true,"x":' + b"[" * depth + b"]" * depth + b"}"


@dataclass
class Row:
    id: str
    make: Callable[[Path, Path], None]
    # "fenced": nnf-sos counts NODE fenced; "not": it does not; "unknown":
    # nnf-sos blocks on the file (never read by the agent either).
    verdict: str
    oracle: bool = True


OK = b'{"target_node":"n3","success":true}'
ROWS = [
    Row("plain", plain("a.json", OK), "fenced"),
    Row(
        "pretty-rename-shape",
        plain("a.json", json.dumps(json.loads(OK), indent=2).encode()),
        "fenced",
    ),
    Row("keys-in-other-case", plain("a.json", b'{"TARGET_NODE":"n3","Success":true}'), "fenced"),
    Row(
        "key-with-long-s", plain("a.json", b'{"target_node":"n3","\xc5\xbfuccess":true}'), "fenced"
    ),
    Row("key-with-escape", plain("a.json", b'{"target_node":"n3","succ\\u0065ss":true}'), "fenced"),
    Row(
        "invalid-utf8-in-message",
        plain("a.json", b'{"target_node":"n3","success":true,"message":"\xff\xfe"}'),
        "fenced",
    ),
    Row("dot-named-.json", plain(".json", OK), "fenced"),
    Row("dot-named-.a.json", plain(".a.json", OK), "fenced"),
    Row("name-not-utf8", raw_name(b"\xff.json", OK), "fenced"),
    Row("symlinked", symlinked(OK), "fenced"),
    Row("over-1-MiB", plain("a.json", body(success=True, message="x" * (2 << 20))), "fenced"),
    Row(
        "status-success-only", plain("a.json", b'{"target_node":"n3","status":"success"}'), "fenced"
    ),
    Row(
        "status-success-success-false",
        plain("a.json", b'{"target_node":"n3","status":"success","success":false}'),
        "fenced",
    ),
    Row(
        "later-duplicate-true",
        plain("a.json", b'{"target_node":"n3","success":false,"SUCCESS":true}'),
        "fenced",
    ),
    Row(
        "null-keeps-earlier",
        plain("a.json", b'{"target_node":"n3","success":true,"success":null}'),
        "fenced",
    ),
    Row(
        "status-wrong-type",
        plain("a.json", b'{"target_node":"n3","success":true,"status":5}'),
        "fenced",
    ),
    Row(
        "surrogates-elsewhere",
        plain("a.json", b'{"x":"\\ud800\\udc00\\udc00","target_node":"n3","success":true}'),
        "fenced",
    ),
    Row("depth-10000", plain("a.json", nested(9999)), "fenced"),
    Row(
        "numbers-elsewhere",
        plain("a.json", b'{"x":[-0.5e+3,1E9,0],"target_node":"n3","success":true}'),
        "fenced",
    ),
    Row(
        "later-duplicate-false",
        plain("a.json", b'{"target_node":"n3","success":true,"Success":false}'),
        "not",
    ),
    Row("success-string", plain("a.json", b'{"target_node":"n3","success":"true"}'), "not"),
    Row("success-one", plain("a.json", b'{"target_node":"n3","success":1}'), "not"),
    Row("success-false", plain("a.json", b'{"target_node":"n3","success":false}'), "not"),
    Row("other-node", plain("a.json", b'{"target_node":"n4","success":true}'), "not"),
    Row("target-in-other-case", plain("a.json", b'{"target_node":"N3","success":true}'), "not"),
    Row("target-with-space", plain("a.json", b'{"target_node":"n3 ","success":true}'), "not"),
    Row("target-wrong-type", plain("a.json", b'{"target_node":["n3"],"success":true}'), "not"),
    Row("depth-10001", plain("a.json", nested(10000)), "not"),
    Row("byte-order-mark", plain("a.json", b"\xef\xbb\xbf" + OK), "not"),
    Row("trailing-garbage", plain("a.json", OK + b"x"), "not"),
    Row("trailing-comma", plain("a.json", b'{"target_node":"n3","success":true,}'), "not"),
    Row(
        "raw-newline-in-string",
        plain("a.json", b'{"target_node":"n3","success":true,"m":"a\nb"}'),
        "not",
    ),
    Row(
        "leading-zero-elsewhere",
        plain("a.json", b'{"x":01,"target_node":"n3","success":true}'),
        "not",
    ),
    Row("empty", plain("a.json", b""), "not"),
    Row("half", plain("a.json", OK[:20]), "not"),
    Row("json-null", plain("a.json", b"null"), "not"),
    Row("json-array", plain("a.json", b"[" + OK + b"]"), "not"),
    Row("extension-in-upper-case", plain("a.JSON", OK), "not"),
    Row("dot-temp", plain(".a.json.tmp", OK), "not"),
    Row("directory-named-.json", directory, "not"),
    Row("symlink-to-directory", link_to_directory, "not"),
    Row("dangling-symlink", link_to("/nonexistent/x.json"), "not"),
    Row("fifo", fifo, "unknown", oracle=False),
    Row("symlink-to-a-device", link_to("/dev/zero"), "unknown", oracle=False),
]


def make_row(tmp_path: Path, row: Row) -> tuple[Dirs, Path]:
    d = Dirs(tmp_path, tmp_path / "requests", tmp_path / "responses", tmp_path / "logs")
    d.req.mkdir(parents=True)
    d.resp.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    row.make(d.resp, outside)
    return d, outside


def status(d: Dirs, node: str = NODE) -> subprocess.CompletedProcess[str]:
    return run_agent(["-o", "status", "-n", node, *d.argv()], timeout=30)


@pytest.fixture(scope="session")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The Go reader, built once (None without a Go toolchain)."""
    go = shutil.which("go")
    if go is None:
        return None
    out = tmp_path_factory.mktemp("oracle")
    env = {
        **os.environ,
        "GOCACHE": str(out / "cache"),
        "GO111MODULE": "off",
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "",
    }
    subprocess.run(
        [go, "build", "-o", str(out / "oracle"), str(ORACLE_SRC)],
        check=True,
        env=env,
        cwd=out,
        capture_output=True,
        timeout=300,
    )
    return out / "oracle"


def go_counts(oracle: Path, resp: Path, node: str = NODE) -> bool:
    """Does nnf-sos (real encoding/json) count `node` fenced in `resp`?"""
    names = [os.fsencode(resp) + b"/" + n for n in os.listdir(os.fsencode(resp))]
    if not names:
        return False
    r = subprocess.run([str(oracle), *names], capture_output=True, check=True, timeout=60)
    for line in r.stdout.decode().splitlines():
        v = json.loads(line)
        if (v["compute"] and v["compute_target"] == node) or (
            v["status"] and v["status_target"] == node
        ):
            return True
    return False


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_status_and_on_follow_nnf_sos(tmp_path: Path, row: Row) -> None:
    d, outside = make_row(tmp_path, row)
    before = {p.name: p.read_bytes() for p in outside.rglob("*") if p.is_file()}
    r = status(d)
    want = {"fenced": 2, "not": 0, "unknown": 1}[row.verdict]
    assert r.returncode == want, (r.stdout, r.stderr)
    if row.verdict == "unknown":
        assert "cannot tell" in r.stderr, r.stderr
    r = run_agent(["-o", "on", "-n", NODE, *d.argv()], timeout=60)
    if row.verdict == "unknown":
        # nnf-sos blocks on it: on cannot make sure, says so and names it.
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "cannot make sure" in r.stderr, r.stderr
        return
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert status(d).returncode == 0
    # Nothing outside the response directory was touched.
    assert {p.name: p.read_bytes() for p in outside.rglob("*") if p.is_file()} == before
    record = d.jsonl()[-1]
    assert record["status"] == ("unfenced" if row.verdict == "fenced" else "already_unfenced")


def test_the_table_is_what_go_encoding_json_says(tmp_path: Path, oracle: Path | None) -> None:
    if oracle is None:
        pytest.skip("no Go toolchain (scripts/setup.sh installs golang-go)")
    wrong = []
    for row in ROWS:
        if not row.oracle:
            continue
        d, _ = make_row(tmp_path / row.id, row)
        if go_counts(oracle, d.resp) != (row.verdict == "fenced"):
            wrong.append(row.id)
    assert not wrong, f"rows whose verdict differs from Go's: {wrong}"


def test_after_on_go_counts_nothing(tmp_path: Path, oracle: Path | None) -> None:
    """Every row at once in one directory: `on` leaves nothing Go counts."""
    if oracle is None:
        pytest.skip("no Go toolchain (scripts/setup.sh installs golang-go)")
    d = Dirs(tmp_path, tmp_path / "requests", tmp_path / "responses", tmp_path / "logs")
    d.req.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for i, row in enumerate(ROWS):
        if not row.oracle:
            continue
        sub = tmp_path / f"row{i}"
        sub.mkdir()
        row.make(sub, outside)
    d.resp.mkdir()
    for i in range(len(ROWS)):
        sub = tmp_path / f"row{i}"
        if sub.exists():
            for p in os.listdir(os.fsencode(sub)):
                os.rename(os.fsencode(sub) + b"/" + p, os.fsencode(d.resp) + b"/" + b"%d-" % i + p)
    assert go_counts(oracle, d.resp)
    assert status(d).returncode == 2
    r = run_agent(["-o", "on", "-n", NODE, *d.argv()], timeout=60)
    assert r.returncode == 0, r.stderr
    assert not go_counts(oracle, d.resp)
    assert status(d).returncode == 0


def test_list_agrees_with_nnf_sos_and_hostile_targets_add_no_line_or_field(dirs: Dirs) -> None:
    for i, t in enumerate(["n3", "a,b", "x\ny", "p q", "c\\d", "ü"]):
        (dirs.resp / f"{i}.json").write_text(json.dumps({"target_node": t, "success": True}))
    (dirs.resp / "s.json").write_text('{"TARGET_NODE":"n9","status":"success"}')
    (dirs.resp / "f.json").write_text('{"target_node":"n8","success":false}')
    r = run_agent(["-o", "list-status", *dirs.argv()])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 7, lines
    assert all(line.count(",") == 2 and line.endswith(",,off") for line in lines), lines
    names = {line.split(",")[0] for line in lines}
    assert names == {"n3", "n9", "a\\x2cb", "x\\x0ay", "p\\x20q", "c\\x5cd", "\\xc3\\xbc"}
    r = run_agent(["-o", "list", *dirs.argv()])
    assert len(r.stdout.splitlines()) == 7 and all(
        line.count(",") == 1 for line in r.stdout.splitlines()
    )


def test_a_fifo_never_blocks_status_list_or_on(dirs: Dirs) -> None:
    os.mkfifo(dirs.resp / "f.json")
    os.mkfifo(dirs.req / "f.json")
    t0 = time.monotonic()
    for action in ("status", "list", "on"):
        args = ["-o", action, *dirs.argv()] + (["-n", NODE] if action != "list" else [])
        r = run_agent(args, timeout=30)
        assert r.returncode == 1, (action, r.stdout, r.stderr)
        assert "FIFO" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 20


def test_fence_success_needs_success_true(dirs: Dirs) -> None:
    """`{"status":"success","success":false}` is a failure answer (exit 1)."""
    p = subprocess.Popen(
        [AGENT, "-o", "off", "-n", NODE, *dirs.argv("--fence-timeout", "10")],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        req = wait_for_request(dirs)
        request = json.loads(req.read_text())
        (dirs.resp / req.name).write_text(
            json.dumps({**request, "status": "success", "success": False, "message": "no"})
        )
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1, err
    assert dirs.jsonl()[-1]["status"] == "failed"


# --------------------------------------------------------------------------
# unfencing that stays done


def start_off(d: Dirs, timeout: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AGENT, "-o", "off", "-n", NODE, *d.argv("--fence-timeout", timeout)],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_on_withdraws_the_request_a_killed_off_left(dirs: Dirs, responder: Any) -> None:
    """An off SIGKILLed while nnf-sos was down leaves its request; nnf-sos's
    start-up scan would answer it after on and detach the node again."""
    p = start_off(dirs, "30")
    req = wait_for_request(dirs)
    p.kill()
    p.communicate()
    assert req.exists()
    r = run_agent(["-o", "on", "-n", NODE, *dirs.argv()])
    assert r.returncode == 0, r.stderr
    assert not req.exists()
    last = dirs.jsonl()[-1]
    assert last["status"] == "already_unfenced"
    assert "withdrew 1 pending request(s)" in last["details"], last["details"]
    assert json.loads('"' + req.stem + '"') in last["details"]
    # nnf-sos comes back: its start-up scan finds nothing to answer.
    responder()
    time.sleep(1.5)
    assert not dirs.responses()
    assert status(dirs).returncode == 0


def test_on_waits_for_an_answer_still_being_written(dirs: Dirs, responder: Any) -> None:
    """nnf-sos read the request, the agent gave up and withdrew it, and the
    in-place answer is being written when on runs: on waits for it."""
    responder("--mode", "inplace", "--answer-delay", "1.5", "--pause", "1.5")
    p = start_off(dirs, "1")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1, err
    end = time.monotonic() + 20
    while not dirs.responses() and time.monotonic() < end:
        time.sleep(0.01)
    [resp] = dirs.responses()
    assert not resp.read_bytes().endswith(b"}"), "still half written"
    r = run_agent(["-o", "on", "-n", NODE, *dirs.argv()], timeout=60)
    assert r.returncode == 0, r.stderr
    assert not resp.exists()
    assert dirs.jsonl()[-1]["status"] == "unfenced"
    time.sleep(0.5)
    assert status(dirs).returncode == 0


def test_on_needs_no_log_space(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", size="16k") as full:
        d = Dirs(tmp_path, tmp_path / "requests", tmp_path / "responses", full / "logs")
        d.req.mkdir()
        d.resp.mkdir()
        d.log.mkdir()
        record = body(success=True, request_id="c0ffee00-0000-4000-8000-000000000001")
        (d.resp / "a.json").write_bytes(record)
        fill_up(full)
        r = run_agent(["-o", "on", "-n", NODE, *d.argv()])
        assert r.returncode == 0, r.stderr
        assert not (d.resp / "a.json").exists()
        # The record's content still reaches someone: stderr (and syslog).
        assert "c0ffee00-0000-4000-8000-000000000001" in r.stderr, r.stderr
        assert "no copy kept" in r.stderr, r.stderr
    assert status(d).returncode == 0


def test_responder_answers_nothing_found_for_listed_targets(dirs: Dirs, responder: Any) -> None:
    responder("--nothing-found", NODE)
    for node, shape in ((NODE, "inplace"), ("n4", "rename")):
        r = run_agent(["-o", "off", "-n", node, *dirs.argv("--fence-timeout", "10")])
        assert r.returncode == 0, r.stderr
        resp = Path(dirs.jsonl()[-1]["response_file"])
        text = resp.read_text()
        if shape == "inplace":
            assert text.startswith('{"request_id":') and '"status":"success"' in text
            assert json.loads(text)["message"] == "No block storage resources found to fence"
        else:
            assert text.startswith('{\n  "action": "off",') and not text.endswith("\n")
            assert "status" not in json.loads(text)
    # The responder deletes each request just after answering it.
    end = time.monotonic() + 10
    while list(dirs.req.iterdir()) and time.monotonic() < end:
        time.sleep(0.01)
    assert not list(dirs.req.iterdir()), "requests are deleted after the answer"
