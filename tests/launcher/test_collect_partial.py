"""--allow-partial keeps the same answered records in every format, and every format reports duplicate custom_ids."""

from __future__ import annotations


import pyarrow.parquet as pq
import pytest

from chunkpilot.layout import PartName
from chunkpilot.control.collect import collect
from tests.conftest import read_jsonl, write_jsonl
from worker.loop import WorkerOptions, run_worker


@pytest.fixture(params=["jsonl", "parquet"])
def mid_run(request, tmp_path, make_run):
    """A 3-chunk run caught mid-way: chunk 0 done, chunk 1 with some parts committed but no done
    marker, chunk 2 not started. custom_id ``dup`` is on a record of chunk 0 and two of chunk 1."""
    records = [{"custom_id": "dup" if i in (3, 31, 35) else f"r{i}", "prompt": f"record {i} says hello"} for i in range(60)]
    if request.param == "parquet":
        import pyarrow as pa

        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(records), path, row_group_size=7)
    else:
        path = write_jsonl(tmp_path / "in.jsonl", records)
    run = make_run([path], chunks=3, commit_records=4, engine_options={"batch": 2})
    assert run_worker(run.run_uri, WorkerOptions(only=frozenset(run.spec.chunk_ids[:2]))) == 0
    second = run.spec.chunk_ids[1]
    run.run_store.delete(f"out/{second}/_SUCCESS")
    parts = sorted((p for o in run.run_store.list(f"out/{second}/") if (p := PartName.parse(o.key.rsplit("/", 1)[-1]))),
                   key=lambda p: p.first)
    assert len(parts) >= 4
    for part in parts[len(parts) // 2 + 1:]:  # the later half was never committed
        run.run_store.delete(f"out/{second}/{part.filename}")
    return run


def answered(tmp_path, run, fmt: str, name: str):
    report = collect(run, str(tmp_path / name), allow_partial=True, fmt=fmt)
    if fmt == "openai":
        rows = read_jsonl(tmp_path / name)
        got = {(r["custom_id"], r["response"]["body"]["choices"][0]["message"]["content"]
                if r["response"]["body"].get("choices") and "message" in r["response"]["body"]["choices"][0]
                else r["response"]["body"]["choices"][0]["text"]) for r in rows}
        positions = [r["id"] for r in rows]
        return got, report, positions
    rows = read_jsonl(tmp_path / name) if fmt == "records" else pq.read_table(tmp_path / name).to_pylist()
    assert len(rows) == 60, "every record, answered or not"
    got = {(r["custom_id"], r["response"]) for r in rows if (r["response_error"] or {}).get("code") != "not_answered"}
    return got, report, None


def test_every_format_keeps_the_same_answered_records_mid_run(tmp_path, mid_run):
    lines, openai_report, _ = answered(tmp_path, mid_run, "openai", "out.jsonl")
    records, records_report, _ = answered(tmp_path, mid_run, "records", "rec.jsonl")
    table, parquet_report, _ = answered(tmp_path, mid_run, "parquet", "out.parquet")
    assert 20 < len(lines) < 40, "chunk 0 and part of chunk 1"
    assert records == lines and table == lines
    assert openai_report.incomplete_chunks == records_report.incomplete_chunks == parquet_report.incomplete_chunks


def test_every_format_reports_duplicate_custom_ids(tmp_path, mid_run):
    reports = [collect(mid_run, str(tmp_path / name), allow_partial=True, fmt=fmt)
               for fmt, name in (("openai", "o.jsonl"), ("records", "r.jsonl"), ("parquet", "p.parquet"))]
    assert [(r.duplicate_custom_ids, r.duplicate_examples) for r in reports] == [(1, ["dup"])] * 3


def test_records_format_reports_duplicates_through_the_cli(tmp_path, store_uri, cli):
    path = write_jsonl(tmp_path / "in.jsonl", [{"custom_id": "same" if i % 10 == 0 else f"r{i}", "prompt": f"p {i}"}
                                               for i in range(30)])
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "dups", "--watch")
    for fmt, name in (("records", "r.jsonl"), ("parquet", "p.parquet"), ("openai", "o.jsonl")):
        out = cli("collect", "dups", "--store", store_uri, "-o", tmp_path / name, "--format", fmt).output
        assert "1 custom_id(s) appear on more than one input record (e.g. same)" in " ".join(out.split()), fmt
