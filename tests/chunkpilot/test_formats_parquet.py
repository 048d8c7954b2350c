"""The Parquet format: split by footers alone, rows read back once each by projection, and
Parquet written back with every original column and type."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chunkpilot.errors import InputError
from chunkpilot.formats import get_format
from chunkpilot.spec import InputPin
from chunkpilot.store import split_object_uri
from tests.conftest import read_jsonl, write_jsonl
from tests.workers import holders, parts_of, worker_pid


def rows(lo: int, hi: int) -> pa.Table:
    return pa.table({
        "id": pa.array(range(lo, hi), pa.int32()),
        "text": [f"record {i} says hello" if i % 97 else None for i in range(lo, hi)],  # some nulls
        "score": pa.array([i * 0.5 for i in range(lo, hi)], pa.float32()),
        "tags": [[f"t{i % 3}", "x"] for i in range(lo, hi)],
        "meta": [{"lang": "de" if i % 2 else "en", "n": i} for i in range(lo, hi)],
        "when": pa.array([datetime.datetime(2026, 1, 1) + datetime.timedelta(minutes=i) for i in range(lo, hi)],
                         pa.timestamp("ms")),
        "blob": [os.urandom(600).hex() for _ in range(lo, hi)],  # bulk: a file is data more than footer
    })


@pytest.fixture
def dataset(tmp_path) -> Path:
    """Three files with different row-group layouts: one big group, many small ones, a few."""
    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(rows(0, 600), folder / "a.parquet", row_group_size=600)
    pq.write_table(rows(600, 900), folder / "b.parquet", row_group_size=37)
    pq.write_table(rows(900, 1200), folder / "c.parquet", row_group_size=100)
    (folder / "notes.md").write_text("not data")
    return folder


def pins_of(paths) -> list[InputPin]:
    out = []
    for path in paths:
        store, key = split_object_uri(str(path))
        info = store.head(key)
        out.append(InputPin(str(path), info.size, info.etag))
    return out


def source_table(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(folder / f) for f in ("a.parquet", "b.parquet", "c.parquet")])


@pytest.mark.parametrize("chunks", [1, 3, 10, 25])
def test_planning_reads_only_footers_and_balances_rows(dataset, chunks):
    fmt = get_format("parquet")
    pins = pins_of(sorted(dataset.glob("*.parquet")))
    planned = fmt.plan(pins, chunks)
    sizes = [m.size for m in planned.manifests]
    assert len(sizes) == chunks and sum(sizes) == 1200 and max(sizes) - min(sizes) <= 1
    assert [p.units for p in planned.pins] == [600, 300, 300]
    assert planned.bytes_read <= 3 * 64 * 1024 < sum(p.size for p in pins) / 4, "footers (pyarrow reads 64 KB), not data"
    assert planned.fields == ("id", "text", "score", "tags", "meta", "when", "blob")
    # Every row in exactly one chunk, in order, and only the projected columns read.
    got = [(r.position, r.fields) for m in planned.manifests for r in fmt.records(planned.pins, m, {"id"})]
    assert [p for p, _ in got] == [(s, i) for s, n in enumerate((600, 300, 300)) for i in range(n)]
    assert [f["id"] for _, f in got] == list(range(1200)) and all(set(f) == {"id"} for _, f in got)


def test_one_file_with_one_row_group_still_gives_as_many_chunks_as_asked(tmp_path):
    pq.write_table(rows(0, 1000), tmp_path / "one.parquet", row_group_size=1000)
    planned = get_format("parquet").plan(pins_of([tmp_path / "one.parquet"]), 10)
    assert [m.size for m in planned.manifests] == [100] * 10


def test_a_file_that_is_no_parquet_is_named(tmp_path):
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(InputError, match="fake.parquet is not a valid Parquet file"):
        get_format("parquet").plan(pins_of([tmp_path / "fake.parquet"]), 2)


def test_parquet_in_and_out_with_workers_killed(dataset, tmp_path, store_uri, cli, make_run):
    """--input-key over a column with some nulls, 8 chunks on 4 workers, 3 workers SIGKILLed mid-chunk: the
    Parquet output has exactly the input rows, in order, every column equal in value and type."""
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.watch import WatchOptions, reconcile_once

    run = make_run([dataset], chunks=8, workers=4, commit_records=10, input_key="text", max_error_rate=1.0,
                   engine_options={"delay": 0.01, "batch": 2})
    assert run.spec.input_format == "parquet" and run.spec.unit == "rows"
    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    run_dir, killed = Path(store_uri) / run.spec.run_id, set()
    deadline = time.monotonic() + 90
    while len(killed) < 3 and time.monotonic() < deadline:  # the first workers, each mid-chunk
        for chunk, claim in holders(run_dir).items():
            pid = worker_pid(run_dir, claim)
            if chunk not in killed and pid and len(parts_of(run_dir, chunk, claim["attempt"])) >= 2:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed.add(chunk)
                if len(killed) == 3:  # one pass may find more eligible workers than the test kills
                    break
        time.sleep(0.02)
    assert len(killed) == 3
    cli("watch", run.spec.run_id, "--store", store_uri)
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert status["totals"]["rows_done"] == status["totals"]["rows_total"] == 1200
    out = tmp_path / "out.parquet"
    result = cli("collect", run.spec.run_id, "--store", store_uri, "-o", out)
    assert "1200 records (1187 ok, 13 errors)" in result.output
    table, source = pq.read_table(out), source_table(dataset)
    assert table.num_rows == 1200 and table.select(source.column_names).equals(source), "columns, values, types"
    assert table.schema.field("response").type == pa.string()
    answers, errors = table.column("response").to_pylist(), table.column("response_error").to_pylist()
    for text, answer, error in zip(source.column("text").to_pylist(), answers, errors):
        if text is None:
            assert answer is None and error["code"] == "template_error" and "'text' is null" in error["message"]
        else:
            assert answer == " ".join(text.split()[::-1]) and error is None
    # Collect took the answers from the parts' answer columns; from the lines alone it writes the same.
    columns = Path(store_uri) / run.spec.run_id / "answers"
    assert len(list(columns.rglob("*.arrow"))) >= 16
    shutil.rmtree(columns)
    cli("collect", run.spec.run_id, "--store", store_uri, "-o", tmp_path / "from-lines.parquet")
    assert pq.read_table(tmp_path / "from-lines.parquet").equals(table)
    # The same run as JSON Lines records: values JSON has no type for become text.
    cli("collect", run.spec.run_id, "--store", store_uri, "-o", tmp_path / "out.jsonl", "--format", "records")
    first = read_jsonl(tmp_path / "out.jsonl")[0]
    assert first["when"] == "2026-01-01T00:00:00" and first["meta"] == {"lang": "en", "n": 0}


def test_jsonl_records_written_as_parquet_with_inferred_types(tmp_path, store_uri, cli):
    records = [{"id": i, "title": f"t{i}", "stars": i % 5, "tags": ["a"], "extra": {"k": i}} for i in range(50)]
    records[3]["stars"] = 2.5  # an int column that also holds a float: widened
    del records[4]["extra"]  # a missing field: null
    path = write_jsonl(tmp_path / "r.jsonl", records, extra_lines=[b"{broken\n"])
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "j2p",
        "--input-key", "title", "--max-error-rate", 1, "--watch")
    cli("collect", "j2p", "--store", store_uri, "-o", tmp_path / "out.parquet")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 51 and table.schema.field("stars").type == pa.float64()
    assert table.column("id").to_pylist()[:50] == list(range(50)) and table.column("extra").to_pylist()[4] is None
    assert table.column("response_input").to_pylist()[50] == "{broken"
    assert table.column("response_error").to_pylist()[50]["code"] == "invalid_json"


def test_a_missing_column_fails_submit_naming_it(dataset, tmp_path, cli):
    for args, message in ((["--input-key", "body"], "--input-key uses the field 'body'"),
                          (["--prompt-template", "{{ title }} {{ text }}"], "--prompt-template uses the field 'title'"),
                          (["--input-key", "text", "--id-key", "uid"], "--id-key uses the field 'uid'"),
                          ([], "no 'prompt' or 'messages' column")):
        result = cli("submit", dataset, "--chunks", 2, "--engine", "echo", "--store", tmp_path / "runs", *args, expect=1)
        assert message in result.output and "columns: id, text, score, tags, meta, when, blob" in result.output
        assert not (tmp_path / "runs").exists()


def test_parquet_and_jsonl_cannot_share_a_run(dataset, tmp_path, cli):
    write_jsonl(dataset / "d.jsonl", [{"prompt": "x"}])
    result = cli("submit", dataset, "--chunks", 2, "--engine", "echo", "--store", tmp_path / "runs", expect=1)
    assert "inputs mix formats" in result.output and "submit one run per format" in result.output


def test_parquet_on_s3_is_planned_from_footers(dataset, s3_bucket, s3_admin_client, s3_store_uri, cli, tmp_path):
    for name in ("a.parquet", "b.parquet"):
        s3_admin_client.put_object(Bucket=s3_bucket, Key=f"pq/{name}", Body=(dataset / name).read_bytes())
    cli("submit", f"s3://{s3_bucket}/pq/", "--chunks", 4, "--engine", "echo", "--store", s3_store_uri,
        "--run-name", "s3pq", "--input-key", "text", "--max-error-rate", 1, "--watch")
    cli("collect", "s3pq", "--store", s3_store_uri, "-o", tmp_path / "s3.parquet")
    table = pq.read_table(tmp_path / "s3.parquet")
    assert table.column("id").to_pylist() == list(range(900))
    # The answers came from the parts' answer columns in the bucket; without them, the same output.
    columns = s3_admin_client.list_objects_v2(Bucket=s3_bucket, Prefix="runs/s3pq/answers/").get("Contents", [])
    assert columns and all(o["Key"].endswith(".arrow") for o in columns)
    for obj in columns:
        s3_admin_client.delete_object(Bucket=s3_bucket, Key=obj["Key"])
    cli("collect", "s3pq", "--store", s3_store_uri, "-o", tmp_path / "s3-lines.parquet")
    assert pq.read_table(tmp_path / "s3-lines.parquet").equals(table)
