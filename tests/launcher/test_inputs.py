"""Resolving inputs: folders and prefixes take only data files and say what they skipped; a
file whose first record cannot be JSON is flagged at submit."""

from __future__ import annotations

import pytest

from chunkpilot.errors import InputError
from chunkpilot.formats.jsonl import not_jsonl_reason
from chunkpilot.control.inputs import resolve_inputs


def _folder(root):
    root.mkdir()
    (root / "a.jsonl").write_text('{"prompt": "a"}\n')
    (root / "sub").mkdir()
    (root / "sub" / "b.ndjson").write_text('{"prompt": "b"}\n')
    (root / "c.JSON").write_text('{"prompt": "c"}\n')
    (root / "README.md").write_text("# notes\n")
    (root / "data.txt").write_text("id,title\n1,x\n")  # CSV-like but named .txt: not data (a .csv is, since CSV input)
    (root / "_SUCCESS").write_text("")
    (root / ".hidden.jsonl").write_text('{"prompt": "h"}\n')
    return root


def test_a_folder_contributes_only_data_files_and_reports_the_rest(tmp_path):
    folder = _folder(tmp_path / "data")
    resolved = resolve_inputs([str(folder)])
    assert [p.uri.rsplit("/", 2)[-1] for p in resolved.pins] == ["a.jsonl", "c.JSON", "b.ndjson"]
    assert [s.rsplit("/", 1)[-1] for s in resolved.skipped] == ["README.md", "data.txt"]


def test_a_file_named_directly_or_by_glob_is_taken_whatever_its_name(tmp_path):
    folder = _folder(tmp_path / "data")
    assert len(resolve_inputs([str(folder / "data.txt")]).pins) == 1
    assert [p.uri.rsplit("/", 1)[-1] for p in resolve_inputs([str(folder / "*.txt")]).pins] == ["data.txt"]


def test_a_folder_without_data_files_says_what_it_holds(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"matches no files: it holds 1 file\(s\) but none named \*\.jsonl"):
        resolve_inputs([str(tmp_path / "docs")])


def test_an_s3_prefix_contributes_only_data_files(s3_bucket, s3_admin_client):
    for key, body in (("in/a.jsonl", b'{"prompt": "a"}\n'), ("in/notes.md", b"# x\n"), ("in/_SUCCESS", b"")):
        s3_admin_client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    resolved = resolve_inputs([f"s3://{s3_bucket}/in/"])
    assert [p.uri for p in resolved.pins] == [f"s3://{s3_bucket}/in/a.jsonl"]
    assert resolved.skipped == [f"s3://{s3_bucket}/in/notes.md"]


@pytest.mark.parametrize(
    "head, looks_like",
    [
        (b'{"prompt": "x"}\n', None),
        (b'\xef\xbb\xbf\n  \n{"prompt": "x"}\n', None),
        (b'{"prompt": "\xc3', None),  # a character cut by the end of the sample
        (b"", None),
        (b"PAR1\x15\x04", "a Parquet file"),
        (b"\x1f\x8b\x08\x00", "gzip-compressed data"),
        (b"id,title,body\n1,a,b\n", "CSV/TSV (first line: 'id,title,body')"),
        (b"id\ttitle\n", "CSV/TSV"),
        (b'[{"prompt": "x"},\n', "JSON that is not one object per line"),
        (b"hello world\n", "plain text (first line: 'hello world')"),
        (b"\x00\x01\x02", "binary data"),
        (b"\xff\xfe\xfa\xfb garbage and more garbage", "binary data (not UTF-8)"),
    ],
)
def test_not_jsonl_reason_names_what_a_file_looks_like(head, looks_like):
    reason = not_jsonl_reason(head)
    assert (reason is None) if looks_like is None else (reason is not None and reason.startswith(looks_like)), reason


def test_submit_plans_only_the_jsonl_of_a_folder_and_names_every_input(tmp_path, cli):
    folder = _folder(tmp_path / "data")
    result = cli("submit", folder, "--chunks", 2, "--engine", "echo", "--store", tmp_path / "runs", "--dry-run")
    assert "skipped 2 file(s) that are not .jsonl/.json/.ndjson" in result.output
    assert "README.md" in result.output and "data.txt" in result.output
    for name in ("a.jsonl", "c.JSON", "b.ndjson"):
        assert f"{folder}/" in result.output and name in result.output
    assert "inputs (3):" in result.output and "16 B" in result.output
    assert not (tmp_path / "runs").exists()


def test_submit_warns_about_a_file_that_is_not_jsonl(tmp_path, cli):
    csv = tmp_path / "table.txt"
    csv.write_text("id,title\n1,hello\n")
    result = cli("submit", csv, "--chunks", 1, "--engine", "echo", "--store", tmp_path / "runs", "--dry-run")
    assert f"warning: {csv} does not look like JSON Lines: it looks like CSV/TSV (first line: 'id,title')" in result.output


def test_hidden_files_named_like_data_are_listed_as_skipped(tmp_path, cli):
    folder = _folder(tmp_path / "data")
    (folder / "_part.jsonl").write_text('{"prompt": "p"}\n')
    resolved = resolve_inputs([str(folder)])
    assert [h.rsplit("/", 1)[-1] for h in resolved.hidden] == [".hidden.jsonl", "_part.jsonl"]  # not _SUCCESS
    assert "_part.jsonl" not in " ".join(p.uri for p in resolved.pins)
    result = cli("submit", folder, "--chunks", 1, "--engine", "echo", "--store", tmp_path / "runs", "--dry-run")
    line = next(line for line in result.output.splitlines() if "hidden file(s)" in line)
    assert line.startswith("skipped 2 hidden file(s)") and "_part.jsonl" in line and ".hidden.jsonl" in line
    assert "_SUCCESS" not in result.output
    assert len(resolve_inputs([str(folder / "_part.jsonl")]).pins) == 1  # named directly, it is taken


def test_a_folder_of_only_hidden_data_says_so(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "_x.jsonl").write_text('{"prompt": "p"}\n')
    with pytest.raises(InputError, match=r"hidden files are left out \(e.g. .*_x.jsonl\)"):
        resolve_inputs([str(tmp_path / "only")])


def test_hidden_objects_under_an_s3_prefix_are_listed(s3_bucket, s3_admin_client):
    for key in ("in/a.jsonl", "in/_b.jsonl", "in/_SUCCESS"):
        s3_admin_client.put_object(Bucket=s3_bucket, Key=key, Body=b'{"prompt": "a"}\n')
    resolved = resolve_inputs([f"s3://{s3_bucket}/in/"])
    assert resolved.hidden == [f"s3://{s3_bucket}/in/_b.jsonl"] and resolved.skipped == []
