"""Files users ask for (collect -o, report -o) are written one way: folder created, mode 0644 less umask."""

from __future__ import annotations

import os
import stat

import pytest

from tests.conftest import write_jsonl


@pytest.fixture
def done_run(tmp_path, store_uri, cli):
    path = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p {i}"} for i in range(8)])
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "files", "--watch")
    return "files"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_collect_and_report_create_folders_and_share_one_file_mode(tmp_path, store_uri, cli, done_run, umask):
    old = os.umask(umask)
    try:
        outputs = [tmp_path / "nodir" / "deeper" / "x.jsonl", tmp_path / "nodir2" / "x.parquet"]
        for out in outputs:
            cli("collect", done_run, "--store", store_uri, "-o", out)
        report = tmp_path / "reports" / "r.html"
        cli("report", done_run, "--store", store_uri, "-o", report)
    finally:
        os.umask(old)
    modes = {stat.S_IMODE(os.stat(p).st_mode) for p in [*outputs, report]}
    assert modes == {0o644 & ~umask}
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob("*"))


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, store_uri, cli, done_run):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("collect", done_run, "--store", store_uri, "-o", blocker / "x.jsonl", expect=1)
    assert result.output.startswith("Error: cannot write") and len(result.output.strip().splitlines()) == 1
