"""The docs' runnable examples run: every ```bash block right after a `<!-- runnable -->` line is
executed as written, on the echo engine, in a fresh folder holding a copy of examples/ (the docs
tell users to run them from the repository root). A page's blocks run in order in one folder, so
a later block may use an earlier block's run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, tool_env

RUNNABLE = re.compile(r"^<!-- runnable -->\n```bash\n(.*?)^```$", re.M | re.S)


def runnable_blocks() -> dict[str, list[str]]:
    out = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        blocks = RUNNABLE.findall(page.read_text(encoding="utf-8"))
        if blocks:
            out[page.relative_to(ROOT / "docs").as_posix()] = blocks
    return out


BLOCKS = runnable_blocks()


def run_block(block: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=folder, env=tool_env(),
                          capture_output=True, text=True, timeout=120)


def fresh_folder(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_there_are_runnable_examples_and_each_is_local_and_on_echo():
    assert len(BLOCKS) >= 4, BLOCKS
    for page, blocks in BLOCKS.items():
        for block in blocks:
            for command in re.findall(r"^launcher submit .*?(?<!\\)$", block, re.M | re.S):
                assert "--engine echo" in command and "--store ./runs" in command, (page, command)
                assert "--backend sky" not in command, (page, command)


@pytest.mark.parametrize("page", sorted(BLOCKS))
def test_runnable_examples_run(page, tmp_path):
    folder = fresh_folder(tmp_path)
    for i, block in enumerate(BLOCKS[page]):
        proc = run_block(block, folder)
        assert proc.returncode == 0, (f"docs/{page}, runnable block {i + 1} exited {proc.returncode}:\n{block}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def test_a_renamed_option_in_an_example_fails(tmp_path):
    # What the suite guards against: the CLI renames an option and a doc keeps the old name.
    block = BLOCKS["getting-started.md"][0]
    assert "--chunks 4" in block
    proc = run_block(block.replace("--chunks 4", "--chunk-count 4", 1), fresh_folder(tmp_path))
    assert proc.returncode != 0
    assert "No such option: --chunk-count" in proc.stderr
