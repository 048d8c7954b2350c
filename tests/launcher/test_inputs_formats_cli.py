"""The input formats through the real CLI: CSV/TSV and compressed JSON Lines, submitted, run on the
echo engine and collected."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import zstandard


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_bytes().splitlines()]


def tricky_csv(path: Path, n: int = 300) -> list[dict]:
    """A CSV with a BOM, quoted commas, quotes and newlines, and a ragged row at data row 100."""
    rows = [{"id": str(i), "title": f'Item {i}, "quoted"', "body": f"line one of {i}\nline two, with comma"}
            for i in range(n)]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["id", "title", "body"])
    for i, r in enumerate(rows):
        writer.writerow(r.values() if i != 100 else [r["id"], r["title"]])  # ragged: a field short
    path.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode())
    return rows


def test_csv_split_into_chunks_every_row_once_fields_intact_ragged_row_named(tmp_path, cli):
    rows = tricky_csv(tmp_path / "items.csv")
    store = tmp_path / "runs"
    result = cli("submit", tmp_path / "items.csv", "--chunks", 5, "--engine", "echo", "--store", store,
                 "--run-name", "csv", "--prompt-template", "{{ title }}: {{ body }}", "--watch", "--max-error-rate", 1)
    assert "all 5 chunk(s) done" in result.output
    spec = json.loads((store / "csv" / "run.json").read_text())
    assert spec["input_format"] == "csv" and len(spec["chunks"]) == 5
    cli("collect", "csv", "--store", store, "-o", tmp_path / "out.jsonl", "--format", "records")
    out = read_jsonl(tmp_path / "out.jsonl")
    assert len(out) == 300
    # Data row 100 starts on line 2 + 100 rows x 2 lines each.
    assert out[100] == {"response_input": '100,"Item 100, ""quoted"""', "response": None,
                        "response_error": {"code": "ragged_row", "message": "line 202 has 2 field(s), the header has 3"}}
    good = [r for i, r in enumerate(out) if i != 100]
    assert [{k: r[k] for k in ("id", "title", "body")} for r in good] == [r for i, r in enumerate(rows) if i != 100]
    assert all(r["response_error"] is None and list(r)[:3] == ["id", "title", "body"] for r in good)


def test_csv_needs_a_column_for_the_prompt(tmp_path, cli):
    tricky_csv(tmp_path / "items.csv", 10)
    result = cli("submit", tmp_path / "items.csv", "--chunks", 1, "--engine", "echo", "--store", tmp_path / "runs",
                 "--input-key", "text", expect=1)
    assert "--input-key uses the field 'text', which the inputs do not have (columns: id, title, body)" in result.output


def test_a_gzip_file_runs_like_its_plain_twin(tmp_path, cli):
    lines = [json.dumps({"custom_id": f"r{i}", "prompt": f"hello {i}"}) for i in range(500)]
    data = ("\n".join(lines) + "\n").encode()
    (tmp_path / "p.jsonl").write_bytes(data)
    (tmp_path / "p.jsonl.gz").write_bytes(gzip.compress(data))
    store = tmp_path / "runs"
    for name, path in (("plain", "p.jsonl"), ("packed", "p.jsonl.gz")):
        cli("submit", tmp_path / path, "--chunks", 4, "--engine", "echo", "--store", store, "--run-name", name, "--watch")
        cli("collect", name, "--store", store, "-o", tmp_path / f"{name}.jsonl")
    strip = lambda rows: [(r["id"].rsplit("_", 2)[1:], r["custom_id"], r["response"]["body"]["choices"]) for r in rows]  # noqa: E731
    assert strip(read_jsonl(tmp_path / "packed.jsonl")) == strip(read_jsonl(tmp_path / "plain.jsonl"))


def test_a_corrupt_compressed_input_is_refused_at_submit(tmp_path, cli):
    packed = zstandard.ZstdCompressor().compress(b'{"prompt": "x"}\n' * 5000)
    (tmp_path / "cut.jsonl.zst").write_bytes(packed[:-5])
    result = cli("submit", tmp_path / "cut.jsonl.zst", "--chunks", 2, "--engine", "echo", "--store", tmp_path / "runs",
                 expect=1)
    assert "cut.jsonl.zst: its zstd data ends early" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _run_small(tmp_path, cli, n=200) -> Path:
    rows = [{"custom_id": f"r{i}", "prompt": f"hello, \"world\" {i}", "num": i, "tags": ["a", i]} for i in range(n)]
    (tmp_path / "in.jsonl").write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows) + b"{broken\n")
    store = tmp_path / "runs"
    cli("submit", tmp_path / "in.jsonl", "--chunks", 3, "--engine", "echo", "--store", store, "--run-name", "out",
        "--max-error-rate", 1, "--watch")
    return store


def test_collect_writes_compressed_outputs_that_decompress_to_the_plain_one(tmp_path, cli):
    store = _run_small(tmp_path, cli)
    for fmt in ("openai", "records"):
        cli("collect", "out", "--store", store, "-o", tmp_path / f"plain.{fmt}.jsonl", "--format", fmt)
        plain = (tmp_path / f"plain.{fmt}.jsonl").read_bytes()
        cli("collect", "out", "--store", store, "-o", tmp_path / f"{fmt}.jsonl.gz", "--format", fmt)
        cli("collect", "out", "--store", store, "-o", tmp_path / f"{fmt}.jsonl.zst", "--format", fmt)
        assert gzip.decompress((tmp_path / f"{fmt}.jsonl.gz").read_bytes()) == plain
        zst = (tmp_path / f"{fmt}.jsonl.zst").read_bytes()
        assert zstandard.ZstdDecompressor().decompressobj().decompress(zst) == plain
    # A compressed name alone keeps the default format: OpenAI Batch lines.
    cli("collect", "out", "--store", store, "-o", tmp_path / "default.jsonl.gz")
    assert gzip.decompress((tmp_path / "default.jsonl.gz").read_bytes()) == (tmp_path / "plain.openai.jsonl").read_bytes()
    assert not list(tmp_path.glob(".collect-*")) and not list(tmp_path.glob("*.partial"))


