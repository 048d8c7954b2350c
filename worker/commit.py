"""What is committed, and how new results become parts. Pure except ``write_part``.

A part holds every record whose position is in ``[first, end)`` of its chunk, in order. ``CommittedSet`` rebuilds the union of those intervals from part names alone,
so resuming costs one listing, whatever the chunk size.

Answers arrive in completion order, so some finish while a record before them is
still generating; they cannot join a part yet. Each commit saves them to the
attempt's *held* object (``layout.held``), rewritten whole, so a kill loses only what
finished since the last commit. Resume puts held answers back in place
(``held_answers``) and they reach parts like any other; once every record of the
chunk is in a part the held objects are deleted.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Iterable

from chunkpilot import layout
from chunkpilot.layout import PartName
from chunkpilot.output import line_outcome, position_of_line
from chunkpilot.pipeline.documents import PASSED_CODES
from chunkpilot.spec import Position
from chunkpilot.store import Store


class CommittedSet:
    """The union of committed part intervals; membership by binary search."""

    def __init__(self, parts: Iterable[PartName]):
        merged: list[list[Position]] = []
        for part in sorted(parts):
            if merged and part.first <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], part.end)
            else:
                merged.append([part.first, part.end])
        self._starts = [m[0] for m in merged]
        self._ends = [m[1] for m in merged]

    def __contains__(self, position: Position) -> bool:
        i = bisect_right(self._starts, position) - 1
        return i >= 0 and position < self._ends[i]

    def __len__(self) -> int:
        return len(self._starts)


@dataclass
class Slot:
    """One record of the chunk in flight or finished, in input order."""

    position: Position
    end: Position  # just past the record
    line: bytes | None = None  # the output line once answered
    ok: bool = False
    recovered: bool = False  # answered by an earlier life, found in a held object
    error_code: str | None = None  # set for an error line
    error_message: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    passed: bool = False  # a pipeline record not this step's to answer (dropped, or failed upstream): no error of its


BARRIER = None  # marks a record another part already holds: a part must not span it


@dataclass
class PartBatch:
    """Consecutive finished slots that will become one part."""

    slots: list[Slot] = field(default_factory=list)

    def name(self, attempt: int, seq: int) -> PartName:
        errors = sum(not s.ok and not s.passed for s in self.slots)
        return PartName(self.slots[0].position, self.slots[-1].end, attempt, seq, len(self.slots), errors,
                        sum(s.prompt_tokens for s in self.slots), sum(s.completion_tokens for s in self.slots))

    def body(self) -> bytes:
        return b"".join(s.line for s in self.slots)  # type: ignore[misc]


def take_finished(pending: list[Slot | None], *, min_run: int) -> tuple[list[PartBatch], list[Slot | None]]:
    """Group finished slots into part batches, cut at barriers and unfinished slots.

    Taken: the finished prefix, whatever its length, and every later run of at least
    ``min_run`` finished slots. Results arrive in completion order, not input order,
    so one slow record at the head would otherwise hold back everything that
    finished after it; ``min_run`` keeps that from turning into a part per record
    when answers trickle in (``min_run=1`` takes everything: the last commit).
    Returns the batches and what stays pending, in order, with a barrier where a
    taken run was: a later part must not span records it does not hold.
    """
    batches: list[PartBatch] = []
    remaining: list[Slot | None] = []  # never starts with a barrier, never holds two in a row
    current: list[Slot] = []
    blocked = False  # an unfinished slot came before: a run must reach min_run

    def close_run() -> None:
        if current and (not blocked or len(current) >= min_run):
            batches.append(PartBatch(list(current)))
            add_barrier()
        else:
            remaining.extend(current)
        current.clear()

    def add_barrier() -> None:
        if remaining and remaining[-1] is not BARRIER:
            remaining.append(BARRIER)

    for slot in pending:
        if slot is not BARRIER and slot.line is not None:
            current.append(slot)
            continue
        close_run()
        if slot is BARRIER:
            add_barrier()
        else:
            blocked = True
            remaining.append(slot)
    close_run()
    return batches, remaining


def held_slots(pending: Iterable[Slot | None]) -> list[Slot]:
    """The finished slots still pending after a commit took its parts: what the held object keeps."""
    return [s for s in pending if s is not BARRIER and s.line is not None]


def held_answers(bodies: Iterable[bytes], committed: CommittedSet) -> dict[Position, bytes]:
    """Output lines of held objects, by record position, except those a part already holds.

    Two held objects (two attempts) may both hold a record; either line is an answer to it.
    """
    answers: dict[Position, bytes] = {}
    for body in bodies:
        for line in body.splitlines(keepends=True):
            if not line.endswith(b"\n"):  # cut off: no answer
                continue
            try:
                position = position_of_line(line)
            except ValueError:  # not one of our lines: a foreign object is no answer
                continue
            if position not in committed:
                answers[position] = line
    return answers


def recovered_slot(position: Position, end: Position, line: bytes) -> Slot:
    outcome = line_outcome(line)
    passed = outcome.error_code in PASSED_CODES
    return Slot(position, end, line=line, ok=outcome.error_code is None, recovered=True,
                error_code=None if passed else outcome.error_code, prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens, passed=passed)


def write_part(store: Store, chunk: str, batch: PartBatch, attempt: int, seq: int) -> PartName:
    """Write ``batch`` as an immutable part; return the name it took (the next seq is one past its).

    A name already taken (a restarted process of the same attempt, or a zombie)
    moves on to the next seq: parts are never overwritten.
    """
    body = batch.body()
    while True:
        name = batch.name(attempt, seq)
        if store.put_if_absent(layout.part(chunk, name), body):
            return name
        seq += 1
