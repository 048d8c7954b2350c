"""The CLI end to end on the local backend with the echo engine, and its refusals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chunkpilot.errors import LeaseHeldError
from chunkpilot.control.lease import Lease
from chunkpilot.control.runs import open_run
from tests.conftest import read_jsonl, write_jsonl

HOSTILE = [
    b'{"custom_id": "ok-1", "prompt": "fine"}\n',
    b"{this is not json\n",
    b"[1, 2, 3]\n",
    b'{"custom_id": "np", "text": "no prompt here"}\n',
    b'{"custom_id": "bad-utf8", "prompt": "\xff\xfe"}\n',
    b'{"custom_id": "emb", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}\n',
    b"\n",
    b"   \r\n",
    b'{"custom_id": "dup", "prompt": "first"}\n',
    b'{"custom_id": "dup", "prompt": "second"}\n',
    b'{"custom_id": "ok-2", "messages": [{"role": "user", "content": "hi"}]}\n',
]


def test_help_on_every_command_with_examples(cli):
    assert "Usage" in cli("--help").output
    for cmd in ("submit", "status", "watch", "collect", "cancel", "runs"):
        out = cli(cmd, "--help").output
        assert "Usage" in out and "Examples:" in out and f"launcher {cmd} " in out, cmd


def test_local_run_end_to_end_with_hostile_input(tmp_path, store_uri, cli, prompts):
    hostile = write_jsonl(tmp_path / "hostile.jsonl", HOSTILE)
    result = cli("submit", prompts, hostile, "--chunks", 4, "--engine", "echo", "--store", store_uri,
                 "--run-name", "e2e", "--workers", 2, "--watch")
    assert "e2e" in result.output
    out = tmp_path / "results.jsonl"
    result = cli("collect", "e2e", "--store", store_uri, "-o", out)
    rows = read_jsonl(out)
    input_lines = 120 + len(HOSTILE)
    blank = 2
    assert len(rows) == input_lines - blank, "one output line per non-blank input line"
    assert "2 blank input lines skipped" in result.output
    assert "1 custom_id(s) appear on more than one input record" in result.output and "dup" in result.output
    # Input order: the prompts file first, then the hostile one.
    assert [r["custom_id"] for r in rows[:3]] == ["p0", "c1", "b2"]
    by_id = {r["custom_id"]: r for r in rows}
    codes = [r["error"]["code"] for r in rows if r["error"]]
    assert sorted(codes) == sorted(["invalid_json", "not_an_object", "missing_prompt", "invalid_utf8", "wrong_task"])
    assert by_id["ok-2"]["response"]["body"]["object"] == "chat.completion"
    assert by_id["ok-1"]["response"]["body"]["choices"][0]["text"] == "fine"
    assert [r["response"]["body"]["choices"][0]["text"] for r in rows if r["custom_id"] == "dup"] == ["first", "second"]
    body = by_id["p0"]["response"]["body"]
    assert body["model"] == "echo" and body["model_revision"] == "echo-1" and body["usage"]["total_tokens"] > 0

    status = json.loads(cli("status", "e2e", "--store", store_uri, "--json").output)
    # Every chunk done: the 4 planned, and any an idle worker split off a busy one (chunkpilot.splits).
    assert set(status["totals"]["states"]) == {"DONE"} and status["totals"]["chunks"] >= 4
    assert status["totals"]["records_done"] == len(rows)
    assert "e2e" in cli("runs", "--store", store_uri).output


def test_collect_refuses_incomplete_run_unless_partial(tmp_path, store_uri, cli, prompts):
    cli("submit", prompts, "--chunks", 3, "--engine", "echo", "--store", store_uri, "--run-name", "half", "--workers", 1,
        "--engine-option", "delay=0.2", "--engine-option", "batch=2")
    # Without --watch the one worker is launched and answers chunk after chunk (~4 s each): pause the run
    # once the first is done.
    run = open_run(store_uri, "half")
    deadline = time.monotonic() + 60
    while not list(run.run_store.list("out/0000/_SUCCESS")):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cli("cancel", "half", "--store", store_uri)
    out = tmp_path / "out.jsonl"
    result = cli("collect", "half", "--store", store_uri, "-o", out, expect=1)
    assert "2 of 3 chunk(s) are not done" in result.output and not out.exists()
    result = cli("collect", "half", "--store", store_uri, "-o", out, "--allow-partial")
    assert 0 < len(read_jsonl(out)) < 120 and "partial" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.jsonl"], "does not exist"),
        (["empty.jsonl"], "inputs are empty"),
        (["empty_dir"], "matches no files"),
        (["ok.jsonl", "--engine", "nope"], "unknown engine 'nope'"),
        (["ok.jsonl", "--run-name", "Bad/Name"], "invalid run name"),
        (["ok.jsonl", "--run-name", "../up"], "invalid run name"),
        (["ok.jsonl", "--store", "ftp://host/x"], "unsupported store URI 'ftp://host/x'"),
        (["ok.jsonl", "--store", "s3:/bad"], "did you mean s3://bucket/prefix?"),
        (["ok.jsonl", "--store", "s3://Bad_Bucket/x"], "invalid bucket name"),
        (["ok.jsonl", "--engine-option", "delayy=1"], "did you mean delay?"),
        (["ok.jsonl", "--engine-option", "batch=many"], "engine option batch must be a whole number, got 'many'"),
        (["ok.jsonl", "--max-error-rate", "2"], "--max-error-rate"),
        (["ok.jsonl", "--store", "not_a_dir/sub"], "not writable"),
    ],
)
def test_submit_fails_before_writing_anything(tmp_path, cli, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "ok.jsonl").write_bytes(b'{"prompt": "x"}\n')
    (tmp_path / "not_a_dir").write_bytes(b"a file where a folder should be")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    full = ["submit", *args, "--chunks", 2]
    if "--store" not in args:
        full += ["--store", str(tmp_path / "runs"), "--engine", "echo"] if "--engine" not in args else ["--store", str(tmp_path / "runs")]
    result = cli(*full, expect=None)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing was written"


def test_run_names_are_never_reused(tmp_path, store_uri, cli):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}])
    cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", store_uri, "--run-name", "same", "--watch")
    result = cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", store_uri, "--run-name", "same", expect=1)
    assert "already exists" in result.output


def test_second_watcher_is_refused(tmp_path, store_uri, cli, make_run):
    run = make_run([write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}])])
    lease = Lease(run.run_store)
    lease.acquire()
    try:
        result = cli("watch", run.spec.run_id, "--store", store_uri, expect=1)
        assert "another `launcher watch`" in result.output
        with pytest.raises(LeaseHeldError):
            Lease(run.run_store).acquire()
    finally:
        lease.release()
    cli("watch", run.spec.run_id, "--store", store_uri)  # free again: it finishes the run


def test_expired_lease_is_taken_over(tmp_path, make_run):
    run = make_run([write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}])])
    dead = Lease(run.run_store, ttl=1)
    dead.acquire(now=0)  # expired long ago
    fresh = Lease(run.run_store)
    fresh.acquire()
    with pytest.raises(LeaseHeldError):
        dead.renew()
    fresh.renew()
    fresh.release()


def test_cancel_pauses_and_watch_resumes(tmp_path, store_uri, cli, make_run):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": f"x {i}"} for i in range(600)])
    run = make_run([path], chunks=2, workers=1, max_attempts=1, commit_records=20,
                   engine_options={"delay": 0.01, "batch": 1})
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.watch import WatchOptions, reconcile_once

    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    claim = Path(store_uri) / run.spec.run_id / "claims" / "0000.json"
    deadline = time.monotonic() + 30
    while not claim.exists():  # the worker holds chunk 0000 when the run is paused
        assert time.monotonic() < deadline
        time.sleep(0.02)
    result = cli("cancel", run.spec.run_id, "--store", store_uri)
    assert "asked 1 job(s) to stop" in result.output and "Resume with `launcher watch" in result.output
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert status["totals"]["states"] == {"CANCELLED": 2}
    assert status["paused"]["reason"] == "cancelled by `launcher cancel`"
    # The cancelled attempt does not count against --max-attempts 1: watch resumes and finishes.
    result = cli("watch", run.spec.run_id, "--store", store_uri)
    assert "resuming paused run" in result.output and "all 2 chunk(s) done" in result.output
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert status["totals"]["states"] == {"DONE": 2} and status["paused"] is None
    assert [c["attempts"] for c in status["chunks"]] == [2, 1]
    assert status["totals"]["records_done"] == 600


def test_failed_worker_is_relaunched_then_given_up(tmp_path, store_uri, cli, make_run, monkeypatch):
    # An engine that cannot load makes every attempt exit 2: a config failure, not retried.
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}])
    run = make_run([path])
    spec_path = Path(store_uri) / run.spec.run_id / "run.json"
    spec = json.loads(spec_path.read_text())
    spec["engine"] = "missing-engine"
    spec_path.write_text(json.dumps(spec))
    result = cli("watch", run.spec.run_id, "--store", store_uri, expect=1)
    assert "chunk 0000 failed" in result.output and "no worker can run" in result.output
    assert "configuration error" in result.output
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert status["chunks"][0]["attempts"] == 1
    assert [w["launches"] for w in status["workers"]] == [1], "a configuration error is not relaunched"
    log = (Path(store_uri) / run.spec.run_id / "logs" / f"{run.spec.run_id}-w0-a1.log").read_text()
    assert "unknown engine 'missing-engine'" in log


def test_s3_inputs_and_store_end_to_end(tmp_path, cli, prompts, s3_bucket, s3_store_uri, s3_admin_client):
    """Inputs under an s3:// prefix, the store on S3 (moto over HTTP), workers as real subprocesses."""
    s3_admin_client.put_object(Bucket=s3_bucket, Key="in/part-0.jsonl", Body=prompts.read_bytes())
    s3_admin_client.put_object(Bucket=s3_bucket, Key="in/part-1.jsonl", Body=b'{"prompt": "last one"}\n\n')
    s3_admin_client.put_object(Bucket=s3_bucket, Key="in/_SUCCESS", Body=b"")
    result = cli("submit", f"s3://{s3_bucket}/in/", "--chunks", 3, "--engine", "echo", "--store", s3_store_uri,
                 "--run-name", "s3run", "--workers", 3, "--watch")
    assert "2 input(s)" in result.output
    out = tmp_path / "s3.jsonl"
    result = cli("collect", "s3run", "--store", s3_store_uri, "-o", out)
    rows = read_jsonl(out)
    assert len(rows) == 121 and rows[-1]["response"]["body"]["choices"][0]["text"] == "one last"
    assert "1 blank input lines skipped" in result.output
    status = json.loads(cli("status", "s3run", "--store", s3_store_uri, "--json").output)
    assert set(status["totals"]["states"]) == {"DONE"} and status["totals"]["chunks"] >= 3  # and any split off
