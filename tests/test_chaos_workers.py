"""Chaos for warm workers: many chunks, few workers, workers SIGKILLed at random and one SIGSTOPped
past its claim's lease then woken — every record exactly once, in input order, and no more engine
starts than worker launches."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import big_prompts, read_jsonl
from tests.test_chaos import live_worker_pids, stop_everything
from tests.workers import holders, worker_pid

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = [sys.executable, "-m", "launcher.cli"]
RUN = "warm"
RECORDS = 2400


@pytest.mark.chaos
def test_warm_workers_under_kills_and_a_stopped_worker_answer_every_record_once(tmp_path):
    store = tmp_path / "runs"
    env = {**os.environ, "CHUNKPILOT_CLAIM_TTL": "2", "CHUNKPILOT_POLL_SECONDS": "0.3"}
    submitted = subprocess.run(
        [*LAUNCHER, "submit", str(big_prompts(tmp_path / "in.jsonl", RECORDS)), "--chunks", "24", "--workers", "3",
         "--engine", "echo", "--engine-option", "delay=0.02", "--engine-option", "batch=4", "--commit-records", "20",
         "--commit-seconds", "1", "--max-attempts", "20", "--store", str(store), "--run-name", RUN],
        cwd=ROOT, env=env, capture_output=True, text=True)
    assert submitted.returncode == 0, submitted.stderr
    run_dir, jobs_dir = store / RUN, store / RUN / "logs"
    watch = subprocess.Popen([*LAUNCHER, "watch", RUN, "--store", str(store)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rng = random.Random(11)
    kills, stopped = 0, None
    try:
        started = time.monotonic()
        while watch.poll() is None:
            assert time.monotonic() - started < 600, "the run did not finish in time"
            time.sleep(rng.uniform(0.6, 1.2))
            if stopped is None and time.monotonic() - started > 3:
                held = [(c, worker_pid(run_dir, claim)) for c, claim in holders(run_dir).items()]
                held = [(c, pid) for c, pid in held if pid]
                if held:
                    chunk, pid = rng.choice(held)
                    try:
                        os.kill(pid, signal.SIGSTOP)  # hung mid-chunk: its lease runs out, another worker takes over
                        stopped = (pid, time.monotonic(), chunk)
                    except ProcessLookupError:  # it had just ended: pick again next round
                        pass
                continue
            if stopped is not None and len(stopped) == 3 and time.monotonic() - stopped[1] > 5:
                try:
                    os.kill(stopped[0], signal.SIGCONT)  # woken after its lease was taken (if watch did not first)
                except ProcessLookupError:  # watch cancelled it as hung first (SIGTERM + SIGCONT), and it ended
                    pass
                stopped = (*stopped, "woken")
            pids = [p for p in live_worker_pids(jobs_dir, min_age=1.5) if stopped is None or p != stopped[0]]
            if pids and kills < 6:
                try:
                    os.kill(rng.choice(pids), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
    except BaseException:
        stop_everything(watch, jobs_dir)
        raise
    output = watch.stdout.read().decode()
    assert watch.returncode == 0, output
    assert kills >= 3 and stopped is not None, (kills, stopped)

    out = tmp_path / "out.jsonl"
    collected = subprocess.run([*LAUNCHER, "collect", RUN, "--store", str(store), "-o", str(out)], cwd=ROOT, env=env,
                               capture_output=True, text=True)
    assert collected.returncode == 0, collected.stderr
    assert [r["custom_id"] for r in read_jsonl(out)] == [f"r{i}" for i in range(RECORDS)], "each record once, in order"

    status = json.loads(subprocess.run([*LAUNCHER, "status", RUN, "--store", str(store), "--json"], cwd=ROOT, env=env,
                                       capture_output=True, text=True, check=True).stdout)
    launches = sum(w["launches"] for w in status["workers"])
    assert len(status["workers"]) == 3 and set(status["totals"]["states"]) == {"DONE"} and status["totals"]["chunks"] >= 24
    assert status["totals"]["engine_starts"] <= launches, "one engine start per worker launch at most"
    assert launches <= 3 + kills + 1, "relaunches only for what was killed or hung"
    stopped_chunk = stopped[2]
    claim = json.loads((run_dir / "claims" / f"{stopped_chunk}.json").read_text())
    # Finished: by another attempt once its lease ran out, or by the stopped worker itself if it was woken
    # before anyone took the chunk over (its renewal then still matched). A woken zombie committing
    # nothing after a takeover is tested deterministically in tests/worker/test_run.py.
    assert claim["state"] == "done", claim
