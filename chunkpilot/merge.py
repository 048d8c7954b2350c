"""The merge plan of one chunk, from its parts' names alone. Pure: names in, steps out.

Parts of a chunk are visited in order of their first position (the longest first where two
start together); each holds every record of its interval, in order, so the merge keeps only
"how far have we written" (``reach``): a part entirely past it is copied whole, a part entirely
before it is a duplicate (a zombie's or a resumed attempt's) and is dropped, and only a part
straddling it is read, keeping its records at or past ``reach``.

A chunk that was split (``chunkpilot.splits``) ends where its last child starts (``end``): a part
past it (a zombie that wrote on the uncut range in the instant its claim was taken over) is
dropped, and one straddling it is read and kept only before it — the child answers the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from chunkpilot.layout import PartName
from chunkpilot.spec import Position

T = TypeVar("T")  # whatever the caller keeps with each part (its listing entry)


@dataclass(frozen=True)
class Copy(Generic[T]):
    """Copy the whole part."""

    part: PartName
    item: T


@dataclass(frozen=True)
class Keep(Generic[T]):
    """Read the part and keep its records at or past ``after`` (None: all of them) and before
    ``before`` (None: to its end)."""

    part: PartName
    item: T
    after: Position | None
    before: Position | None = None


@dataclass(frozen=True)
class Drop(Generic[T]):
    """Every record of the part is already written."""

    part: PartName
    item: T


def merge_plan(parts: list[tuple[PartName, T]], *, read_all: bool = False,
               end: Position | None = None) -> list[Copy[T] | Keep[T] | Drop[T]]:
    """The steps that write each record of the chunk once, in order. ``read_all``: every part
    that contributes is read (``Keep``), e.g. to hash its custom_ids. ``end``: where a split
    chunk's range ends now (None: its parts are all its own)."""
    steps: list[Copy[T] | Keep[T] | Drop[T]] = []
    reach: Position | None = None
    for part, item in sorted(parts, key=lambda p: (p[0].first, (-p[0].end[0], -p[0].end[1]))):
        if (reach is not None and part.end <= reach) or (end is not None and part.first >= end):
            steps.append(Drop(part, item))
            continue
        past_end = end is not None and part.end > end
        if (reach is None or part.first >= reach) and not read_all and not past_end:
            steps.append(Copy(part, item))
        else:
            steps.append(Keep(part, item, reach, end if past_end else None))
        reach = part.end if reach is None else max(reach, part.end)
    return steps
