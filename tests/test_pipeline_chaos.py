"""Chaos for pipelines: a four-step pipeline (three model steps and a filter) on the echo engine
with workers SIGKILLed and SIGTERMed at random, in every step. Every surviving record holds every
step's field exactly once, in input order; the dropped records are exactly those the filter drops;
the output is the fault-free pipeline's, record for record."""

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
import yaml

from chunkpilot.pipeline.filters import compile_filter
from tests.test_chaos import live_worker_pids

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = [sys.executable, "-m", "launcher.cli"]
KEEP = "id % 4 != 1 and judged in ['yes', 'no']"
STEPS = [
    {"name": "draft", "prompt_template": "Draft for {{ body }}", "output_key": "draft"},
    {"name": "judge", "prompt_template": "{{ body }} => {{ draft }}", "choice": ["yes", "no"], "output_key": "judged"},
    {"name": "keep", "filter": KEEP},
    {"name": "polish", "prompt_template": "Polish: {{ draft }} ({{ judged }})", "output_key": "polished"},
]
COMMON = ["--chunks", "6", "--workers", "3", "--engine", "echo", "--engine-option", "delay=0.02",
          "--engine-option", "batch=2", "--commit-records", "10", "--commit-seconds", "0.5", "--max-attempts", "40"]


def run(*args: str, wait: float = 300) -> str:
    done = subprocess.run([*LAUNCHER, *args], cwd=ROOT, capture_output=True, text=True, timeout=wait)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def live_workers(store: Path, min_age: float) -> list[int]:
    """Live workers of every step run."""
    return [pid for logs in store.glob("*/logs") for pid in live_worker_pids(logs, min_age)]


def no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a field twice: {keys}"
    return dict(pairs)


def read(path: Path) -> list[dict]:
    return [json.loads(line, object_pairs_hook=no_duplicate_keys) for line in path.read_text().splitlines()]


@pytest.mark.chaos
def test_pipeline_under_worker_kills_matches_the_fault_free_pipeline(tmp_path):
    rng = random.Random(11)
    with open(tmp_path / "reviews.jsonl", "w") as f:
        for i in range(600):
            f.write(json.dumps({"id": i, "body": " ".join(rng.choice("abcdefgh") * rng.randint(1, 4) for _ in range(6))}) + "\n")
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"input": "reviews.jsonl", "steps": STEPS}))
    pipeline = str(tmp_path / "pipeline.yaml")

    base = tmp_path / "base"
    run("submit", pipeline, *COMMON, "--store", str(base), "--run-name", "p", "--watch")
    run("collect", "p", "--store", str(base), "-o", str(tmp_path / "base.jsonl"))

    store = tmp_path / "chaos"
    watch = subprocess.Popen([*LAUNCHER, "submit", pipeline, *COMMON, "--store", str(store), "--run-name", "p", "--watch"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    kills = 0
    try:
        started = time.monotonic()
        while watch.poll() is None:
            assert time.monotonic() - started < 500, "the chaos pipeline did not finish in time"
            time.sleep(rng.uniform(0.5, 1.2))
            pids = live_workers(store, min_age=1.5)
            if pids and kills < 10:
                try:
                    os.kill(rng.choice(pids), (signal.SIGKILL, signal.SIGTERM)[kills % 2])
                    kills += 1
                except ProcessLookupError:
                    pass
    finally:
        if watch.poll() is None:
            watch.kill()
        for pid in live_workers(store, 0):
            os.kill(pid, signal.SIGKILL)
    output = watch.stdout.read().decode()
    assert watch.returncode == 0, output
    assert kills >= 4, kills
    run("collect", "p", "--store", str(store), "-o", str(tmp_path / "chaos.jsonl"))

    final, dropped = read(tmp_path / "chaos.jsonl"), read(tmp_path / "chaos.dropped.jsonl")
    keep = compile_filter(KEEP)
    assert [r["id"] for r in final] == sorted(r["id"] for r in final)
    for r in final:
        assert keep.keep(r)
        for key in ("draft", "judged", "polished"):
            assert r[key] is not None and r[f"{key}_error"] is None, r
    assert all(not keep.keep(d["record"]) and d["dropped_by"] == "keep" for d in dropped)
    assert sorted([r["id"] for r in final] + [d["record"]["id"] for d in dropped]) == list(range(600))
    assert final == read(tmp_path / "base.jsonl")
    assert dropped == read(tmp_path / "base.dropped.jsonl")
