"""The input-format seam: how a format plans chunks, reads a chunk's records and measures progress.

A format reads one kind of file (JSON Lines, Parquet…). Everything outside it sees records as
``Record``s at opaque ``Position``s — ``(input index, offset in the format's unit)``, ordered —
and chunks as ``SourceRange``s in that unit. Nothing outside a format knows about newlines,
byte offsets or rows.

The splitting itself is shared and pure (``plan_chunks``): like Hadoop input splits, pick
``n - 1`` points evenly over the concatenated inputs' units, let the format move each to the
next record boundary (its ``probe``: a small ranged read for JSONL, nothing for rows), and cut
there. No input is read in full and nothing is copied; a chunk may span files; empty chunks
are dropped.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from chunkpilot.names import chunk_id
from chunkpilot.spec import ChunkManifest, InputPin, Position, SourceRange

# probe(source, offset) -> the first record boundary >= offset in that source (or its size).
Probe = Callable[[int, int], int]
# How probes are run: ``map`` one after another, or an executor's ``map`` to overlap their round trips.
Mapper = Callable[[Callable[[int, int], int], Iterable[int], Iterable[int]], Iterator[int]]


@dataclass(frozen=True)
class Record:
    """One record of a chunk, in input order, as a format read it.

    Exactly one of: ``fields`` (the record: its top-level fields), ``error`` (``(code, message)``:
    what is there cannot be a record, e.g. invalid JSON) or ``blank`` (nothing there: a blank
    line, skipped and counted). ``raw`` is the record's own text where the format has one (a
    JSONL line), kept so nothing a user submitted is lost even when it is not a record.
    """

    position: Position
    end: Position  # just past the record
    fields: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    blank: bool = False
    raw: bytes | None = None


@dataclass(frozen=True)
class PlannedChunks:
    manifests: list[ChunkManifest]
    bytes_read: int  # what planning read of the inputs: nothing else is read
    pins: list[InputPin] | None = None  # the inputs with their size in the format's unit, where that is not bytes
    fields: tuple[str, ...] | None = None  # the fields every record has, where the format knows (a schema)
    notes: tuple[str, ...] = ()  # what planning did that a person should know (staged pieces, misnamed files)


class InputFormat(Protocol):
    """One kind of input file. Implementations: ``jsonl`` (byte ranges), ``parquet`` (rows)."""

    name: str
    title: str  # for people: "JSON Lines"
    unit: str  # what ranges and positions count: "bytes", "rows"
    suffixes: tuple[str, ...]  # file names a folder or prefix contributes

    def not_this_format(self, head: bytes) -> str | None:
        """What a file whose first bytes are ``head`` looks like when it cannot be this format."""
        ...

    def plan(self, pins: list[InputPin], chunks: int) -> PlannedChunks:
        """At most ``chunks`` manifests covering every record once, reading as little as possible."""
        ...

    def records(self, pins: Sequence[InputPin], manifest: ChunkManifest,
                columns: Iterable[str] | None = None) -> Iterator[Record]:
        """Every record of the chunk in order, holding a bounded amount in memory. ``columns``: the
        fields that will be used (a format that can read only those, does); None: all."""
        ...

    def boundary(self, pins: Sequence[InputPin], source: int, offset: int) -> int | None:
        """Where the first record starting at or after ``offset`` of input ``source`` starts (its
        size if none does), reading as little as possible; None when this format cannot tell
        without reading from far before (it then refuses splits: ``chunkpilot.splits``)."""
        ...


def record_boundary(fmt: Any, pins: Sequence[InputPin], source: int, offset: int) -> int | None:
    """``fmt.boundary``, or None for a format without one."""
    boundary = getattr(fmt, "boundary", None)
    return None if boundary is None else boundary(pins, source, offset)


def position_at(manifest: ChunkManifest, units: int) -> Position:
    """The position ``units`` units into the chunk (its end if it has fewer): ``units_before``'s inverse."""
    for r in manifest.ranges:
        if units < r.end - r.start:
            return (r.source, r.start + units)
        units -= r.end - r.start
    last = manifest.ranges[-1]
    return (last.source, last.end)


def units_between(first: Position, end: Position, sizes: Sequence[int]) -> int:
    """How many units lie in ``[first, end)``, given each input's size in units."""
    (s0, o0), (s1, o1) = first, end
    if s0 == s1:
        return max(0, o1 - o0)
    return (sizes[s0] - o0) + sum(sizes[s0 + 1 : s1]) + o1


def units_before(manifest: ChunkManifest, position: Position) -> int:
    """Units of the chunk before ``position``: how far a worker has come."""
    done = 0
    for r in manifest.ranges:
        if r.source == position[0] and r.start <= position[1] <= r.end:
            return done + position[1] - r.start
        done += r.end - r.start
    return 0


def split_points(total: int, n: int) -> list[int]:
    """The ``n - 1`` ideal cut positions in the concatenation, evenly spaced by units."""
    return [total * k // n for k in range(1, n)]


def plan_chunks(sizes: Sequence[int], n: int, probe: Probe, run: Mapper = map, unit: str = "bytes") -> list[ChunkManifest]:
    """Manifests for at most ``n`` non-empty chunks covering every byte of every input once.

    The probes are independent, so ``run`` may issue them concurrently (on S3 each
    is a round trip).
    """
    if n < 1:
        raise ValueError("chunk count must be at least 1")
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    total = starts[-1]

    cuts = {0, total}
    probes: list[tuple[int, int]] = []  # (source, offset) of split points inside a source
    for point in split_points(total, n):
        source = bisect_right(starts, point) - 1
        if source >= len(sizes):
            continue
        offset = point - starts[source]
        if offset == 0:
            cuts.add(starts[source])
        else:
            probes.append((source, offset))
    aligned = run(probe, [s for s, _ in probes], [o for _, o in probes])
    for (source, _), at in zip(probes, aligned):
        cuts.add(starts[source] + min(at, sizes[source]))
    boundaries = sorted(cuts)

    spans = [(a, b) for a, b in zip(boundaries, boundaries[1:]) if b > a]
    manifests = []
    for index, (lo, hi) in enumerate(spans):
        manifests.append(ChunkManifest(chunk_id(index, len(spans)), tuple(_ranges(starts, sizes, lo, hi)), unit))
    return manifests


def _ranges(starts: Sequence[int], sizes: Sequence[int], lo: int, hi: int) -> list[SourceRange]:
    """Per-source ranges of the global span ``[lo, hi)``, skipping empty pieces."""
    out = []
    for source, size in enumerate(sizes):
        a, b = max(lo, starts[source]), min(hi, starts[source] + size)
        if b > a:
            out.append(SourceRange(source, a - starts[source], b - starts[source]))
    return out
