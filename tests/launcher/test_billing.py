"""Billing stops when the jobs stop, whoever looks: a run nobody watches is settled by `status`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from chunkpilot.spec import AttemptRecord
from tests.conftest import big_prompts


def test_a_run_nobody_watches_stops_accruing_once_its_jobs_end(tmp_path, store_uri, cli):
    cli("submit", big_prompts(tmp_path / "in.jsonl", 200), "--chunks", 4, "--workers", 2, "--engine", "echo",
        "--store", store_uri, "--run-name", "unwatched", "--price-per-hour", 2.0)
    logs = Path(store_uri) / "unwatched" / "logs"
    deadline = time.monotonic() + 60
    while len(list(logs.glob("*.exit"))) < 2:  # both workers ended by themselves: nothing left to claim
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first = json.loads(cli("status", "unwatched", "--store", store_uri, "--json").output)
    time.sleep(1.5)
    second = json.loads(cli("status", "unwatched", "--store", store_uri, "--json").output)
    for look in (first, second):
        cost = look["totals"]["cost"]
        assert set(look["totals"]["states"]) == {"DONE"} and look["totals"]["eta_seconds"] is None
        assert cost["per_hour_now"] == 0 and cost["projected"] == cost["so_far"] > 0
    assert second["totals"]["cost"]["gpu_seconds"] == first["totals"]["cost"]["gpu_seconds"], "nothing accrues"
    for slot in ("w0", "w1"):
        record = AttemptRecord.from_json((Path(store_uri) / "unwatched" / "jobs" / slot / "a1.json").read_bytes())
        exit_file = logs / f"unwatched-{slot}-a1.exit"
        assert record.state == "SUCCEEDED" and record.ended_at == exit_file.stat().st_mtime, "ended when its job did"
