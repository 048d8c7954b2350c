"""Hugging Face datasets as inputs, through the real CLI, the real ``huggingface_hub`` client and a
loopback hub (``tests.hubserver``): pinned at submit, read by ranges, run on the echo engine, collected."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import read_jsonl


def parquet_bytes(texts: list[str], row_group_rows: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), buf, row_group_size=row_group_rows,
                   compression="none")
    return buf.getvalue()


def jsonl_bytes(texts: list[str]) -> bytes:
    return "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()


def noise(i: int, size: int) -> str:
    """``size`` characters that do not compress: row groups of a known, large size."""
    out = hashlib.sha256(str(i).encode()).hexdigest()
    while len(out) < size:
        out += hashlib.sha256(out.encode()).hexdigest()
    return out[:size]


@pytest.fixture
def shards(hf_hub) -> str:
    """``org/shards``: a train split of two Parquet shards (120 rows) and a test split, on main."""
    files = {
        "data/train-00000-of-00002.parquet": parquet_bytes([f"train row {i}" for i in range(60)], 20),
        "data/train-00001-of-00002.parquet": parquet_bytes([f"train row {i}" for i in range(60, 120)], 20),
        "data/test-00000-of-00001.parquet": parquet_bytes([f"test row {i}" for i in range(10)], 10),
        "README.md": b"# shards",
    }
    return hf_hub.push("org/shards", files)


def test_the_dry_run_names_each_input_with_format_size_and_pinned_commit(cli, shards, tmp_path):
    result = cli("submit", "hf://datasets/org/shards", "--split", "train", "--chunks", 3, "--engine", "echo",
                 "--input-key", "text", "--store", tmp_path / "runs", "--dry-run")
    out = result.output
    assert f"hf://datasets/org/shards (config default, split train): the default branch pinned to commit {shards}, 2 file(s)" in out
    for shard in ("train-00000-of-00002", "train-00001-of-00002"):
        line = next(line for line in out.splitlines() if f"{shard}.parquet  " in line)
        assert f"hf://datasets/org/shards@{shards}/data/{shard}.parquet  parquet, uncompressed, " in line
        assert line.endswith(f"commit {shards}")
    assert "test-00000" not in out
    assert "chunks (3):" in out and "  0000: 40 rows" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), "a dry run writes nothing"


def test_limit_50_plans_exactly_50_records(shards, store_uri):
    from chunkpilot.control.submit import SubmitOptions, plan_run

    plan = plan_run(SubmitOptions(inputs=("hf://datasets/org/shards@main",), chunks=4, store_uri=store_uri,
                                  engine="echo", input_key="text", split="train", limit=50), stage=False)
    assert sum(m.size for m in plan.manifests) == 50 and plan.spec.subset == {"limit": 50}
    assert [r for m in plan.manifests for r in m.ranges][0].start == 0
    assert all(p.revision == shards and f"@{shards}/" in p.uri for p in plan.spec.inputs)


def test_a_run_reads_the_commit_pinned_at_submit_whatever_is_pushed_after(cli, hf_hub, tmp_path):
    old = jsonl_bytes([f"old {i}" for i in range(90)])
    first = hf_hub.push("org/notes", {"train.jsonl": old})
    store = tmp_path / "runs"
    cli("submit", "hf://datasets/org/notes@main", "--chunks", 3, "--engine", "echo", "--input-key", "text",
        "--store", store, "--run-name", "notes")
    second = hf_hub.push("org/notes", {"train.jsonl": jsonl_bytes([f"new {i}" for i in range(200)])})
    assert second != first
    hf_hub.reads.clear()
    result = cli("watch", "notes", "--store", store)
    assert "all 3 chunk(s) done" in result.output

    spec = json.loads((store / "notes" / "run.json").read_text())
    assert spec["inputs"] == [{"uri": f"hf://datasets/org/notes@{first}/train.jsonl", "size": len(old),
                               "etag": hashlib.sha1(old).hexdigest(), "revision": first}]
    assert hf_hub.reads and {rev for _, rev, _, _, _ in hf_hub.reads} == {first}, "workers read the pinned commit only"

    cli("collect", "notes", "--store", store, "-o", tmp_path / "out.jsonl")
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert len(lines) == 90
    assert all(line["response"]["body"]["input_revision"] == first for line in lines), "lineage in every record"
    assert [line["response"]["body"]["choices"][0]["message"]["content"] for line in lines] == [f"{i} old" for i in range(90)]
    cli("collect", "notes", "--store", store, "-o", tmp_path / "records.jsonl", "--format", "records")
    assert [r["text"] for r in read_jsonl(tmp_path / "records.jsonl")] == [f"old {i}" for i in range(90)]


def test_parquet_chunks_are_read_by_ranges_not_whole_files(cli, hf_hub, tmp_path):
    rows, group_rows = 400, 50  # 8 row groups of ~100 KB: bigger than the footer read (64 KB)
    data = parquet_bytes([noise(i, 2000) for i in range(rows)], group_rows)
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 8
    sha = hf_hub.push("org/wide", {"data/train-00000-of-00001.parquet": data})
    store = tmp_path / "runs"
    cli("submit", "hf://datasets/org/wide", "--chunks", 8, "--engine", "echo", "--input-key", "text",
        "--max-tokens", 1, "--store", store, "--run-name", "wide", "--watch")
    reads = [(rng, n) for _, rev, path, rng, n in hf_hub.reads if path.endswith(".parquet")]
    assert reads and all(rng is not None for rng, _ in reads), "every read of the file is a ranged GET"
    assert max(n for _, n in reads) < len(data) / 4, "no read fetched the whole file, nor most of it"
    # Planning reads a footer; each of the 8 workers its footer and its own row group. Whole files
    # read by each worker would be 9x the file.
    assert sum(n for _, n in reads) < 2 * len(data)
    cli("collect", "wide", "--store", store, "-o", tmp_path / "out.jsonl")
    lines = read_jsonl(tmp_path / "out.jsonl")
    assert len(lines) == rows and {line["response"]["body"]["input_revision"] for line in lines} == {sha}


def test_a_gated_dataset_without_hf_token_fails_clearly(cli, hf_hub, tmp_path, monkeypatch):
    hf_hub.push("org/gated", {"train.jsonl": jsonl_bytes(["a", "b"])}, gated=True, token="hf_reader")
    args = ("submit", "hf://datasets/org/gated", "--chunks", 1, "--engine", "echo", "--input-key", "text",
            "--store", tmp_path / "runs", "--dry-run")
    assert "dataset org/gated is gated: accept its terms on the hub and export HF_TOKEN" in cli(*args, expect=1).output
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_one")
    out = cli(*args, expect=1).output
    assert "refused the token in HF_TOKEN (403)" in out and "hf_not_the_one" not in out
    monkeypatch.setenv("HF_TOKEN", "hf_reader")
    assert "commit " in cli(*args).output


@pytest.mark.parametrize("uri, options, message", [
    ("hf://datasets/org/missing", (), "dataset org/missing: http://127.0.0.1:"),
    ("hf://datasets/org/shards@v9", (), "dataset org/shards@v9: "),
    ("hf://datasets/org/shards", ("--split", "dev"), "has no split 'dev' (its splits: train, test)"),
    ("hf://datasets/org/shards", (), "has splits train, test: pass --split NAME"),
    ("hf://datasets/org/shards", ("--config", "fr", "--split", "train"), "has no config 'fr'"),
    ("hf://datasets/org/shards@main/data/nope.parquet", (), "has no file or folder 'data/nope.parquet'"),
    ("hf://datasets/org/shards@main/data/test-00000-of-00001.parquet", ("--split", "test"), "names a path in it already"),
    ("hf://datasets/org/arrow", (), "no file chunkpilot reads: 1 file(s) (e.g. data-00000.arrow)"),
    ("hf://org/model", (), "models and spaces are not inputs"),
])
def test_what_cannot_be_read_is_a_clear_error(cli, hf_hub, shards, tmp_path, uri, options, message):
    hf_hub.push("org/arrow", {"data-00000.arrow": b"ARROW1"})
    result = cli("submit", uri, *options, "--chunks", 1, "--engine", "echo", "--input-key", "text",
                 "--store", tmp_path / "runs", "--dry-run", expect=1)
    assert message in result.output and "Traceback" not in result.output


def test_split_needs_a_hub_dataset(cli, tmp_path):
    Path(tmp_path / "p.jsonl").write_text('{"prompt": "x"}\n')
    result = cli("submit", tmp_path / "p.jsonl", "--split", "train", "--chunks", 1, "--engine", "echo",
                 "--store", tmp_path / "runs", "--dry-run", expect=1)
    assert "--split/--config choose the files of a Hugging Face dataset" in result.output


@pytest.mark.parametrize("name, data", [
    ("train.jsonl.gz", gzip.compress(jsonl_bytes([f"row {i}" for i in range(60)]))),
    ("train.csv", ("text\n" + "".join(f'"row {i}, quoted"\n' for i in range(60))).encode()),
])
def test_compressed_json_lines_and_csv_are_read_by_their_own_formats(cli, hf_hub, tmp_path, name, data):
    sha = hf_hub.push("org/other", {f"data/{name}": data})
    store = tmp_path / "runs"
    cli("submit", f"hf://datasets/org/other@{sha}/data/{name}", "--chunks", 2, "--engine", "echo", "--input-key", "text",
        "--store", store, "--run-name", "other", "--watch")
    cli("collect", "other", "--store", store, "-o", tmp_path / "out.jsonl", "--format", "records")
    texts = [r["text"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert len(texts) == 60 and texts[7] in ("row 7", "row 7, quoted")
