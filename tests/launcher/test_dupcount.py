"""dupcount: exactly how many custom_ids recur, in bounded memory, in a process of its own."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

import chunkpilot
from chunkpilot.errors import CounterError
from chunkpilot.spec import encode_hashes
from chunkpilot.control.dupcount import CounterProcess, DuplicateCounter, _child_env, _isin_sorted


@pytest.mark.parametrize("with_numpy", [True, False])
@pytest.mark.parametrize("budget", [1 << 20, 1000, 40])  # in memory; spilled once; spilled and split again
def test_duplicate_counter_counts_exactly_in_memory_and_spilled(budget, with_numpy, monkeypatch):
    if not with_numpy:  # a launcher-only install: plain Python, same answers
        monkeypatch.setattr("chunkpilot.control.dupcount._NUMPY", [None])
    rng = random.Random(7)
    values = [rng.getrandbits(64) for _ in range(5000)]
    hashes = values + [values[10], values[4000], values[10], values[123]]  # 3 distinct repeated values
    rng.shuffle(hashes)
    with DuplicateCounter(budget=budget) as counter:
        for first in range(0, len(hashes), 700):
            counter.add(array("Q", hashes[first : first + 700]), first)
        count, examples = counter.finish(examples=5)
    firsts = sorted(hashes.index(v) for v in {values[10], values[4000], values[123]})
    assert counter.spilled == (0 if budget >= len(hashes) else len(hashes))
    assert count == 3 and examples == firsts


@pytest.mark.parametrize("with_numpy", [True, False])
def test_one_custom_id_on_more_records_than_the_budget_is_still_counted(with_numpy, monkeypatch):
    if not with_numpy:
        monkeypatch.setattr("chunkpilot.control.dupcount._NUMPY", [None])
    same = (1 << 64) - 12345  # no split by hash bits can separate these
    hashes = [same] * 300 + list(range(1, 200))
    with DuplicateCounter(budget=50) as counter:
        counter.add(array("Q", hashes), 10)
        assert counter.finish(examples=5) == (1, [10])


def test_the_counter_process_gives_the_in_memory_answer():
    rng = random.Random(3)
    values = [rng.getrandbits(64) for _ in range(20_000)]
    chunks = [values[i : i + 5000] for i in range(0, len(values), 5000)]
    chunks[3][17] = chunks[0][9]  # across chunks
    chunks[2][4] = chunks[2][400] = chunks[1][0]  # three records, one id
    with CounterProcess(5) as process:
        for index in (2, 0, 3, 1):  # any order: records are numbered chunk << 32 | position
            process.add(encode_hashes(array("Q", chunks[index])), index << 32)
        count, examples = process.finish()
    assert count == 2 and examples == [9, 1 << 32]  # each id's first record, in record order


def test_a_counter_process_that_dies_is_one_clear_error():
    with CounterProcess(5) as process:
        process._proc.kill()
        process._proc.wait()
        with pytest.raises(CounterError, match=r"chunkpilot.control.dupcount\) ended with code -9"):
            process.add(encode_hashes(array("Q", range(10_000))), 0)  # larger than stdin's buffer: reaches the pipe


def test_a_truncated_frame_is_refused_not_counted_short():
    frame = (7).to_bytes(8, "little") + (100).to_bytes(8, "little") + b"AAAA"
    done = subprocess.run([sys.executable, "-m", "chunkpilot.control.dupcount", "5"], input=frame, capture_output=True)
    assert done.returncode != 0 and b"truncated frame (4 of 100 bytes)" in done.stderr and not done.stdout


@pytest.mark.parametrize("distinct", [1, 300, 70_000])
def test_isin_sorted_matches_a_set_lookup(distinct):
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(distinct)
    values = np.unique(rng.integers(0, 2**64 - 1, distinct, dtype=np.uint64, endpoint=True))
    hashes = np.concatenate([rng.integers(0, 2**64 - 1, 50_000, dtype=np.uint64, endpoint=True), values[::3]])
    hashes[::7] ^= np.uint64(1)  # same top bits as a value, not equal: passes the bitmap, fails the search
    members = set(values.tolist())
    expected = np.array([int(h) in members for h in hashes.tolist()])
    assert (_isin_sorted(hashes, values, np) == expected).all()


def test_the_counter_process_imports_this_checkout_first(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    path = _child_env()["PYTHONPATH"].split(os.pathsep)
    assert Path(path[0], "chunkpilot", "__init__.py") == Path(chunkpilot.__file__).resolve() and path[1:] == ["/somewhere/else"]
