"""No tail: an idle worker asks the slowest chunk's holder to split, and claims the remainder.

Real worker processes on a local store with the echo engine. Interleavings are forced by waiting
for what the store shows (a part, a claim, a child manifest), never by sleeping and hoping."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from chunkpilot import layout, splits
from chunkpilot.chunks import run_chunk_ids
from chunkpilot.errors import StoreError
from chunkpilot.formats import get_format
from chunkpilot.spec import ChunkManifest, SuccessMarker, WorkerBeat
from chunkpilot.control.collect import collect
from tests.conftest import big_prompts

ROOT = Path(__file__).resolve().parents[2]


def start_worker(run, worker: str, log: Path, attempt: int = 1, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "--run", run.run_uri, "--worker", worker, "--attempt", str(attempt)],
        cwd=ROOT, env={**os.environ, **env}, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
    )


def wait_until(what, timeout: float = 60.0, why: str = ""):
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, f"timed out waiting for {why or what}"
        time.sleep(0.02)
    return found


def exits(proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"worker did not exit:\n{log.read_text()[-4000:]}") from None


def claim(run, chunk: str) -> dict | None:
    try:
        return json.loads(run.run_store.get(layout.claim(chunk)))
    except Exception:  # noqa: BLE001 - not there yet
        return None


def parts(run, chunk: str) -> list[str]:
    return [o.key for o in run.run_store.list(layout.outputs(chunk)) if o.key.endswith(".jsonl")]


def running(run, chunk: str) -> bool:
    """The chunk's holder has committed a part and says so in its heartbeat (what an asker reads)."""
    try:
        beat = json.loads(run.run_store.get(layout.progress(chunk)))
    except Exception:  # noqa: BLE001 - not there yet
        return False
    return beat["state"] == "running" and beat["units_done"] > 0


def manifest(run, chunk: str) -> ChunkManifest:
    return ChunkManifest.from_json(run.run_store.get(layout.manifest(chunk)))


def beat(run, worker: str, attempt: int = 1) -> WorkerBeat:
    return WorkerBeat.from_json(run.run_store.get(layout.worker_beat(worker, attempt)))


def check_exactly_once(run, n: int, tmp_path: Path) -> list[str]:
    """Every chunk done, collect holds r0..r{n-1} once each in input order, and each chunk's
    _SUCCESS counts exactly the records of its (cut) ranges. Returns the chunk ids."""
    chunks = run_chunk_ids(run.run_store, run.spec)
    fmt = get_format(run.spec.input_format)
    total = 0
    for chunk in chunks:
        marker = SuccessMarker.from_json(run.run_store.get(layout.done_marker(chunk)))
        m = manifest(run, chunk)
        records = sum(1 for r in fmt.records(run.spec.inputs, m) if not r.blank)
        assert marker.records == records and marker.units == m.size, (chunk, marker.records, records)
        total += marker.records
    assert total == n
    out = tmp_path / "merged.jsonl"
    report = collect(run, str(out))
    assert report.mismatched_chunks == [] and report.records == n and report.duplicate_custom_ids == 0
    assert [json.loads(line)["custom_id"] for line in out.read_bytes().splitlines()] == [f"r{i}" for i in range(n)]
    return chunks


FAST = {"delay": 0.02, "batch": 4, "max_in_flight": 8}


def test_an_idle_worker_takes_the_rest_of_a_slow_chunk_and_splits_recurse(tmp_path, make_run):
    """w0 holds the only chunk; w1 (five times slower) asks, w0 answers, w1 claims 0000_99. Then
    0000_99 is the chunk with the longest time to go: whoever is idle next splits *it* (0000_99_99)."""
    n = 800
    run = make_run([big_prompts(tmp_path / "in.jsonl", n)], commit_records=8, commit_seconds=0.3,
                   engine_options={**FAST, "slow_worker": "w1", "slow_factor": 5})
    logs = {w: tmp_path / f"{w}.log" for w in ("w0", "w1", "w2")}
    w0 = start_worker(run, "w0", logs["w0"])
    wait_until(lambda: running(run, "0000"), why="w0's first part, in its heartbeat")
    w1 = start_worker(run, "w1", logs["w1"])
    wait_until(lambda: (c := claim(run, "0000_99")) and c["worker"] == "w1", why="w1 claiming the split")
    assert manifest(run, "0000").children[0] == "0000_99"
    wait_until(lambda: running(run, "0000_99"), why="w1's first part of 0000_99, in its heartbeat")
    w2 = start_worker(run, "w2", logs["w2"])
    for w, proc in (("w0", w0), ("w1", w1), ("w2", w2)):
        assert exits(proc, logs[w]) == 0, logs[w].read_text()[-4000:]
    chunks = check_exactly_once(run, n, tmp_path)
    assert "0000_99_99" in chunks, chunks  # the slow child was split in turn
    assert chunks == sorted(chunks)
    assert beat(run, "w0").splits_given >= 1 and beat(run, "w1").splits_taken >= 1
    assert beat(run, "w1").splits_given >= 1  # w1 answered the request for its slow child
    assert list(run.run_store.keys(layout.SPLITS)) == []


