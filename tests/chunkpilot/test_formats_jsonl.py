"""The JSONL format: for any inputs and chunk count, every line lands in exactly one chunk, and a
chunk's records come back once, in order, with a specific code for every line that is no record."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chunkpilot.formats import get_format
from chunkpilot.formats.base import plan_chunks, split_points, units_before, units_between
from chunkpilot.formats.jsonl import decode_line, next_line_start
from chunkpilot.spec import ChunkManifest, InputPin, SourceRange
from chunkpilot.store import split_object_uri

# Lines chosen to stress the cut points: CRLF, BOM, multi-byte characters, U+2028
# inside a JSON string (a line separator for str.splitlines, not for us), blanks.
LINE_PIECES = [
    json.dumps({"prompt": "plain"}).encode(),
    json.dumps({"prompt": "crlf"}).encode() + b"\r",
    json.dumps({"prompt": "h\u00e9llo \u4e16\u754c \U0001f600"}, ensure_ascii=False).encode(),
    json.dumps({"prompt": "sep\u2028inside\u2029too"}, ensure_ascii=False).encode(),
    b"",
    b"   ",
    b"\xef\xbb\xbf" + json.dumps({"prompt": "bom"}).encode(),
    b"x" * 300,
]


def build_file(pieces: list[int], final_newline: bool) -> bytes:
    lines = [LINE_PIECES[i] for i in pieces]
    body = b"\n".join(lines)
    return body + (b"\n" if final_newline and lines else b"")


def memory_probe(files: list[bytes]):
    def probe(source: int, offset: int) -> int:
        data = files[source]
        return next_line_start(lambda a, b: data[a:b], len(data), offset, block=7)

    return probe


def lines_of(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        out.append((pos, data[pos:end]))
        pos = end
    return out


files_strategy = st.lists(
    st.tuples(st.lists(st.integers(0, len(LINE_PIECES) - 1), max_size=30), st.booleans()), min_size=1, max_size=4
)


@settings(max_examples=300, deadline=None)
@given(files_strategy, st.integers(1, 40))
def test_every_line_in_exactly_one_chunk(spec, n):
    files = [build_file(p, nl) for p, nl in spec]
    if sum(map(len, files)) == 0:
        return
    manifests = plan_chunks([len(f) for f in files], n, memory_probe(files))

    assert 1 <= len(manifests) <= n
    assert [m.chunk for m in manifests] == sorted(m.chunk for m in manifests)
    covered = []
    for m in manifests:
        assert m.size > 0, "empty chunks are dropped"
        for r in m.ranges:
            covered.append((r.source, r.start, r.end))
            data = files[r.source]
            assert r.start == 0 or data[r.start - 1 : r.start] == b"\n", "a chunk starts at a line start"
            assert r.end == len(data) or data[r.end - 1 : r.end] == b"\n", "a chunk ends at a line end"
    # The ranges tile every file exactly once, in order.
    expected_pos = {}
    for source, start, end in covered:
        assert start == expected_pos.get(source, 0)
        expected_pos[source] = end
    for source, data in enumerate(files):
        assert expected_pos.get(source, 0) == len(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files_strategy, st.integers(1, 12))
def test_reader_yields_each_line_once_from_real_files(tmp_path, spec, n):
    files = [build_file(p, nl) for p, nl in spec]
    if sum(map(len, files)) == 0:
        return
    pins = []
    for i, data in enumerate(files):
        path = tmp_path / f"in{i}.jsonl"
        path.write_bytes(data)
        store, key = split_object_uri(str(path))
        pins.append(InputPin(str(path), len(data), store.head(key).etag))

    jsonl = get_format("jsonl")
    planned = jsonl.plan(pins, n)
    got = [(r.position, r.raw) for m in planned.manifests for r in jsonl.records(pins, m)]
    want = [((s, off), line) for s, data in enumerate(files) for off, line in lines_of(data)]
    assert got == want
    assert planned.bytes_read <= 2 * 1024 * n


def test_more_chunks_than_lines():
    files = [b'{"prompt": "a"}\n{"prompt": "b"}\n']
    manifests = plan_chunks([len(files[0])], 50, memory_probe(files))
    assert len(manifests) == 2


def test_balanced_by_bytes():
    line = b'{"prompt": "' + b"y" * 90 + b'"}\n'
    data = line * 1000
    manifests = plan_chunks([len(data)], 10, memory_probe([data]))
    sizes = [m.size for m in manifests]
    assert len(sizes) == 10
    assert max(sizes) - min(sizes) <= len(line)


def test_chunks_span_files():
    files = [b"a\n" * 10, b"b\n" * 10]
    manifests = plan_chunks([20, 20], 3, memory_probe(files))
    assert any(len(m.ranges) == 2 for m in manifests)


def test_probe_reads_little_of_a_long_line():
    data = b"x" * 100_000 + b"\n" + b"y\n"
    reads = []

    def read(a, b):
        reads.append(b - a)
        return data[a:b]

    assert next_line_start(read, len(data), 50_000) == 100_001
    assert sum(reads) < 120_000
    assert next_line_start(read, len(data), 100_001) == 100_001


def test_split_points_even():
    assert split_points(100, 4) == [25, 50, 75]
    assert split_points(10, 1) == []


def test_a_record_ends_where_the_next_begins_and_progress_counts_units():
    manifest = ChunkManifest("0000", (SourceRange(0, 100, 200), SourceRange(1, 0, 50)))
    assert units_before(manifest, (0, 150)) == 50 and units_before(manifest, (1, 10)) == 110
    assert units_between((0, 100), (1, 50), [200, 80]) == 150 and units_between((1, 10), (1, 30), [200, 80]) == 20


@pytest.mark.parametrize(
    "line, code",
    [
        (b"{not json\n", "invalid_json"),
        (b'{"prompt": "\xff\xfe"}\n', "invalid_utf8"),
        (b"[1, 2]\n", "not_an_object"),
        (b'"just a string"\n', "not_an_object"),
        (b"42", "not_an_object"),
    ],
)
def test_lines_that_are_no_record_get_specific_codes(line, code):
    record = decode_line((0, 10), (0, 10 + len(line)), line)
    assert record.fields is None and record.error[0] == code and record.error[1] and record.raw == line


def test_blank_lines_bom_and_objects():
    assert decode_line((0, 5), (0, 8), b"  \r\n").blank and decode_line((0, 5), (0, 6), b"\n").blank
    assert decode_line((0, 0), (0, 20), b'\xef\xbb\xbf{"prompt": "x"}\n').fields == {"prompt": "x"}
    bom_mid_file = decode_line((0, 9), (0, 29), b'\xef\xbb\xbf{"prompt": "x"}\n')
    assert bom_mid_file.error[0] == "invalid_json", "only a file's first line may start with a BOM"


@pytest.mark.parametrize("line", [
    b'{"custom_id": "r1", "prompt": "hello there"\n',  # cut after a value, newline kept
    b'{"custom_id": "r1", "prompt": "hello there"\r\n',
    b'{"custom_id": "r1", "prompt": "hello there"',  # the file's last line, no newline
    b'{"custom_id": "r1", "prompt": "hel\n',
])
def test_a_cut_off_line_reports_the_column_pythons_parser_gives_for_the_line(line):
    with pytest.raises(json.JSONDecodeError) as exc:
        json.loads(line.rstrip(b"\r\n").decode())
    record = decode_line((0, 0), (0, len(line)), line)
    assert record.error[0] == "invalid_json"
    assert record.error[1] == f"line is not valid JSON: {exc.value.msg} (column {exc.value.colno})"
    assert exc.value.colno > 1
