"""Whole runs with the real vLLM CPU engine and the bundled SmolLM2: end to end, and through kills."""

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

from chunkpilot.layout import PartName
from tests.conftest import read_jsonl

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "prompts.jsonl"


@pytest.fixture(scope="module")
def engine_input(tmp_path_factory) -> Path:
    """240 varied records (the examples three times over, with distinct custom_ids), max_tokens <= 12."""
    path = tmp_path_factory.mktemp("engine") / "prompts.jsonl"
    lines = []
    for rep in range(3):
        for line in EXAMPLES.read_text().splitlines():
            record = json.loads(line)
            record["custom_id"] = f"{record['custom_id']}-{rep}"
            body = record.get("body", record)
            body["max_tokens"] = min(int(body.get("max_tokens", 12)), 12)
            lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def texts(rows: list[dict]) -> dict[str, str]:
    out = {}
    for r in rows:
        choice = r["response"]["body"]["choices"][0]
        out[r["custom_id"]] = choice["message"]["content"] if "message" in choice else choice["text"]
    return out


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, engine_input) -> list[dict]:
    """A fault-free 2-chunk run through the CLI, as a user would start it."""
    work = tmp_path_factory.mktemp("reference")
    store = work / "runs"
    env = {**os.environ, "CHUNKPILOT_POLL_SECONDS": "0.5"}
    launcher = [sys.executable, "-m", "launcher.cli"]
    done = subprocess.run([*launcher, "submit", str(engine_input), "--chunks", "2", "--workers", "2",
                           "--store", str(store), "--run-name", "ref", "--watch"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = work / "ref.jsonl"
    done = subprocess.run([*launcher, "collect", "ref", "--store", str(store), "-o", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return read_jsonl(out)


def test_local_vllm_run_end_to_end(engine_input, reference_run):
    inputs = [json.loads(line) for line in engine_input.read_text().splitlines()]
    assert [r["custom_id"] for r in reference_run] == [i["custom_id"] for i in inputs]
    assert all(r["error"] is None for r in reference_run)
    bodies = [r["response"]["body"] for r in reference_run]
    assert {b["model"] for b in bodies} == {"HuggingFaceTB/SmolLM2-135M-Instruct"}
    assert all(b["model_revision"].startswith("gguf-") for b in bodies)
    assert all(0 < b["usage"]["completion_tokens"] <= 12 for b in bodies)
    assert sum(1 for t in texts(reference_run).values() if t.strip()) == len(bodies)
    kinds = {b["object"] for b in bodies}
    assert kinds == {"chat.completion", "text_completion"}


def test_vllm_run_survives_kills(tmp_path, engine_input, reference_run, store_uri, make_run):
    """One chunk, killed (SIGKILL and SIGTERM) several times mid-generation: the output is exact."""
    run = make_run([engine_input], engine="vllm", commit_records=16, commit_seconds=1,
                   engine_options={"max_in_flight": 16})  # many small commits, so kills land mid-chunk
    logs = Path(store_uri) / run.spec.run_id / "logs"
    watch = subprocess.Popen([sys.executable, "-m", "launcher.cli", "watch", run.spec.run_id, "--store", store_uri,
                              "--interval", "0.5", "--max-attempts", "10"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    rng = random.Random(3)
    kills = []
    try:
        # SIGTERM last: the worker finishes what is in flight within its grace period, which may be all.
        for sig in (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM):
            attempt = len(kills) + 1
            pid_file = logs / f"{run.spec.run_id}-w0-a{attempt}.pid"  # one worker, relaunched after each kill
            deadline = time.monotonic() + 180
            # Kill only once this attempt has committed something, so every life makes progress.
            while not (pid_file.exists() and any(p.attempt == attempt for p in _parts(run))):
                assert time.monotonic() < deadline, "worker made no progress"
                assert watch.poll() is None, watch.stdout.read().decode()
                time.sleep(0.2)
            time.sleep(rng.uniform(0.2, 1.5))
            os.kill(int(pid_file.read_text()), sig)
            kills.append(sig.name)
        assert watch.wait(600) == 0, watch.stdout.read().decode()
    finally:
        watch.kill()
    out = tmp_path / "killed.jsonl"
    from chunkpilot.control.collect import collect

    report = collect(run, str(out))
    rows = read_jsonl(out)
    assert report.records == len(rows) == len(reference_run) and report.errors == 0
    assert [r["custom_id"] for r in rows] == [r["custom_id"] for r in reference_run]
    attempts = {p.attempt for p in _parts(run)}
    assert {1, 2, 3} <= attempts <= {1, 2, 3, 4}, "every attempt committed work, none started over"
    # Greedy decoding: the same answers as the run that was never interrupted.
    assert texts(rows) == texts(reference_run)


def _parts(run) -> list[PartName]:
    return [p for o in run.run_store.list("out/0000/") if (p := PartName.parse(o.key.rsplit("/", 1)[-1]))]


def test_sigterm_while_the_engine_loads_exits_75(tmp_path, engine_input, make_run):
    run = make_run([engine_input], engine="vllm")
    proc = subprocess.Popen([sys.executable, "-m", "worker", "--run", run.run_uri, "--worker", "w0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(3)  # vLLM takes longer than this to import and start
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 75
    assert b"before any work started" in proc.stdout.read()
    assert not list(run.run_store.list("out/"))
    claim = json.loads(run.run_store.get("claims/0000.json"))
    assert claim["state"] == "released", "its chunk is handed back at once"


def test_the_example_pipeline_runs_on_vllm_cpu(tmp_path):
    """examples/pipeline.yaml as README shows it, on the bundled models (SmolLM2 for the two model
    steps, MiniLM for the vectors), a few records: every step done; the kept records carry every
    step's field and a vector; what the filter dropped is in the dropped file, nothing lost."""
    for name in ("pipeline.yaml", "reviews.jsonl"):
        (tmp_path / name).write_bytes((ROOT / "examples" / name).read_bytes())
    env = {**os.environ, "CHUNKPILOT_POLL_SECONDS": "0.5"}
    launcher = [sys.executable, "-m", "launcher.cli"]
    done = subprocess.run([*launcher, "submit", "pipeline.yaml", "--chunks", "1", "--limit", "6", "--store", "runs",
                           "--run-name", "ex", "--watch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 3 step(s) done" in done.stderr + done.stdout
    collected = subprocess.run([*launcher, "collect", "ex", "--store", "runs", "-o", "final.jsonl"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stderr
    final = read_jsonl(tmp_path / "final.jsonl")
    dropped = read_jsonl(tmp_path / "final.dropped.jsonl") if (tmp_path / "final.dropped.jsonl").stat().st_size else []
    assert len(final) + len(dropped) == 6 and all(d["dropped_by"] == "keep_faithful" for d in dropped)
    for r in final:
        if r["summary_error"] is None and r["faithful_error"] is None:
            assert r["summary"].strip() and r["faithful"] == "yes" and len(r["vectors"]) == 384, r