def test_a_holder_killed_after_splitting_is_taken_over_on_its_cut_range(tmp_path, make_run):
    """w0 splits, then dies (SIGKILL): w1, done with the child, asks the dead holder in vain,
    withdraws, and once the lease runs out takes 0000 over — reading the cut manifest, so the
    child's records are answered once."""
    n = 600
    run = make_run([big_prompts(tmp_path / "in.jsonl", n)], commit_records=8, commit_seconds=0.3,
                   engine_options={**FAST, "slow_worker": "w0", "slow_factor": 5})
    ttl = {"CHUNKPILOT_CLAIM_TTL": "3"}
    logs = {w: tmp_path / f"{w}.log" for w in ("w0", "w1")}
    w0 = start_worker(run, "w0", logs["w0"], **ttl)
    wait_until(lambda: running(run, "0000"), why="w0's first part, in its heartbeat")
    w1 = start_worker(run, "w1", logs["w1"], **ttl)
    wait_until(lambda: claim(run, "0000_99"), why="the child claimed")
    cut = manifest(run, "0000")
    assert cut.children == ("0000_99",)
    w0.send_signal(signal.SIGKILL)
    w0.wait(10)
    assert exits(w1, logs["w1"]) == 0, logs["w1"].read_text()[-4000:]
    assert claim(run, "0000")["worker"] == "w1" and claim(run, "0000")["attempt"] == 2
    # The takeover answered the cut range: no part of 0000 reaches into the child's.
    end = (cut.ranges[-1].source, cut.ranges[-1].end)
    for key in parts(run, "0000"):
        name = layout.PartName.parse(key.rsplit("/", 1)[-1])
        assert name.end <= end, (key, end)
    check_exactly_once(run, n, tmp_path)


def test_a_split_that_would_hand_over_too_little_is_refused(tmp_path, make_run):
    """40 records, commit_records 16: what lies past the holder's read-ahead is under two commits'
    worth, so it refuses; the asker, with nothing worth splitting, exits 0 while w0 still runs."""
    n = 40
    run = make_run([big_prompts(tmp_path / "in.jsonl", n)], commit_records=16, commit_seconds=0.3,
                   engine_options={"delay": 0.15, "batch": 1, "max_in_flight": 8})
    logs = {w: tmp_path / f"{w}.log" for w in ("w0", "w1")}
    w0 = start_worker(run, "w0", logs["w0"])
    wait_until(lambda: (c := claim(run, "0000")) and c["state"] == "held", why="w0's claim")
    wait_until(lambda: running(run, "0000"), why="w0 running")
    w1 = start_worker(run, "w1", logs["w1"])
    assert exits(w1, logs["w1"]) == 0
    assert w0.poll() is None, "the holder should still be answering"
    assert "refused a split" in wait_until(lambda: "refused a split" in logs["w0"].read_text() and logs["w0"].read_text())
    assert manifest(run, "0000").children == ()
    assert [k for k in run.run_store.keys(layout.CHUNKS)] == ["chunks/0000.json"]
    assert list(run.run_store.keys(layout.SPLITS)) == []
    assert exits(w0, logs["w0"]) == 0
    check_exactly_once(run, n, tmp_path)


