"""collect refuses an input that changed after the run, and never writes over an input or the run's folder.

End to end: the real CLI, the local backend and the echo engine."""

from __future__ import annotations

import os

import pytest

from tests.conftest import write_jsonl

FORMATS = [("openai", "out.jsonl"), ("records", "out.jsonl"), ("parquet", "out.parquet")]


@pytest.fixture
def finished(tmp_path, store_uri, cli):
    """A finished 3-chunk echo run over 40 records; returns its input path."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"custom_id": f"r{i}", "prompt": f"record {i} says hi"} for i in range(40)])
    cli("submit", path, "--chunks", 3, "--engine", "echo", "--store", store_uri, "--run-name", "trust", "--watch")
    return path


def _collect(cli, store_uri, tmp_path, fmt, name, *extra, expect=1):
    return cli("collect", "trust", "--store", store_uri, "-o", tmp_path / name, "--format", fmt, *extra, expect=expect)


@pytest.mark.parametrize("fmt,name", FORMATS)
@pytest.mark.parametrize("partial", [(), ("--allow-partial",)])
def test_an_appended_line_is_refused_naming_the_input(tmp_path, store_uri, cli, finished, fmt, name, partial):
    _collect(cli, store_uri, tmp_path, fmt, "before-" + name, expect=0)
    with open(finished, "ab") as f:
        f.write(b'{"custom_id": "late", "prompt": "appended after the run"}\n')
    result = _collect(cli, store_uri, tmp_path, fmt, name, *partial)
    assert str(finished) in result.output and "size changed from" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / name).exists()


def test_a_same_size_edit_with_its_mtime_put_back_is_caught_by_the_content_digest(tmp_path, store_uri, cli, finished):
    _collect(cli, store_uri, tmp_path, "records", "before.jsonl", expect=0)
    st = os.stat(finished)
    data = finished.read_bytes()
    edited = data.replace(b"record 17 says hi", b"record 71 says hi")
    assert len(edited) == len(data) and edited != data
    with open(finished, "r+b") as f:  # in place: the same inode
        f.write(edited)
    os.utime(finished, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(finished).st_ino == st.st_ino
    for fmt, name in (("records", "out.jsonl"), ("parquet", "out.parquet")):
        result = _collect(cli, store_uri, tmp_path, fmt, name)
        assert str(finished) in result.output and "no longer hold the records its worker answered" in result.output
        assert not (tmp_path / name).exists()
    # Put back, it collects again: the check compares content, nothing else.
    with open(finished, "r+b") as f:
        f.write(data)
    os.utime(finished, ns=(st.st_atime_ns, st.st_mtime_ns))
    _collect(cli, store_uri, tmp_path, "records", "after.jsonl", expect=0)
    assert (tmp_path / "after.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()


def test_swapped_lines_are_refused(tmp_path, store_uri, cli, finished):
    lines = finished.read_bytes().splitlines(keepends=True)
    lines[3], lines[4] = lines[4], lines[3]
    finished.write_bytes(b"".join(lines))  # same size; another mtime
    result = _collect(cli, store_uri, tmp_path, "records", "out.jsonl")
    assert str(finished) in result.output and "modified" in result.output


@pytest.mark.parametrize("fmt", ["openai", "records", "parquet"])
def test_collect_never_writes_over_its_input(tmp_path, store_uri, cli, finished, fmt):
    before = finished.read_bytes()
    result = cli("collect", "trust", "--store", store_uri, "-o", finished, "--format", fmt, expect=1)
    assert "is an input of run trust" in result.output
    link = tmp_path / "link.jsonl"
    os.symlink(finished, link)
    assert "is an input" in cli("collect", "trust", "--store", store_uri, "-o", link, expect=1).output
    hard = tmp_path / "hard.jsonl"
    os.link(finished, hard)
    assert "is an input" in cli("collect", "trust", "--store", store_uri, "-o", hard, expect=1).output
    assert finished.read_bytes() == before
    cli("collect", "trust", "--store", store_uri, "-o", tmp_path / "fine.jsonl")  # later collects still work


def test_collect_never_writes_into_the_run_folder(tmp_path, store_uri, cli, finished):
    target = os.path.join(store_uri, "trust", "run.json")
    before = open(target, "rb").read()
    result = cli("collect", "trust", "--store", store_uri, "-o", target, expect=1)
    assert "inside run trust's folder" in result.output
    assert open(target, "rb").read() == before
    cli("status", "trust", "--store", store_uri)


def test_a_removed_input_leaves_the_openai_lines_collectable_but_not_the_records(tmp_path, store_uri, cli, finished):
    finished.unlink()
    result = cli("collect", "trust", "--store", store_uri, "-o", tmp_path / "lines.jsonl")
    assert "40 records" in result.output and "removed since the run" in result.output
    result = _collect(cli, store_uri, tmp_path, "records", "out.jsonl")
    assert str(finished) in result.output and "it was removed" in result.output


def test_the_worker_records_the_digest_of_each_chunks_input_bytes(finished, store_uri):
    import hashlib

    from chunkpilot.spec import ChunkManifest, SuccessMarker
    from chunkpilot.control.runs import open_run

    run = open_run(store_uri, "trust")
    data = finished.read_bytes()
    for chunk in run.spec.chunk_ids:
        manifest = ChunkManifest.from_json(run.run_store.get(f"chunks/{chunk}.json"))
        marker = SuccessMarker.from_json(run.run_store.get(f"out/{chunk}/_SUCCESS"))
        expected = hashlib.sha256(b"".join(data[r.start:r.end] for r in manifest.ranges)).hexdigest()
        assert marker.input_digest == expected