def test_collect_writes_csv_and_tsv_tables(tmp_path, cli):
    store = _run_small(tmp_path, cli)
    cli("collect", "out", "--store", store, "-o", tmp_path / "out.csv")
    table = list(csv.reader(io.StringIO((tmp_path / "out.csv").read_text(encoding="utf-8"), newline="")))
    assert table[0] == ["custom_id", "prompt", "num", "tags", "response", "response_error", "response_input"]
    assert table[1][:4] == ["r0", 'hello, "world" 0', "0", '["a", 0]'] and table[1][4] and table[1][5] == ""
    assert json.loads(table[-1][5])["code"] == "invalid_json" and table[-1][6] == "{broken"
    assert len(table) == 1 + 201
    cli("collect", "out", "--store", store, "-o", tmp_path / "out.tsv.gz", "--format", "openai")
    rows = list(csv.reader(io.StringIO(gzip.decompress((tmp_path / "out.tsv.gz").read_bytes()).decode(), newline=""),
                           delimiter="\t"))
    assert rows[0] == ["id", "custom_id", "response", "error"] and len(rows) == 202
    assert json.loads(rows[1][2])["status_code"] == 200 and rows[1][3] == ""
    result = cli("collect", "out", "--store", store, "-o", tmp_path / "x.parquet.gz", expect=1)
    assert "Parquet compresses its own columns" in result.output


def _numbered(tmp_path, n=1000) -> tuple[Path, Path]:
    data = b"".join(json.dumps({"custom_id": f"r{i}", "prompt": f"p {i}"}).encode() + b"\n" + (b"\n" if i % 7 == 0 else b"")
                    for i in range(n))
    (tmp_path / "n.jsonl").write_bytes(data)
    (tmp_path / "n.jsonl.gz").write_bytes(gzip.compress(data))
    return tmp_path / "n.jsonl", tmp_path / "n.jsonl.gz"


def test_limit_plans_only_the_first_records(tmp_path, cli):
    plain, packed = _numbered(tmp_path)
    store = tmp_path / "runs"
    for name, path in (("lim", plain), ("limgz", packed)):
        result = cli("submit", path, "--chunks", 8, "--engine", "echo", "--store", store, "--run-name", name,
                     "--limit", 50, "--watch")
        assert "planned only the first 50 record(s)" in result.output
        assert json.loads((store / name / "run.json").read_text())["subset"] == {"limit": 50}
        cli("collect", name, "--store", store, "-o", tmp_path / f"{name}.jsonl")
        assert [r["custom_id"] for r in read_jsonl(tmp_path / f"{name}.jsonl")] == [f"r{i}" for i in range(50)]


def test_sample_draws_the_same_records_for_the_same_seed(tmp_path, cli):
    plain, packed = _numbered(tmp_path)
    store = tmp_path / "runs"
    drawn = {}
    for name, path, seed in (("s1", plain, 7), ("s2", packed, 7), ("s3", plain, 8)):
        result = cli("submit", path, "--chunks", 3, "--engine", "echo", "--store", store, "--run-name", name,
                     "--sample", 30, "--seed", seed, "--watch")
        assert f"planned only 30 record(s) drawn at random with seed {seed}" in result.output
        cli("collect", name, "--store", store, "-o", tmp_path / f"{name}.jsonl")
        drawn[name] = [int(r["custom_id"][1:]) for r in read_jsonl(tmp_path / f"{name}.jsonl")]
    assert len(drawn["s1"]) == 30 and drawn["s1"] == sorted(set(drawn["s1"]))  # 30 distinct, in input order
    assert drawn["s1"] == drawn["s2"] and drawn["s1"] != drawn["s3"]
    assert max(drawn["s1"]) > 500  # drawn from the whole input, not its start
    cli("submit", plain, "--chunks", 3, "--engine", "echo", "--store", store, "--limit", 5, "--sample", 5, expect=1)


def test_the_dry_run_names_every_input_with_format_compression_and_size(tmp_path, cli):
    data = b"".join(json.dumps({"prompt": f"p {i}"}).encode() + b"\n" for i in range(4000))
    (tmp_path / "big.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "small.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data[:3000]))
    result = cli("submit", tmp_path / "big.jsonl.gz", tmp_path / "small.jsonl.zst", "--chunks", 4, "--engine", "echo",
                 "--store", tmp_path / "runs", "--dry-run")
    out = " ".join(result.output.split())
    assert f"0: {tmp_path / 'big.jsonl.gz'} jsonl, gzip, " in out and "decompressed), staged as 4 zstd pieces (not written: dry run)" in out
    assert f"1: {tmp_path / 'small.jsonl.zst'} jsonl, zstd, " in out and "(2.9 KB decompressed), read whole" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.zst"))
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("id,prompt\n1,hello\n")
    result = cli("submit", csv_path, "--chunks", 1, "--engine", "echo", "--store", tmp_path / "runs", "--dry-run")
    assert f"0: {csv_path} csv, uncompressed, 18 B" in " ".join(result.output.split())