def test_collect_over_a_split_run_in_every_format(tmp_path, make_run):
    """A split run collects in the OpenAI, records and Parquet formats, in input order, once each."""
    n = 400
    run = make_run([big_prompts(tmp_path / "in.jsonl", n)], commit_records=8, commit_seconds=0.3,
                   engine_options={**FAST, "slow_worker": "w0", "slow_factor": 5})
    logs = {w: tmp_path / f"{w}.log" for w in ("w0", "w1")}
    w0 = start_worker(run, "w0", logs["w0"])
    wait_until(lambda: running(run, "0000"), why="w0's first part, in its heartbeat")
    w1 = start_worker(run, "w1", logs["w1"])
    for w, proc in (("w0", w0), ("w1", w1)):
        assert exits(proc, logs[w]) == 0, logs[w].read_text()[-4000:]
    chunks = check_exactly_once(run, n, tmp_path)
    assert len(chunks) >= 2
    records = tmp_path / "records.jsonl"
    report = collect(run, str(records), fmt="records")
    rows = [json.loads(line) for line in records.read_bytes().splitlines()]
    assert report.records == n and report.mismatched_chunks == []
    assert [r["custom_id"] for r in rows] == [f"r{i}" for i in range(n)]
    assert all(r["response"] and r["response_error"] is None for r in rows)
    table = tmp_path / "out.parquet"
    report = collect(run, str(table))
    assert report.records == n and report.mismatched_chunks == []
    got = pq.read_table(table)
    assert got.column("custom_id").to_pylist() == [f"r{i}" for i in range(n)]
    assert got.column("response").to_pylist() == [r["response"] for r in rows]


def test_a_parquet_run_splits_by_rows_and_collects_in_order(tmp_path, make_run):
    """Parquet: a position is a row, every row a record start (its format's ``boundary``); the
    split run's Parquet output has the input's rows, in order, once each."""
    import pyarrow as pa

    n = 500
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"custom_id": [f"r{i}" for i in range(n)], "text": [f"row {i} says hi" for i in range(n)]}),
                   source, row_group_size=64)
    run = make_run([source], input_key="text", commit_records=8, commit_seconds=0.3,
                   engine_options={**FAST, "slow_worker": "w0", "slow_factor": 5})
    logs = {w: tmp_path / f"{w}.log" for w in ("w0", "w1")}
    w0 = start_worker(run, "w0", logs["w0"])
    wait_until(lambda: running(run, "0000"), why="w0's first part, in its heartbeat")
    w1 = start_worker(run, "w1", logs["w1"])
    for w, proc in (("w0", w0), ("w1", w1)):
        assert exits(proc, logs[w]) == 0, logs[w].read_text()[-4000:]
    chunks = run_chunk_ids(run.run_store, run.spec)
    assert len(chunks) >= 2 and manifest(run, "0000").unit == "rows"
    assert sum(manifest(run, c).size for c in chunks) == n
    table = tmp_path / "out.parquet"
    report = collect(run, str(table))
    assert report.records == n and report.mismatched_chunks == []
    got = pq.read_table(table)
    assert got.column("custom_id").to_pylist() == [f"r{i}" for i in range(n)]
    assert all(got.column("response").to_pylist())


def test_a_watched_run_with_a_slow_worker_splits_and_status_counts_the_split_chunks(tmp_path, store_uri, cli, monkeypatch):
    """``submit --watch`` on the local backend, worker w1 five times slower: the watch ends with
    every chunk done, split remainders included; status counts them, its byte totals still add up
    to the input, and its worker rows say who gave and took splits; ``launcher runs`` agrees."""
    monkeypatch.setenv("CHUNKPILOT_POLL_SECONDS", "0.3")
    source = big_prompts(tmp_path / "in.jsonl", 1600)
    cli("submit", source, "--chunks", 2, "--workers", 2, "--engine", "echo", "--store", store_uri, "--run-name", "tail",
        "--commit-seconds", 0.3, "--commit-records", 8, "--engine-option", "delay=0.02", "--engine-option", "batch=4",
        "--engine-option", "max_in_flight=8", "--engine-option", "slow_worker=w1", "--engine-option", "slow_factor=5",
        "--watch")
    status = json.loads(cli("status", "tail", "--store", store_uri, "--json").output)
    totals, workers = status["totals"], {w["worker"]: w for w in status["workers"]}
    assert totals["chunks"] > 2 and totals["states"] == {"DONE": totals["chunks"]}
    assert totals["bytes_done"] == totals["bytes_total"] == source.stat().st_size
    assert totals["records_done"] == 1600
    assert workers["w1"]["splits_given"] >= 1 and workers["w0"]["splits_taken"] >= 1
    assert [r["chunk"] for r in status["chunks"]][:2] == ["0000", "0001"]
    runs = json.loads(cli("runs", "--store", store_uri, "--json").output)
    assert runs[0]["state"] == "done" and runs[0]["chunks"] == runs[0]["chunks_done"] == totals["chunks"]
    assert "splits given/taken" in cli("status", "tail", "--store", store_uri).output


