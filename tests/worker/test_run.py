"""The worker as a process: resume after SIGKILL, graceful SIGTERM, zombies, changed inputs, and
one engine for many chunks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from chunkpilot.layout import PartName
from chunkpilot.output import position_of_line
from chunkpilot.spec import SuccessMarker
from chunkpilot.control.collect import collect
from tests.conftest import big_prompts
from worker.commit import CommittedSet

ROOT = Path(__file__).resolve().parents[2]


def start_worker(run, worker="w0", attempt=1, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--run", run.run_uri, "--worker", worker, "--attempt", str(attempt)],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def claim_of(run, chunk="0000") -> dict:
    return __import__("json").loads(run.run_store.get(f"claims/{chunk}.json"))


def committed_parts(run, chunk="0000") -> list[PartName]:
    return [p for o in run.run_store.list(f"out/{chunk}/") if (p := PartName.parse(o.key.rsplit("/", 1)[-1]))]


def wait_for_parts(run, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(committed_parts(run)) < count:
        assert time.monotonic() < deadline, "worker committed nothing in time"
        time.sleep(0.02)


def merged(run) -> list[dict]:
    out = Path(run.run_store.uri).parent / "merged.jsonl"
    collect(run, str(out))
    return [__import__("json").loads(line) for line in out.read_bytes().splitlines()]


def test_worker_runs_a_chunk_to_done(tmp_path, make_run):
    run = make_run([big_prompts(tmp_path / "in.jsonl", 300)], commit_records=50)
    proc = start_worker(run)
    assert proc.wait(60) == 0, proc.stdout.read().decode()
    marker = SuccessMarker.from_json(run.run_store.get("out/0000/_SUCCESS"))
    assert (marker.records, marker.ok, marker.errors, marker.resumed_records) == (300, 300, 0, 0)
    assert len(committed_parts(run)) >= 5  # echo answers 64 per step; a commit follows every >= 50
    assert [r["custom_id"] for r in merged(run)] == [f"r{i}" for i in range(300)]
    assert list(run.run_store.keys("answers/")) == [], "answer columns are for Parquet runs"
    # Running it again does nothing: the marker says done.
    parts_before = sorted(committed_parts(run))
    again = start_worker(run, attempt=2)
    assert again.wait(30) == 0 and sorted(committed_parts(run)) == parts_before


def test_sigkill_loses_at_most_one_commit_window(tmp_path, make_run):
    window = 20
    run = make_run([big_prompts(tmp_path / "in.jsonl", 400)], commit_records=window, commit_seconds=60,
                   engine_options={"delay": 0.01, "batch": 1, "trace": str(tmp_path / "trace1")})
    proc = start_worker(run)
    wait_for_parts(run, 3)
    time.sleep(0.13)  # land between commits
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = sum(p.records for p in committed_parts(run))
    first_answered = set((tmp_path / "trace1").read_text().split())
    assert 0 < before < 400

    proc = start_worker(run, attempt=2)
    assert proc.wait(60) == 0, proc.stdout.read().decode()
    answered_twice = first_answered & set((tmp_path / "trace1").read_text().split()[len(first_answered):])
    assert len(answered_twice) <= window, f"{len(answered_twice)} records regenerated"
    marker = SuccessMarker.from_json(run.run_store.get("out/0000/_SUCCESS"))
    assert marker.resumed_records == before and marker.records == 400
    assert [r["custom_id"] for r in merged(run)] == [f"r{i}" for i in range(400)]


def held_keys(run, chunk="0000") -> set:
    return {position_of_line(line) for o in run.run_store.list(f"held/{chunk}/") for line in run.run_store.get(o.key).splitlines()}


def test_sigkill_with_answers_out_of_order_loses_at_most_one_commit_window(tmp_path, make_run):
    """Every other record straggles: the single records between them are too short a run for a
    part (min_run 2), so they wait in the held object; a kill loses only what finished since the
    last commit."""
    window = 32
    run = make_run([big_prompts(tmp_path / "in.jsonl", 600)], commit_records=window, commit_seconds=60,
                   engine_options={"delay": 0.004, "batch": 1, "straggle_every": 2, "straggle_steps": 300,
                                   "trace": str(tmp_path / "trace"), "max_in_flight": 128})
    proc = start_worker(run)
    deadline = time.monotonic() + 30
    while len(held_keys(run)) < 2 * window:
        assert time.monotonic() < deadline and proc.poll() is None, "nothing held in time"
        time.sleep(0.01)
    time.sleep(0.05)  # land between commits
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    parts = committed_parts(run)
    in_parts = sum(p.records for p in parts)
    held = {k for k in held_keys(run) if k not in CommittedSet(parts)}
    first_answered = set((tmp_path / "trace").read_text().split())
    assert len(held) > in_parts, "most finished answers were behind a straggler, not in parts"

    proc = start_worker(run, attempt=2)
    assert proc.wait(60) == 0, proc.stdout.read().decode()
    answered_twice = first_answered & set((tmp_path / "trace").read_text().split()[len(first_answered):])
    assert len(answered_twice) <= window, f"{len(answered_twice)} records regenerated"
    marker = SuccessMarker.from_json(run.run_store.get("out/0000/_SUCCESS"))
    assert (marker.records, marker.resumed_records) == (600, in_parts + len(held))
    assert list(run.run_store.list("held/0000/")) == [], "held objects are deleted once the chunk is done"
    assert [r["custom_id"] for r in merged(run)] == [f"r{i}" for i in range(600)]


def test_sigterm_commits_what_finished_and_exits_75(tmp_path, make_run):
    run = make_run([big_prompts(tmp_path / "in.jsonl", 400)], commit_records=1000, commit_seconds=60,
                   engine_options={"delay": 0.01, "batch": 4, "trace": str(tmp_path / "trace")})
    proc = start_worker(run)
    deadline = time.monotonic() + 30
    while not (tmp_path / "trace").exists() or len((tmp_path / "trace").read_text().split()) < 40:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 75
    answered = len((tmp_path / "trace").read_text().split())
    committed = sum(p.records for p in committed_parts(run))
    assert committed == answered, "everything answered before the stop is committed"
    progress = __import__("json").loads(run.run_store.get("progress/0000.json"))
    assert progress["state"] == "stopped"


def test_a_worker_stopped_past_its_lease_is_taken_over_and_commits_nothing_after_it_wakes(tmp_path, make_run):
    """SIGSTOP a worker mid-chunk for longer than its claim's lease: another worker takes the chunk
    over and finishes it; the first, woken up, finds its claim gone and stops feeding the chunk."""
    run = make_run([big_prompts(tmp_path / "in.jsonl", 600)], commit_records=25, commit_seconds=0.2,
                   engine_options={"delay": 0.01, "batch": 8})
    ttl = {"CHUNKPILOT_CLAIM_TTL": "1.5"}
    a = start_worker(run, "w0", **ttl)
    wait_for_parts(run, 2)
    a.send_signal(signal.SIGSTOP)
    stopped_with = {p for p in committed_parts(run) if p.attempt == 1}
    time.sleep(2.0)  # its lease runs out
    b = start_worker(run, "w1", **ttl)
    assert b.wait(60) == 0, b.stdout.read().decode()
    assert claim_of(run)["worker"] == "w1" and claim_of(run)["attempt"] == 2 and claim_of(run)["state"] == "done"
    a.send_signal(signal.SIGCONT)
    assert a.wait(30) == 0
    log = a.stdout.read().decode()
    assert "lost its claim" in log and "attempt 1 was taken over" in log, log
    after = {p for p in committed_parts(run) if p.attempt == 1}
    # Stopped between its last renewal and its write, it could land that one part (a correct answer
    # to its interval, which collect's cover handles); never more.
    assert stopped_with <= after and len(after - stopped_with) <= 1
    assert [r["custom_id"] for r in merged(run)] == [f"r{i}" for i in range(600)]


def test_one_worker_answers_every_chunk_with_one_engine(tmp_path, make_run):
    import json

    run = make_run([big_prompts(tmp_path / "in.jsonl", 500)], chunks=5, commit_records=40)
    proc = start_worker(run, "w0")
    assert proc.wait(60) == 0, proc.stdout.read().decode()
    beat = json.loads(run.run_store.get("workers/w0/a1.json"))
    assert (beat["state"], beat["engine_starts"], beat["chunks_done"]) == ("done", 1, 5)
    assert beat["first_answer_at"] >= beat["ready_at"] >= beat["started_at"]
    assert beat["max_in_flight"] == 64 + 32, "the echo engine's batch plus a read-ahead"
    assert all(claim_of(run, c)["state"] == "done" for c in run.spec.chunk_ids)
    assert [r["custom_id"] for r in merged(run)] == [f"r{i}" for i in range(500)]


def test_a_changed_input_fails_its_chunks_for_good(tmp_path, make_run):
    path = big_prompts(tmp_path / "in.jsonl", 10)
    run = make_run([path])
    with open(path, "ab") as f:
        f.write(b'{"prompt": "appended later"}\n')
    proc = start_worker(run)
    assert proc.wait(30) == 0, "nothing left it could answer"
    assert b"changed after the run was planned" in proc.stdout.read()
    claim = claim_of(run)
    assert claim["state"] == "failed" and "changed after the run was planned" in claim["reason"]


def test_a_run_that_is_not_there_is_a_config_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "worker", "--run", str(tmp_path / "nope"), "--worker", "w0"],
                          cwd=ROOT, capture_output=True)
    assert proc.returncode == 2 and b"no run at" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "worker", "--run", str(tmp_path), "--worker", "x1"], cwd=ROOT,
                          capture_output=True)
    assert proc.returncode == 2 and b"invalid worker id 'x1'" in proc.stderr


def _records_without_prompt(path, n):
    from tests.conftest import write_jsonl

    return write_jsonl(path, [{"id": i, "text": "no prompt"} if i % 4 else {"id": i, "prompt": f"ok {i}"} for i in range(n)])


def test_error_codes_are_counted_across_attempts_in_heartbeat_and_marker(tmp_path, make_run):
    import json

    run = make_run([_records_without_prompt(tmp_path / "in.jsonl", 400)], commit_records=10,
                   engine_options={"delay": 0.01, "batch": 2})
    proc = start_worker(run)
    wait_for_parts(run, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert start_worker(run, attempt=2).wait(60) == 0
    marker = SuccessMarker.from_json(run.run_store.get("out/0000/_SUCCESS"))
    assert marker.error_codes == {"missing_prompt": 300}, "the first attempt's committed errors are counted once"
    beat = json.loads(run.run_store.get("progress/0000.json"))
    assert beat["state"] == "done" and beat["error_codes"] == {"missing_prompt": 300}
    assert sum(p.errors for p in committed_parts(run)) >= 300


def test_a_chunk_whose_first_records_all_fail_alike_stops_early_for_good(tmp_path, make_run):
    import json

    from tests.conftest import write_jsonl

    path = write_jsonl(tmp_path / "in.jsonl", [{"text": f"no prompt {i}"} for i in range(500)])
    run = make_run([path], commit_records=50)
    proc = start_worker(run)
    assert proc.wait(30) == 0
    beat = json.loads(run.run_store.get("progress/0000.json"))
    assert beat["state"] == "failed" and "the first 32 records all failed with missing_prompt" in beat["reason"]
    assert claim_of(run)["state"] == "failed" and "first 32 records" in claim_of(run)["reason"]
    assert 32 <= sum(p.records for p in committed_parts(run)) < 500, "it stopped early, keeping what it wrote"
    # With the budget off (--max-error-rate 1), the same input runs to the end.
    run = make_run([path], max_error_rate=1.0)
    assert start_worker(run).wait(30) == 0
    assert SuccessMarker.from_json(run.run_store.get("out/0000/_SUCCESS")).errors == 500


def test_a_worker_that_cannot_start_its_engine_says_why_in_its_heartbeat(tmp_path, make_run):
    import json

    run = make_run([big_prompts(tmp_path / "in.jsonl", 10)])
    spec = json.loads(run.run_store.get("run.json"))
    spec["engine"] = "no-such-engine"
    run.run_store.put("run.json", json.dumps(spec).encode())
    assert start_worker(run).wait(30) == 2
    beat = json.loads(run.run_store.get("progress/0000.json"))
    assert beat["state"] == "failed" and "unknown engine 'no-such-engine'" in beat["reason"]


def test_a_parquet_run_writes_each_parts_answers_in_columns(tmp_path, make_run):
    """Beside every part, its answers in columns, row for row; an answers/ folder that cannot be
    written costs the columns (collect reads the lines), not the run."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chunkpilot import answer_columns, layout

    pq.write_table(pa.table({"text": [f"row {i}" if i % 50 else None for i in range(300)]}), tmp_path / "in.parquet")
    run = make_run([tmp_path / "in.parquet"], commit_records=50, input_key="text", max_error_rate=1.0)
    proc = start_worker(run)
    assert proc.wait(60) == 0, proc.stdout.read().decode()
    parts = committed_parts(run)
    assert len(parts) >= 5
    for part in parts:
        key = layout.part("0000", part)
        table = answer_columns.decode_table(run.run_store.get(layout.answer_columns(key)))
        lines = run.run_store.get(key).splitlines()
        assert table.num_rows == part.records == len(lines)
        assert table.equals(answer_columns.table_of(lines))
    errors = [e for p in parts for e in answer_columns.decode_table(
        run.run_store.get(layout.answer_columns(layout.part("0000", p)))).column("error").to_pylist() if e]
    assert len(errors) == 6 and {e["code"] for e in errors} == {"template_error"}

    blocked = make_run([tmp_path / "in.parquet"], commit_records=50, input_key="text", max_error_rate=1.0)
    (Path(blocked.run_store.uri) / "answers").write_text("a file where the folder would go")
    proc = start_worker(blocked)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output
    assert "answer columns of" in output and "collect will read the part instead" in output
    out = tmp_path / "blocked.parquet"
    collect(blocked, str(out))
    assert pq.read_table(out).column("response").to_pylist()[1] == "1 row"
