"""CSV/TSV input: RFC 4180 quoting, BOM, cuts only between rows, ragged rows as error records."""

from __future__ import annotations

import csv
import io
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkpilot.errors import InputError
from chunkpilot.formats import get_format
from chunkpilot.spec import InputPin, RunSpec
from chunkpilot.store import split_object_uri

CSV, TSV = get_format("csv"), get_format("tsv")


def pin_of(path) -> InputPin:
    store, key = split_object_uri(str(path))
    info = store.head(key)
    return InputPin(str(path), info.size, info.etag)


def plan_and_read(fmt, paths, chunks):
    planned = fmt.plan([pin_of(p) for p in paths], chunks)
    records = [r for m in planned.manifests for r in fmt.records(planned.pins, m)]
    return planned, records


def tricky_rows(n: int) -> list[list[str]]:
    rng = random.Random(4)
    pieces = ["plain", "with, comma", 'say "hi"', "two\nlines", "crlf\r\ninside", "", "ünïcødé ✓", "  spaced  ", "007"]
    return [[f"{i}", rng.choice(pieces), " / ".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))] for i in range(n)]


def write_csv(path, header, rows, delimiter=",", bom=False, line_end="\r\n"):
    buf = io.StringIO(newline="")
    csv.writer(buf, delimiter=delimiter, lineterminator=line_end).writerows([header, *rows])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))


@pytest.mark.parametrize("chunks", [1, 3, 7, 25])
def test_quoted_commas_quotes_and_newlines_survive_any_split(tmp_path, chunks):
    rows = tricky_rows(400)
    write_csv(tmp_path / "t.csv", ["id", "text", "notes"], rows, bom=True)
    planned, records = plan_and_read(CSV, [tmp_path / "t.csv"], chunks)
    assert len(planned.manifests) == chunks  # the file is big enough for every split asked
    assert planned.fields == ("id", "text", "notes")
    assert [r.fields for r in records] == [{"id": a, "text": b, "notes": c} for a, b, c in rows]
    assert all(list(r.fields) == ["id", "text", "notes"] for r in records)  # the header's order


def test_a_ragged_row_is_an_error_record_naming_its_line(tmp_path):
    text = 'id,text\r\n1,"a\r\nb"\r\n2,"x, y",extra\r\n3\r\n4,"ok ""quoted"""\r\n'
    (tmp_path / "r.csv").write_bytes(text.encode())
    _, records = plan_and_read(CSV, [tmp_path / "r.csv"], 1)
    assert [r.fields for r in records if r.fields] == [{"id": "1", "text": "a\r\nb"}, {"id": "4", "text": 'ok "quoted"'}]
    errors = [r.error for r in records if r.error]
    assert errors == [("ragged_row", "line 4 has 3 field(s), the header has 2"),
                      ("ragged_row", "line 5 has 1 field(s), the header has 2")]
    assert records[1].raw == b'2,"x, y",extra\r\n'


def test_line_numbers_are_right_in_chunks_far_from_the_start(tmp_path):
    rows = tricky_rows(300)
    rows[250] = ["bad row", "with", "too", "many"]
    write_csv(tmp_path / "t.csv", ["id", "text", "notes"], rows, line_end="\n")
    expected_line = 2 + sum(sum(f.count("\n") for f in row) + 1 for row in rows[:250])
    planned, records = plan_and_read(CSV, [tmp_path / "t.csv"], 6)
    bad = [r for r in records if r.error]
    assert len(bad) == 1 and f"line {expected_line} " in bad[0].error[1]
    assert RunSpec.from_json(RunSpec("r", "t", tuple(planned.pins), (), "e", "m", "v", {}, "local", None, 1, 1, "0",
                                     input_format="csv").to_json()).inputs == tuple(planned.pins)


def test_tsv_and_several_files_keep_input_order(tmp_path):
    a, b = tricky_rows(120), tricky_rows(80)
    write_csv(tmp_path / "a.tsv", ["id", "text", "notes"], a, delimiter="\t")
    write_csv(tmp_path / "b.tsv", ["id", "text", "extra"], [[x, y, z] for x, y, z in b], delimiter="\t")
    planned, records = plan_and_read(TSV, [tmp_path / "a.tsv", tmp_path / "b.tsv"], 4)
    assert planned.fields == ("id", "text")
    assert [r.fields["id"] for r in records] == [row[0] for row in a] + [row[0] for row in b]
    assert [r.position[0] for r in records] == [0] * 120 + [1] * 80


def test_blank_lines_are_skipped_and_fields_stay_text(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"id,n,empty\n007,1.50,\n\n8,2e3,\n")
    _, records = plan_and_read(CSV, [tmp_path / "t.csv"], 1)
    assert [r.fields for r in records if not r.blank] == [{"id": "007", "n": "1.50", "empty": ""},
                                                          {"id": "8", "n": "2e3", "empty": ""}]
    assert sum(r.blank for r in records) == 1


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"id,,x\n1,2,3\n", "empty column name"),
    (b"id,a,a\n1,2,3\n", "names a more than once"),
])
def test_bad_headers_are_refused(tmp_path, content, message):
    (tmp_path / "h.csv").write_bytes(content)
    with pytest.raises(InputError, match=message):
        CSV.plan([InputPin(str(tmp_path / "h.csv"), len(content), "e")], 2)


@settings(max_examples=40, deadline=None)
@given(rows=st.lists(st.lists(st.text(alphabet=st.sampled_from('ab ,"\n\r✓'), max_size=8), min_size=2, max_size=2),
                     min_size=1, max_size=40), chunks=st.integers(1, 9))
def test_any_rows_any_split_read_back_exactly(tmp_path_factory, rows, chunks):
    path = tmp_path_factory.mktemp("h") / "p.csv"
    write_csv(path, ["a", "b"], rows)  # CRLF: Python's writer then quotes a lone \r too
    _, records = plan_and_read(CSV, [path], chunks)
    assert [r.fields for r in records] == [dict(zip("ab", r)) for r in rows], json.dumps(rows)