class LandsThenFails:
    """A store whose first write of ``key`` lands (or not, ``lands=False``) and then answers with a
    StoreError, as an S3 put that landed but answered 503 does."""

    def __init__(self, inner, key: str, lands: bool):
        self.inner, self.key, self.lands, self.failed = inner, key, lands, False

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def put(self, key, data):
        if key == self.key and not self.failed:
            self.failed = True
            if self.lands:
                self.inner.put(key, data)
            self.inner.delete(layout.split_request("0000"))  # meanwhile the asker gave up: asked once only
            raise StoreError(f"503 on {key}")
        return self.inner.put(key, data)


def _run_chunk(run, store, chunk: str):
    from worker.chunk import ChunkOptions, ChunkRun, StopRequested
    from worker.engines.echo import EchoEngine
    from worker.journal import Journal

    journal = Journal(store, "w0", 1)
    journal.start()
    m = ChunkManifest.from_json(store.get(layout.manifest(chunk)))
    return ChunkRun(store, run.spec, m, EchoEngine(options={"batch": 4}), ChunkOptions(attempt=1, max_in_flight=8,
                    heartbeat_seconds=0.0, store_retry_seconds=5), journal, StopRequested()).run()


@pytest.mark.parametrize("lands", [True, False])
def test_a_hand_over_whose_parent_write_fails_holds_exactly_when_it_landed(tmp_path, make_run, lands):
    """The parent's cut manifest is written but the store answers an error (or it is not written):
    the holder reads the manifest back and stops at the cut only if it landed — never a record
    answered by both chunks, never one by neither."""
    from worker.chunk import ChunkOutcome

    n = 300
    run = make_run([big_prompts(tmp_path / "in.jsonl", n)], commit_records=8)
    assert splits.ask(run.run_store, "0000", "other-w1-a1", 0.0, time.time())
    store = LandsThenFails(run.run_store, layout.manifest("0000"), lands)
    assert _run_chunk(run, store, "0000") is ChunkOutcome.DONE
    assert store.failed
    chunks = run_chunk_ids(run.run_store, run.spec)
    if lands:
        assert chunks == ["0000", "0000_99"] and manifest(run, "0000").children == ("0000_99",)
        assert _run_chunk(run, run.run_store, "0000_99") is ChunkOutcome.DONE
    else:  # the child's manifest is an orphan: not a chunk
        assert chunks == ["0000"] and manifest(run, "0000").size == (tmp_path / "in.jsonl").stat().st_size
        assert run.run_store.exists(layout.manifest("0000_99"))
    check_exactly_once(run, n, tmp_path)


def test_collect_drops_what_a_zombie_wrote_past_its_chunks_cut(tmp_path, make_run):
    """A zombie of the parent (its claim taken over in the instant before a write) may land parts
    on the uncut range: one past the cut and one straddling it. Collect keeps the parent's records
    before the cut only; the child's are written once, by the child."""
    from chunkpilot.layout import PartName

    n = 300
    run = make_run([big_prompts(tmp_path / "in.jsonl", n)], commit_records=8)
    assert splits.ask(run.run_store, "0000", "other-w1-a1", 0.0, time.time())
    _run_chunk(run, run.run_store, "0000")
    _run_chunk(run, run.run_store, "0000_99")
    store = run.run_store

    def named(chunk):
        return sorted((PartName.parse(o.key.rsplit("/", 1)[-1]), o.key) for o in store.list(layout.outputs(chunk))
                      if PartName.parse(o.key.rsplit("/", 1)[-1]))

    (last, last_key), ((first, first_key), *rest) = named("0000")[-1], named("0000_99")
    straddling = store.get(last_key) + store.get(first_key)
    zombie = PartName(last.first, first.end, 9, 0, last.records + first.records)
    store.put(layout.part("0000", zombie), straddling)
    for seq, (part, key) in enumerate(rest, start=1):
        store.put(layout.part("0000", PartName(part.first, part.end, 9, seq, part.records)), store.get(key))
    check_exactly_once(run, n, tmp_path)
    records = tmp_path / "records.jsonl"
    report = collect(run, str(records), fmt="records")
    assert report.records == n and report.mismatched_chunks == [] and report.duplicate_custom_ids == 0
    assert [json.loads(line)["custom_id"] for line in records.read_bytes().splitlines()] == [f"r{i}" for i in range(n)]
