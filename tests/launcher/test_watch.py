"""watch against real worker processes: hung workers, restarts without double launches, warm workers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from chunkpilot.spec import AttemptRecord
from chunkpilot.control.backends import make_backend
from chunkpilot.control.backends.local import LocalBackend
from chunkpilot.control.watch import WatchOptions, reconcile_once
from tests.conftest import big_prompts, read_jsonl


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_hung_worker_is_cancelled_relaunched_and_its_chunk_taken_back(tmp_path, store_uri, cli, make_run, monkeypatch):
    monkeypatch.setattr(LocalBackend, "kill_after_seconds", 1.0)
    monkeypatch.setenv("CHUNKPILOT_CLAIM_TTL", "2")  # the workers' leases: how soon a hung one is noticed
    run = make_run([big_prompts(tmp_path / "in.jsonl", 200)], commit_seconds=0.3,
                   engine_options={"delay": 0.03, "batch": 1})
    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    logs = Path(store_uri) / run.spec.run_id / "logs"
    pid_file = logs / f"{run.spec.run_id}-w0-a1.pid"
    wait_for(lambda: pid_file.exists() and list(run.run_store.list("out/0000/")))
    os.kill(int(pid_file.read_text()), signal.SIGSTOP)  # hung: alive, but its claim is no longer renewed

    result = cli("watch", run.spec.run_id, "--store", store_uri)
    assert "all 1 chunk(s) done" in result.output
    first = AttemptRecord.from_json(run.run_store.get("jobs/w0/a1.json"))
    assert first.cancelled_by_us and "hung" in first.reason and "chunk 0000 expired" in first.reason
    assert AttemptRecord.from_json(run.run_store.get("jobs/w0/a2.json")).attempt == 2
    cli("collect", run.spec.run_id, "--store", store_uri, "-o", tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [f"r{i}" for i in range(200)]


def test_restarted_watch_never_launches_an_attempt_twice(tmp_path, store_uri, make_run):
    run = make_run([big_prompts(tmp_path / "in.jsonl", 100)], chunks=3, workers=3,
                   engine_options={"delay": 0.05, "batch": 2})
    backend = make_backend(run.spec, store_uri)
    first, _ = reconcile_once(run, backend, WatchOptions(), set())
    assert len(first.launches) == 3
    # A second launcher (or this one restarted) sees the same store and launches nothing new.
    again, _ = reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    assert again.launches == []
    logs = Path(store_uri) / run.spec.run_id / "logs"
    wait_for(lambda: len(list(logs.glob("*.exit"))) == 3)
    assert sorted(p.name for p in logs.glob("*.log")) == [f"{run.spec.run_id}-w{i}-a1.log" for i in range(3)]
    job_ids = [AttemptRecord.from_json(run.run_store.get(f"jobs/w{i}/a1.json")).job_id for i in range(3)]
    assert job_ids == [f"{run.spec.run_id}-w{i}-a1" for i in range(3)]


def _prompt_less(path, n):
    from tests.conftest import write_jsonl

    return write_jsonl(path, [{"id": i, "title": f"title {i}", "body": "text"} for i in range(n)])


def test_a_run_where_every_record_fails_exits_non_zero_and_says_why(tmp_path, store_uri, cli):
    path = _prompt_less(tmp_path / "records.jsonl", 120)
    result = cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "nope",
                 "--watch", expect=1)
    assert "the first 32 records all failed with missing_prompt" in result.output  # each chunk stopped early
    assert "error budget exceeded" in result.output and "mostly: missing_prompt" in result.output
    status = json.loads(cli("status", "nope", "--store", store_uri, "--json").output)
    t = status["totals"]
    assert t["errors"] == t["records_done"] > 0 and t["ok"] == 0 and t["error_rate"] == 1.0
    assert set(t["error_codes"]) == {"missing_prompt"} and t["error_codes_complete"]
    assert {c["state"] for c in status["chunks"]} == {"FAILED"}
    assert all(c["records_done"] < 60 for c in status["chunks"]), "fail fast: not every record was written"
    assert all("missing_prompt" in c["reason"] for c in status["chunks"])


def test_a_small_failing_run_finishes_but_fails_its_error_budget(tmp_path, store_uri, cli):
    result = cli("submit", _prompt_less(tmp_path / "few.jsonl", 10), "--chunks", 1, "--engine", "echo",
                 "--store", store_uri, "--watch", expect=1)
    assert "10 of 10 records failed (100.0%), past the error budget of 10%" in result.output
    assert "paused" not in result.output  # nothing left to pause


def test_error_budget_pauses_the_run_and_watch_resumes_it_with_a_bigger_budget(tmp_path, store_uri, cli):
    from tests.conftest import write_jsonl

    # Every third record has no prompt: no chunk fails fast, but 33% is past the 10% budget. Judged on
    # the first chunk once it is done, the run pauses before the other two start.
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"text": "x"} if i % 3 == 0 else {"prompt": f"p {i}"} for i in range(900)])
    result = cli("submit", path, "--chunks", 3, "--workers", 1, "--engine", "echo", "--store", store_uri,
                 "--run-name", "budget", "--commit-records", 20, "--engine-option", "delay=0.01",
                 "--engine-option", "batch=4", "--watch", expect=1)
    assert "error budget exceeded" in result.output and "paused the run" in result.output
    logs = Path(store_uri) / "budget" / "logs"
    wait_for(lambda: len(list(logs.glob("*.exit"))) == len(list(logs.glob("*.pid"))))  # the stopped worker committed
    status = json.loads(cli("status", "budget", "--store", store_uri, "--json").output)
    assert "error budget exceeded" in status["paused"]["reason"]
    import re

    assert re.search(r"\d+ of \d+ records in finished chunks failed \(33\.\d%\)", result.output), result.output
    t = status["totals"]
    assert t["states"]["DONE"] == 1 and t["error_codes"]["missing_prompt"] == t["errors"] > 90
    result = cli("watch", "budget", "--store", store_uri, "--max-error-rate", 0.5)
    assert "resuming paused run" in result.output and "all 3 chunk(s) done" in result.output
    status = json.loads(cli("status", "budget", "--store", store_uri, "--json").output)
    assert status["totals"]["records_done"] == 900 and status["totals"]["errors"] == 300


def test_watch_killed_with_sigkill_is_taken_over_at_once(tmp_path, store_uri, cli, make_run, monkeypatch):
    import subprocess
    import sys

    run = make_run([big_prompts(tmp_path / "in.jsonl", 300)], chunks=2, commit_records=20,
                   engine_options={"delay": 0.01, "batch": 2})
    first = subprocess.Popen([sys.executable, "-m", "launcher.cli", "watch", run.spec.run_id, "--store", store_uri],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: any(run.run_store.list("lease.json")) and any(run.run_store.list("out/")))
    first.send_signal(signal.SIGKILL)
    time.sleep(0.5)  # not reaped: the dead watcher is a zombie, as after `kill -9` of a child nobody waits for
    started = time.monotonic()
    result = cli("watch", run.spec.run_id, "--store", store_uri)
    assert "all 2 chunk(s) done" in result.output
    assert time.monotonic() - started < 60, "the new watch did not wait for the dead one's lease to expire"
    first.wait()


def test_one_warm_worker_answers_every_chunk_back_to_back(tmp_path, store_uri, cli, make_run, monkeypatch):
    monkeypatch.setenv("CHUNKPILOT_POLL_SECONDS", "30")  # nothing waits for a poll: the worker pulls
    run = make_run([big_prompts(tmp_path / "in.jsonl", 90)], chunks=3, workers=1)
    cli("watch", run.spec.run_id, "--store", store_uri)
    assert [k for k in run.run_store.keys("jobs/") if k.endswith(".json")] == ["jobs/w0/a1.json"], "one launch"
    record = AttemptRecord.from_json(run.run_store.get("jobs/w0/a1.json"))
    assert record.state == "SUCCEEDED" and record.ended_at is not None, "the job record carries its end"
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    (worker,) = status["workers"]
    assert (worker["name"], worker["engine_starts"], worker["chunks_done"]) == (f"{run.spec.run_id}-w0-a1", 1, 3)
    assert status["totals"]["engine_starts"] == 1 and status["totals"]["states"] == {"DONE": 3}


def test_status_shows_a_rate_and_elapsed_time_during_and_after_a_run(tmp_path, store_uri, cli, make_run):
    run = make_run([big_prompts(tmp_path / "in.jsonl", 400)], commit_records=10, commit_seconds=0.2,
                   engine_options={"delay": 0.02, "batch": 2})
    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    wait_for(lambda: len(list(run.run_store.list("out/0000/"))) >= 3)
    during = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert during["totals"]["records_per_s"] > 0 and during["totals"]["elapsed_seconds"] > 0
    assert during["chunks"][0]["records_per_s"] > 0 and during["totals"]["eta_seconds"] is not None
    cli("watch", run.spec.run_id, "--store", store_uri)
    after = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert after["totals"]["finished"] and after["totals"]["records_per_s"] > 0
    assert after["totals"]["elapsed_seconds"] > 0 and after["totals"]["eta_seconds"] is None


def test_a_worker_starting_its_engine_for_longer_than_its_lease_keeps_its_claim(tmp_path, store_uri, cli, make_run,
                                                                                 monkeypatch):
    """Starting an engine can take minutes on a loaded machine: the claim is renewed meanwhile, so the
    worker is not taken for hung (a stopped one is: see the test above)."""
    monkeypatch.setenv("CHUNKPILOT_CLAIM_TTL", "1")
    run = make_run([big_prompts(tmp_path / "in.jsonl", 60)], chunks=2, workers=1,
                   engine_options={"start_seconds": 3.0})
    result = cli("watch", run.spec.run_id, "--store", store_uri)
    assert "all 2 chunk(s) done" in result.output
    record = AttemptRecord.from_json(run.run_store.get("jobs/w0/a1.json"))
    assert not record.cancelled_by_us and record.state == "SUCCEEDED"
    assert not run.run_store.exists("jobs/w0/a2.json"), "never relaunched"
    claim = json.loads(run.run_store.get("claims/0000.json"))
    assert (claim["attempt"], claim["worker_attempt"], claim["state"]) == (1, 1, "done")
