"""Parts and what is committed: intervals from names, batches cut at barriers, held answers."""

from __future__ import annotations

from chunkpilot.layout import PartName
from chunkpilot.output import error_line
from worker.commit import BARRIER, CommittedSet, Slot, held_answers, held_slots, take_finished


def slot(offset: int, done: bool = True) -> Slot:
    s = Slot((0, offset), (0, offset + 10))
    if done:
        s.line = f"line {offset}\n".encode()
    return s


def test_part_name_round_trip():
    p = PartName((1, 20), (2, 5), attempt=3, seq=7, records=42)
    assert PartName.parse(p.filename) == p
    assert PartName.parse("_SUCCESS") is None and PartName.parse("a1-x.jsonl") is None


def test_committed_set_merges_overlaps():
    parts = [PartName((0, 0), (0, 30), 1, 0, 3), PartName((0, 20), (0, 50), 2, 0, 3), PartName((0, 70), (1, 10), 2, 1, 2)]
    c = CommittedSet(parts)
    assert len(c) == 2
    assert (0, 0) in c and (0, 49) in c and (0, 50) not in c and (0, 60) not in c
    assert (0, 70) in c and (1, 0) in c and (1, 10) not in c


def test_prefix_commit_stops_at_unfinished():
    pending = [slot(0), slot(10), slot(20, done=False), slot(30)]
    batches, remaining = take_finished(pending, min_run=10**9)
    assert [len(b.slots) for b in batches] == [2] and remaining == pending[2:]
    assert batches[0].name(1, 0).first == (0, 0) and batches[0].name(1, 0).end == (0, 20)


def test_barrier_splits_parts():
    pending = [slot(0), BARRIER, slot(20), slot(30, done=False)]
    batches, remaining = take_finished(pending, min_run=10**9)
    assert [len(b.slots) for b in batches] == [1, 1] and remaining == pending[3:]


def test_final_commit_takes_every_finished_run():
    pending = [slot(0), slot(10, done=False), slot(20), slot(30), BARRIER, slot(50)]
    batches, remaining = take_finished(pending, min_run=1)
    assert [[s.position[1] for s in b.slots] for b in batches] == [[0], [20, 30], [50]]
    assert remaining == [pending[1], BARRIER]


def test_runs_taken_mid_chunk_leave_barriers_so_later_parts_never_span_them():
    pending = [slot(0, done=False), slot(10), slot(20), slot(30, done=False), slot(40, done=False), slot(50)]
    batches, remaining = take_finished(pending, min_run=1)
    assert [[s.position[1] for s in b.slots] for b in batches] == [[10, 20], [50]]
    assert remaining == [pending[0], BARRIER, pending[3], pending[4], BARRIER]
    for s in remaining:
        if s is not BARRIER:
            s.line = b"x\n"
    later = [s for s in remaining] + [slot(60)]
    batches, remaining = take_finished(later, min_run=1)
    assert [[s.position[1] for s in b.slots] for b in batches] == [[0], [30, 40], [60]]
    assert remaining == []


def test_short_runs_behind_an_unfinished_slot_wait_until_long_enough():
    pending = [slot(0), slot(10, done=False), slot(20), slot(30, done=False), slot(40), slot(50), slot(60)]
    batches, remaining = take_finished(pending, min_run=3)
    assert [[s.position[1] for s in b.slots] for b in batches] == [[0], [40, 50, 60]]
    assert remaining == [pending[1], pending[2], pending[3], BARRIER]
    pending[1].line = pending[3].line = b"x\n"
    batches, remaining = take_finished(remaining + [slot(70)], min_run=3)
    assert [[s.position[1] for s in b.slots] for b in batches] == [[10, 20, 30], [70]]
    assert remaining == []


def test_nothing_finished_keeps_everything():
    pending = [BARRIER, slot(0, done=False), slot(10, done=False)]
    batches, remaining = take_finished(pending, min_run=1)
    assert batches == [] and remaining == pending[1:]


def test_part_name_counts_error_lines():
    ok, bad = slot(0), slot(10)
    ok.ok = True
    name = take_finished([ok, bad], min_run=1)[0][0].name(2, 5)
    assert (name.records, name.errors) == (2, 1)
    assert PartName.parse(name.filename) == name


def test_held_slots_are_the_finished_ones_left_after_parts_are_taken():
    pending = [slot(0, done=False), slot(10), slot(20, done=False), slot(30)]
    batches, remaining = take_finished(pending, min_run=4)
    assert batches == [] and held_slots(remaining) == [pending[1], pending[3]]


def test_held_answers_skip_committed_foreign_and_cut_off_lines():
    def line(offset: int) -> bytes:
        return error_line("run", (0, offset), f"c{offset}", "x", "y")

    committed = CommittedSet([PartName((0, 0), (0, 20), 1, 0, 2)])
    body = line(10) + line(30) + b"not a line of ours\n" + line(50)[:-5]
    assert held_answers([body, line(40)], committed) == {(0, 30): line(30), (0, 40): line(40)}
