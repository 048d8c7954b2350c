"""The docs' runnable examples run: every ```bash or ```python block right after a `<!-- runnable -->`
line is executed as written (bash -e, or this venv's python), on the echo engine, in a fresh folder
holding a copy of examples/ (the docs tell users to run them from the repository root). A page's
blocks run in order in one folder, so a later block may use an earlier block's run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, tool_env

RUNNABLE = re.compile(r"^<!-- runnable -->\n```(bash|python)\n(.*?)^```$", re.M | re.S)


def runnable_blocks() -> dict[str, list[tuple[str, str]]]:
    """{page: [(language, block), ...]}"""
    out = {}
    for page in sorted((ROOT / "docs").rglob("*.md")):
        blocks = RUNNABLE.findall(page.read_text(encoding="utf-8"))
        if blocks:
            out[page.relative_to(ROOT / "docs").as_posix()] = blocks
    return out


BLOCKS = runnable_blocks()


def run_block(block: str, folder: Path, language: str = "bash") -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", block] if language == "python" else ["bash", "-e", "-o", "pipefail", "-c", block]
    return subprocess.run(command, cwd=folder, env=tool_env(), capture_output=True, text=True, timeout=120)


def fresh_folder(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_there_are_runnable_examples_and_each_is_local_and_on_echo():
    assert len(BLOCKS) >= 4, BLOCKS
    for page, blocks in BLOCKS.items():
        for language, block in blocks:
            for command in re.findall(r"^launcher submit .*?(?<!\\)$", block, re.M | re.S):
                assert "--engine echo" in command and "--store ./runs" in command, (page, command)
                assert "--backend sky" not in command, (page, command)
            for call in re.findall(r"chunkpilot\.submit\((.*?)\)$", block, re.M | re.S):
                assert 'engine="echo"' in call and 'store="./runs"' in call, (page, call)
                assert "sky" not in call, (page, call)
    assert any(language == "python" for blocks in BLOCKS.values() for language, _ in blocks), "no runnable Python"


@pytest.mark.parametrize("page", sorted(BLOCKS))
def test_runnable_examples_run(page, tmp_path):
    folder = fresh_folder(tmp_path)
    for i, (language, block) in enumerate(BLOCKS[page]):
        proc = run_block(block, folder, language)
        assert proc.returncode == 0, (f"docs/{page}, runnable block {i + 1} exited {proc.returncode}:\n{block}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


def test_a_renamed_option_in_an_example_fails(tmp_path):
    # What the suite guards against: the CLI renames an option and a doc keeps the old name.
    _, block = BLOCKS["getting-started.md"][0]
    assert "--chunks 4" in block
    proc = run_block(block.replace("--chunks 4", "--chunk-count 4", 1), fresh_folder(tmp_path))
    assert proc.returncode != 0
    assert "No such option: --chunk-count" in proc.stderr


def test_a_renamed_keyword_in_a_python_example_fails(tmp_path):
    # The same guard for the Python API: a keyword the API no longer takes fails the example.
    [(language, block)] = [b for b in BLOCKS["guides/python.md"] if b[0] == "python"]
    assert 'store="./runs"' in block
    proc = run_block(block.replace('store="./runs"', 'store_uri="./runs"', 1), fresh_folder(tmp_path), language)
    assert proc.returncode != 0
    assert "unexpected keyword argument 'store_uri'; did you mean 'store'?" in proc.stderr
