"""Compressed JSON Lines: read by magic bytes, planned by one pass, big files staged as pieces."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import random

import pytest
import zstandard

from chunkpilot.errors import InputError
from chunkpilot.formats import get_format
from chunkpilot.formats.compressed import compression_named, compression_of, decompressed_blocks, lines_of
from chunkpilot.formats.staging import piece_count
from chunkpilot.spec import InputPin, RunSpec
from chunkpilot.store import LocalStore, split_object_uri

JSONL = get_format("jsonl")


def records_text(n: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        if i % 101 == 50:
            lines.append(b"{not json\n")
        elif i % 103 == 7:
            lines.append(b"\n")
        else:
            lines.append(json.dumps({"custom_id": f"r{i}", "prompt": "w " * rng.randint(1, 40), "n": i}).encode() + b"\n")
    return b"".join(lines)


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data)
    if kind == "gzip-members":  # pigz/bgzip style: several members back to back
        third = len(data) // 3
        return b"".join(gzip.compress(data[a:b]) for a, b in ((0, third), (third, 2 * third), (2 * third, len(data))))
    if kind == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    if kind == "zstd-frames":
        half = len(data) // 2
        return zstandard.ZstdCompressor().compress(data[:half]) + zstandard.ZstdCompressor().compress(data[half:])
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    raise AssertionError(kind)


def pin_of(path) -> InputPin:
    store, key = split_object_uri(str(path))
    info = store.head(key)
    return InputPin(str(path), info.size, info.etag)


def read_all(pins, manifests):
    return [(r.position, r.raw) for m in manifests for r in JSONL.records(pins, m)]


def plain_lines(data: bytes, source: int = 0):
    return [((source, offset), line) for offset, line in lines_of(iter([data]))]


def test_compression_is_told_by_magic_and_by_name():
    data = b'{"a": 1}\n'
    assert compression_of(gzip.compress(data)) == "gzip"
    assert compression_of(zstandard.ZstdCompressor().compress(data)) == "zstd"
    assert compression_of(bz2.compress(data)) == "bzip2"
    assert compression_of(lzma.compress(data)) == "xz"
    assert compression_of(data) is None
    assert compression_named("s3://b/x/data.JSONL.GZ") == "gzip"
    assert compression_named("data.jsonl.zst") == "zstd"
    assert compression_named("data.jsonl") is None


@pytest.mark.parametrize("kind", ["gzip", "gzip-members", "zstd", "zstd-frames", "bzip2", "xz"])
def test_every_compression_reads_the_same_records_at_decompressed_offsets(tmp_path, kind):
    data = records_text(3000)
    path = tmp_path / "in.jsonl.gz"  # the name lies for all but gzip: content decides
    path.write_bytes(compress(data, kind))
    planned = JSONL.plan([pin_of(path)], 4, stage=LocalStore(str(tmp_path / "run")), batch="t")
    pins = planned.pins
    assert pins[0].units == len(data) and pins[0].compression == kind.split("-")[0]
    assert read_all(pins, planned.manifests) == plain_lines(data)


def test_one_big_gzip_is_staged_so_no_worker_decompresses_from_the_start(tmp_path):
    data = records_text(20000)
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(data))
    planned = JSONL.plan([pin_of(path)], 8, stage=LocalStore(str(tmp_path / "run")), batch="b1")
    pins, manifests = planned.pins, planned.manifests
    assert len(manifests) == 8 and len(pins[0].staged) == 8
    sizes = [m.size for m in manifests]
    assert max(sizes) < 1.5 * len(data) / 8, sizes  # balanced
    assert [r.start for m in manifests for r in m.ranges] == [a for a, _, _ in pins[0].staged]
    assert sorted(os.listdir(tmp_path / "run" / "staged" / "b1")) == [f"00000-{k:05d}.jsonl.zst" for k in range(8)]
    # Workers read their pieces only: with the original gone, every chunk still reads, each its share.
    path.unlink()
    assert read_all(pins, manifests) == plain_lines(data)
    pieces = [zstandard.ZstdDecompressor().decompressobj().decompress(open(uri, "rb").read()) for _, _, uri in pins[0].staged]
    assert b"".join(pieces) == data and all(len(p) == m.size for p, m in zip(pieces, manifests))


def test_the_pins_survive_run_json(tmp_path):
    path = tmp_path / "big.jsonl.zst"
    path.write_bytes(compress(records_text(5000), "zstd"))
    planned = JSONL.plan([pin_of(path)], 3, stage=LocalStore(str(tmp_path / "run")), batch="b")
    spec = RunSpec("r", "now", tuple(planned.pins), (), "echo", "m", "rev", {}, "local", None, 1, 1, "0")
    assert RunSpec.from_json(spec.to_json()).inputs == spec.inputs


def test_a_dry_run_cuts_but_writes_nothing_and_still_reads_right(tmp_path):
    data = records_text(6000)
    path = tmp_path / "big.jsonl.gz"
    path.write_bytes(gzip.compress(data))
    planned = JSONL.plan([pin_of(path)], 4, stage=None)
    assert len(planned.manifests) == 4 and all(uri == "" for _, _, uri in planned.pins[0].staged)
    assert any("not written" in note for note in planned.notes)
    assert os.listdir(tmp_path) == ["big.jsonl.gz"]
    assert read_all(planned.pins, planned.manifests) == plain_lines(data)


def test_many_shards_make_chunks_of_whole_shards_balanced_by_size(tmp_path):
    rng = random.Random(3)
    datas, pins = [], []
    for i in range(12):
        data = records_text(rng.randint(200, 900), seed=i)
        path = tmp_path / f"part-{i:02d}.jsonl.zst"
        path.write_bytes(compress(data, "zstd"))
        datas.append(data)
        pins.append(pin_of(path))
    planned = JSONL.plan(pins, 4, stage=LocalStore(str(tmp_path / "run")), batch="s")
    assert not os.path.exists(tmp_path / "run")  # nothing staged: every shard fits a chunk
    assert 3 <= len(planned.manifests) <= 4
    for m in planned.manifests:  # whole shards only
        assert all(r.start == 0 and r.end == planned.pins[r.source].units for r in m.ranges)
    total = sum(len(d) for d in datas)
    assert max(m.size for m in planned.manifests) <= total / 4 + max(len(d) for d in datas)
    expected = [line for i, d in enumerate(datas) for line in plain_lines(d, i)]
    assert read_all(planned.pins, planned.manifests) == expected


def test_plain_and_compressed_inputs_mix(tmp_path):
    plain, packed = records_text(800, 1), records_text(900, 2)
    (tmp_path / "a.jsonl").write_bytes(plain)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(packed))
    pins = [pin_of(tmp_path / "a.jsonl"), pin_of(tmp_path / "b.jsonl.gz")]
    planned = JSONL.plan(pins, 3, stage=LocalStore(str(tmp_path / "run")), batch="m")
    assert read_all(planned.pins, planned.manifests) == plain_lines(plain, 0) + plain_lines(packed, 1)


def test_a_misnamed_file_is_read_by_what_it_holds_and_the_plan_says_so(tmp_path):
    data = records_text(500)
    (tmp_path / "looks-plain.jsonl").write_bytes(gzip.compress(data))
    (tmp_path / "looks-gzipped.jsonl.gz").write_bytes(data)
    pins = [pin_of(tmp_path / "looks-plain.jsonl"), pin_of(tmp_path / "looks-gzipped.jsonl.gz")]
    planned = JSONL.plan(pins, 1, stage=None)
    assert read_all(planned.pins, planned.manifests) == plain_lines(data, 0) + plain_lines(data, 1)
    assert any("looks-plain.jsonl is named as uncompressed but holds gzip" in n for n in planned.notes)
    assert any("looks-gzipped.jsonl.gz is named as gzip but holds uncompressed data" in n for n in planned.notes)


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz"])
def test_truncated_data_is_refused_at_planning_naming_the_file(tmp_path, kind):
    packed = compress(records_text(3000), kind)
    path = tmp_path / "cut.jsonl.x"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    with pytest.raises(InputError, match=r"cut\.jsonl\.x.*(ends early|corrupt)"):
        JSONL.plan([pin_of(path)], 2, stage=None)


def test_corrupt_gzip_is_refused_not_read_as_garbage(tmp_path):
    packed = bytearray(gzip.compress(records_text(3000)))
    packed[len(packed) // 2] ^= 0xFF
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(InputError, match="bad.jsonl.gz: its gzip data is corrupt"):
        JSONL.plan([pin_of(path)], 2, stage=None)


def test_trailing_zero_padding_after_gzip_is_tolerated():
    data = records_text(50)
    stream = io.BytesIO(gzip.compress(data) + b"\0" * 512)
    assert b"".join(decompressed_blocks(stream.read, "gzip", "x")) == data


def test_the_sniff_looks_inside_compressed_data():
    assert JSONL.not_this_format(gzip.compress(b'{"prompt": "x"}\n')) is None
    assert "gzip-compressed CSV/TSV" in JSONL.not_this_format(gzip.compress(b"a,b\n1,2\n"))


def test_piece_count():
    assert piece_count(100, 100) == 1 and piece_count(150, 100) == 1
    assert piece_count(160, 100) == 2 and piece_count(800, 100) == 8
