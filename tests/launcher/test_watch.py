"""watch against real worker processes: stuck jobs, restarts without double launches."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from launcher.backends import make_backend
from launcher.backends.local import LocalBackend
from launcher.spec import AttemptRecord
from launcher.watch import WatchOptions, reconcile_once
from tests.conftest import big_prompts, read_jsonl


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_stuck_job_is_cancelled_and_relaunched(tmp_path, store_uri, cli, make_run, monkeypatch):
    monkeypatch.setattr(LocalBackend, "kill_after_seconds", 1.0)
    run = make_run([big_prompts(tmp_path / "in.jsonl", 200)], commit_seconds=0.3,
                   engine_options={"delay": 0.03, "batch": 1})
    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    logs = Path(store_uri) / run.spec.run_id / "logs"
    pid_file = logs / f"{run.spec.run_id}-0000-a1.pid"
    wait_for(lambda: pid_file.exists() and list(run.run_store.list("out/0000/")))
    os.kill(int(pid_file.read_text()), signal.SIGSTOP)  # hung: alive, but no heartbeat

    result = cli("watch", run.spec.run_id, "--store", store_uri, "--stuck-after", 2)
    assert "all 1 chunk(s) done" in result.output
    first = AttemptRecord.from_json(run.run_store.get("jobs/0000/a1.json"))
    assert first.cancelled_by_us and "heartbeat" in first.reason
    assert AttemptRecord.from_json(run.run_store.get("jobs/0000/a2.json")).attempt == 2
    cli("collect", run.spec.run_id, "--store", store_uri, "-o", tmp_path / "out.jsonl")
    assert [r["custom_id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [f"r{i}" for i in range(200)]


def test_restarted_watch_never_launches_an_attempt_twice(tmp_path, store_uri, make_run):
    run = make_run([big_prompts(tmp_path / "in.jsonl", 100)], chunks=3, parallel=3,
                   engine_options={"delay": 0.05, "batch": 2})
    backend = make_backend(run.spec, store_uri)
    first, _ = reconcile_once(run, backend, WatchOptions(), set())
    assert len(first.launches) == 3
    # A second launcher (or this one restarted) sees the same store and launches nothing new.
    again, _ = reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    assert again.launches == []
    logs = Path(store_uri) / run.spec.run_id / "logs"
    wait_for(lambda: len(list(logs.glob("*.exit"))) == 3)
    assert sorted(p.name for p in logs.glob("*.log")) == [f"{run.spec.run_id}-000{i}-a1.log" for i in range(3)]
    status = json.loads(json.dumps([AttemptRecord.from_json(run.run_store.get(f"jobs/000{i}/a1.json")).job_id for i in range(3)]))
    assert status == [f"{run.spec.run_id}-000{i}-a1" for i in range(3)]
