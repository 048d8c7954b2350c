"""Splits: the pure pieces (where to cut, child ids that sort in input order, which chunk to ask)
and the store's side (a hand-over writes the child, then the cut parent; discovery sees children
only once their parent names them)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkpilot import layout, splits
from chunkpilot.chunks import run_chunk_ids, run_chunks
from chunkpilot.errors import ConfigError
from chunkpilot.formats.base import position_at, units_before
from chunkpilot.names import child_chunk_id, parent_chunk_id, validate_chunk_id
from chunkpilot.spec import ChunkManifest, ChunkSummary, Progress, RunSpec, SourceRange
from chunkpilot.store import open_store


def test_child_ids_count_down_and_are_valid():
    assert child_chunk_id("0003", 0) == "0003_99"
    assert child_chunk_id("0003", 1) == "0003_98"
    assert child_chunk_id("0003", 98) == "0003_01"
    assert child_chunk_id("0003", 99) is None  # refused beyond _01
    assert child_chunk_id("0003_99", 0) == "0003_99_99"
    assert parent_chunk_id("0003_99_98") == "0003_99" and parent_chunk_id("0003") is None
    for good in ("0003", "0003_99", "0003_99_01", "12345678_50"):
        assert validate_chunk_id(good) == good
    for bad in ("0003_", "0003_9", "0003_00", "0003_100", "0003-99/..", "003_99"):
        with pytest.raises(ConfigError):
            validate_chunk_id(bad)
    assert layout.parse_claim("claims/0003_99.json") == "0003_99"
    assert layout.parse_progress("progress/0003_99_98.json") == "0003_99_98"
    assert layout.parse_manifest("chunks/0003_99.json") == "0003_99"
    assert layout.parse_split_request("splits/0003.json") == "0003"


@st.composite
def split_histories(draw):
    """Chunks 0000..000N over [0, 1000 * N), each split any number of times at ever-later points of
    ever-later children, as the protocol allows: returns {id: start} of every chunk made."""
    n = draw(st.integers(1, 4))
    starts = {f"{i:04d}": i * 1000 for i in range(n)}
    ends = {f"{i:04d}": (i + 1) * 1000 for i in range(n)}
    children: dict[str, int] = {c: 0 for c in starts}
    for _ in range(draw(st.integers(0, 25))):
        parent = draw(st.sampled_from(sorted(starts)))
        lo, hi = starts[parent], ends[parent]
        if hi - lo < 2 or children[parent] >= 99:
            continue
        at = draw(st.integers(lo + 1, hi - 1))
        child = child_chunk_id(parent, children[parent])
        if child is None:
            continue
        children[parent] += 1
        children[child] = 0
        starts[child], ends[child], ends[parent] = at, hi, at
    return starts


@settings(max_examples=300, deadline=None)
@given(split_histories())
def test_sorted_chunk_ids_are_input_order_through_any_splits(starts):
    by_position = sorted(starts, key=lambda c: starts[c])
    assert sorted(starts) == by_position
    assert sorted(starts, key=lambda c: c + "/") == by_position  # collect's order: a listing of out/


def test_split_target_keeps_the_share_its_rate_earns():
    assert splits.split_target(0, 100, 0, 0, 1) == 50  # rates unknown: half
    assert splits.split_target(20, 100, 3, 1, 1) == 80  # three times as fast: keeps 3/4 of the 80 left
    assert splits.split_target(20, 100, 1, 4, 1) == 36  # a fifth as fast: keeps a fifth
    assert splits.split_target(90, 100, 1, 1, 6) is None  # 5 handed over < 6: refused
    assert splits.split_target(100, 100, 1, 1, 0) is None  # nothing left


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=4), st.data())
def test_split_point_is_a_record_start_past_the_floor_with_enough_past_it(sizes, data):
    ranges = []
    for source, size in enumerate(sizes):
        ranges.append(SourceRange(source, 10, 10 + size))
    manifest = ChunkManifest("0000", tuple(ranges))
    floor = position_at(manifest, data.draw(st.integers(0, manifest.size)))
    step = data.draw(st.integers(1, 7))  # records every `step` units (from 10): the format's boundary
    min_units = data.draw(st.integers(0, 20))
    holder, asker = data.draw(st.floats(0, 100)), data.draw(st.floats(0, 100))

    def boundary(source, offset):
        return 10 + -(-(offset - 10) // step) * step

    at = splits.split_point(manifest, floor, holder, asker, min_units, boundary)
    if at is None:
        return
    front, back = manifest.cut(at)
    assert at >= floor
    assert back and front.size + ChunkManifest("x", back).size == manifest.size
    assert manifest.size - units_before(manifest, at) >= max(1, min_units)
    end = next(r.end for r in manifest.ranges if r.source == at[0])
    assert at[1] == end or (at[1] - 10) % step == 0  # a record start, or the end of its range


def test_a_format_that_cannot_tell_a_record_start_refuses():
    manifest = ChunkManifest("0000", (SourceRange(0, 0, 100),))
    assert splits.split_point(manifest, (0, 0), 1, 1, 1, lambda s, o: None) is None
    assert splits.split_point(manifest, (0, 0), 1, 1, 1, lambda s, o: o) == (0, 50)
    assert splits.split_point(manifest, (0, 70), 1, 1, 1, lambda s, o: o) == (0, 85)  # never before the floor


def test_slowest_first_asks_the_chunk_with_the_longest_time_to_go():
    def beat(chunk, done, total, rate, state="running", at=100.0):
        return Progress(chunk, 1, state, units_done=done, units_total=total, units_per_s=rate, updated_at=at)

    beats = [beat("0000", 0, 1000, 100), beat("0001", 0, 1000, 10), beat("0002", 900, 1000, 10),
             beat("0003", 0, 500, 0), beat("0004", 0, 900, 0), beat("0005", 0, 1000, 1, state="done"),
             beat("0006", 0, 1000, 1, at=0.0)]
    assert splits.slowest_first(beats, now=100.0, stale_after=60) == ["0001", "0000", "0002", "0004", "0003"]
    assert splits.slowest_first(beats, now=100.0, stale_after=60, min_seconds=11) == ["0001", "0004", "0003"]


def _spec(chunks: list[tuple[str, int]]) -> RunSpec:
    return RunSpec("r", "2026-12-07T00:00:00+00:00", (), tuple(ChunkSummary(c, n) for c, n in chunks), "echo", "m",
                   "rev", {}, "local", None, 3, 1, "0")


def test_hand_over_writes_the_child_then_the_cut_parent_and_discovery_follows(tmp_path):
    store = open_store(str(tmp_path))
    spec = _spec([("0000", 100), ("0001", 100)])
    for i in range(2):
        store.put(layout.manifest(f"000{i}"), ChunkManifest(f"000{i}", (SourceRange(0, 100 * i, 100 * i + 100),)).to_json())
    assert splits.ask(store, "0000", "run-w1-a1", 5.0, 1.0)
    assert not splits.ask(store, "0000", "run-w2-a1", 5.0, 1.0)  # one request at a time
    assert splits.pending(store, "0000") == splits.SplitRequest("run-w1-a1", 5.0, 1.0)

    # A holder that died between the child's manifest and its parent's leaves an orphan: not a chunk.
    store.put(layout.manifest("0000_99"), ChunkManifest("0000_99", (SourceRange(0, 10, 100),)).to_json())
    assert run_chunk_ids(store, spec) == ["0000", "0001"]

    parent, child = splits.hand_over(store, ChunkManifest.from_json(store.get(layout.manifest("0000"))), (0, 60))
    assert child == "0000_99" and parent.children == ("0000_99",) and parent.ranges == (SourceRange(0, 0, 60),)
    assert splits.pending(store, "0000") is None
    assert ChunkManifest.from_json(store.get(layout.manifest("0000_99"))).ranges == (SourceRange(0, 60, 100),)
    assert run_chunks(store, spec) == [ChunkSummary("0000", 60), ChunkSummary("0000_99", 40), ChunkSummary("0001", 100)]

    # Split again, earlier (the parent), and the child too: ids still sort in input order.
    parent, child = splits.hand_over(store, parent, (0, 30))
    assert child == "0000_98"
    _, grandchild = splits.hand_over(store, ChunkManifest.from_json(store.get(layout.manifest("0000_99"))), (0, 80))
    assert grandchild == "0000_99_99"
    found = run_chunks(store, spec)
    assert [c.id for c in found] == ["0000", "0000_98", "0000_99", "0000_99_99", "0001"]
    assert [c.size for c in found] == [30, 30, 20, 20, 100]
