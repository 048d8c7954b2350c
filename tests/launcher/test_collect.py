"""collect: a verified merge from part names and done markers, copied without reading the parts."""

from __future__ import annotations

import json

import pytest

from chunkpilot.errors import OutputError, StoreError
from chunkpilot.layout import PartName
from chunkpilot.spec import SuccessMarker
from chunkpilot.control.collect import collect
from tests.conftest import write_jsonl
from worker.loop import WorkerOptions, run_worker


def finish(run, chunks, attempt: int = 1) -> None:
    """Answer ``chunks`` with one worker (launch ``attempt`` of w0), in this process."""
    assert run_worker(run.run_uri, WorkerOptions(attempt=attempt, only=frozenset(chunks))) == 0


def lines_of(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def mixed_input(tmp_path):
    """90 records over 3 chunks: a custom_id used twice within chunk 0 and across chunks,
    unusable lines (error records) and blank lines."""
    records = []
    for i in range(90):
        if i in (5, 47):
            records.append(b"{not json\n")
        else:
            cid = "dup-a" if i in (2, 8, 70) else "dup-b" if i in (30, 88) else f"r{i}"
            records.append({"custom_id": cid, "prompt": f"record {i} of the mixed input"})
        if i % 20 == 0:
            records.append(b"   \n")
    return write_jsonl(tmp_path / "mixed.jsonl", records)


def test_collect_verifies_counts_errors_and_duplicate_custom_ids(tmp_path, make_run, mixed_input):
    run = make_run([mixed_input], chunks=3, commit_records=7)
    finish(run, run.spec.chunk_ids)
    report = collect(run, str(tmp_path / "out.jsonl"))
    rows = lines_of((tmp_path / "out.jsonl").read_bytes())
    assert len(rows) == report.records == 90
    assert (report.ok, report.errors, report.skipped_blank) == (88, 2, 5)
    assert [r["custom_id"] for r in rows if r["error"]] == ["0:" + str(_offset(mixed_input, 5)), "0:" + str(_offset(mixed_input, 47))]
    assert report.duplicate_custom_ids == 2 and report.duplicate_examples == ["dup-a", "dup-b"]
    assert report.mismatched_chunks == [] and report.duplicates_dropped == 0
    assert report.bytes == (tmp_path / "out.jsonl").stat().st_size


def _offset(path, record_index: int) -> int:
    """Byte offset of the record_index-th non-blank line."""
    offset, seen = 0, 0
    for line in path.read_bytes().splitlines(keepends=True):
        if line.strip():
            if seen == record_index:
                return offset
            seen += 1
        offset += len(line)
    raise IndexError(record_index)


def test_overlapping_parts_from_two_attempts_are_written_once(tmp_path, make_run, mixed_input):
    run = make_run([mixed_input], chunks=1, commit_records=5, engine_options={"batch": 3})
    finish(run, ["0000"], attempt=1)
    collect(run, str(tmp_path / "once.jsonl"))
    # A zombie of another attempt committed overlapping parts with other boundaries.
    parts = sorted(p for o in run.run_store.list("out/0000/") if (p := PartName.parse(o.key.rsplit("/", 1)[-1])))
    body = {p: run.run_store.get(f"out/0000/{p.filename}") for p in parts}
    assert len(parts) >= 9
    for a, b in zip(parts[1::3], parts[2::3]):
        merged = PartName(a.first, b.end, 9, a.seq, a.records + b.records, a.errors + b.errors)
        run.run_store.put(f"out/0000/{merged.filename}", body[a] + body[b])
    report = collect(run, str(tmp_path / "twice.jsonl"))
    assert (tmp_path / "twice.jsonl").read_bytes() == (tmp_path / "once.jsonl").read_bytes()
    assert report.records == 90 and report.duplicates_dropped > 0 and report.mismatched_chunks == []


def test_a_missing_part_is_a_mismatch_not_a_silent_gap(tmp_path, make_run, mixed_input):
    run = make_run([mixed_input], chunks=1, commit_records=10)
    finish(run, ["0000"])
    victim = next(o for o in run.run_store.list("out/0000/") if PartName.parse(o.key.rsplit("/", 1)[-1]))
    run.run_store.delete(victim.key)
    report = collect(run, str(tmp_path / "out.jsonl"))
    assert report.mismatched_chunks == ["0000"] and report.records < 90


def test_partial_collect_hashes_custom_ids_of_unfinished_chunks(tmp_path, make_run, mixed_input):
    run = make_run([mixed_input], chunks=3, commit_records=7)
    finish(run, run.spec.chunk_ids)
    last = run.spec.chunk_ids[2]  # holds the last uses of dup-a and dup-b: now parts without a marker
    run.run_store.delete(f"out/{last}/_SUCCESS")
    report = collect(run, str(tmp_path / "partial.jsonl"), allow_partial=True)
    assert report.incomplete_chunks == [last] and report.records == 90
    assert report.duplicate_custom_ids == 2 and report.duplicate_examples == ["dup-a", "dup-b"]


def test_an_unwritable_output_is_one_clear_error(tmp_path, make_run, mixed_input):
    run = make_run([mixed_input], chunks=1)
    finish(run, ["0000"])
    (tmp_path / "a-file").write_text("a folder cannot be made under a file")
    with pytest.raises(OutputError, match="cannot write .*a-file/out.jsonl"):
        collect(run, str(tmp_path / "a-file" / "out.jsonl"))


def test_a_corrupt_marker_fails_cleanly_without_hanging_or_leaving_a_file(tmp_path, make_run, mixed_input):
    run = make_run([mixed_input], chunks=3)
    finish(run, run.spec.chunk_ids)
    run.run_store.put(f"out/{run.spec.chunk_ids[1]}/_SUCCESS", b"{half a marker")
    with pytest.raises(StoreError, match="is not a done marker"):
        collect(run, str(tmp_path / "out.jsonl"))
    assert not list(tmp_path.glob("out.jsonl*"))


def test_markers_carry_one_custom_id_hash_per_record(make_run, mixed_input):
    run = make_run([mixed_input], chunks=2)
    finish(run, run.spec.chunk_ids)
    from chunkpilot.spec import decode_hashes

    markers = [SuccessMarker.from_json(run.run_store.get(f"out/{c}/_SUCCESS")) for c in run.spec.chunk_ids]
    assert sum(len(decode_hashes(m.custom_id_hashes)) for m in markers) == sum(m.records for m in markers) == 90


def test_collect_writes_to_an_s3_destination(tmp_path, make_run, mixed_input, s3_bucket, s3_admin_client):
    from chunkpilot.control.collect import collect_to

    run = make_run([mixed_input], chunks=3)
    finish(run, ["0000", "0001", "0002"])
    local = tmp_path / "local.jsonl"
    collect(run, str(local))
    report = collect_to(run, f"s3://{s3_bucket}/results/run.jsonl")
    body = s3_admin_client.get_object(Bucket=s3_bucket, Key="results/run.jsonl")["Body"].read()
    assert body == local.read_bytes() and report.records == 90
    with pytest.raises(OutputError, match="name the object to write"):
        collect_to(run, f"s3://{s3_bucket}/results/")


def test_merge_plan_of_a_split_chunk_keeps_only_what_lies_before_its_cut():
    from chunkpilot.merge import Copy, Drop, Keep, merge_plan

    def part(a, b, attempt=1):
        return (PartName((0, a), (0, b), attempt, a, b - a), f"{a}-{b}")

    steps = merge_plan([part(0, 10), part(10, 20), part(15, 30, 2), part(30, 40, 2)], end=(0, 20))
    assert [type(s) for s in steps] == [Copy, Copy, Keep, Drop]
    assert steps[2].after == (0, 20) and steps[2].before == (0, 20)  # nothing of it is kept
    steps = merge_plan([part(0, 10), part(10, 30, 2)], end=(0, 20))
    assert [type(s) for s in steps] == [Copy, Keep] and (steps[1].after, steps[1].before) == ((0, 10), (0, 20))
    assert [type(s) for s in merge_plan([part(0, 10), part(10, 20)])] == [Copy, Copy]
