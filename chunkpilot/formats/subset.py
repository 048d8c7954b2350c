"""A first look: plan only some records — the first K (``--limit``) or K drawn at random with a
stated seed (``--sample``) — as manifests over the full plan's ranges.

``--limit K`` reads records from the start until the K-th (blank lines are not records) and cuts
the plan there: the chunks that held those records, shortened. ``--sample K`` reads every record
once (reservoir sampling, ``random.Random(seed)``: the same input and seed draw the same records)
and plans one range per drawn record, in input order, spread over the chunks. Positions are the
full input's, so a sampled run's answers line up with a full run's.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

from chunkpilot.formats.base import Record
from chunkpilot.names import chunk_id
from chunkpilot.spec import ChunkManifest, Position, SourceRange


def _records(records: Iterable[Record]) -> Iterator[Record]:
    return (r for r in records if not r.blank)


def limit_manifests(manifests: list[ChunkManifest], records: Iterable[Record], k: int) -> list[ChunkManifest]:
    """The manifests cut just past the ``k``-th record of ``records`` (the plan's records, in order)."""
    end: Position | None = None
    for n, record in enumerate(_records(records), 1):
        end = record.end
        if n >= k:
            break
    if end is None:
        return []
    out = []
    for m in manifests:
        ranges = []
        for r in m.ranges:
            if (r.source, r.start) >= end:  # every later range is past the cut too
                break
            ranges.append(SourceRange(r.source, r.start, min(r.end, end[1]) if r.source == end[0] else r.end))
        if ranges:
            out.append(ChunkManifest("", tuple(ranges), m.unit))
    return _renamed(out)


def sample_manifests(records: Iterable[Record], k: int, seed: int, chunks: int, unit: str) -> list[ChunkManifest]:
    """``k`` records drawn uniformly (algorithm R, seeded), one range each, in input order, in at
    most ``chunks`` chunks of about equal counts."""
    rng = random.Random(seed)
    reservoir: list[tuple[Position, Position]] = []
    for n, record in enumerate(_records(records)):
        if n < k:
            reservoir.append((record.position, record.end))
        else:
            j = rng.randrange(n + 1)
            if j < k:
                reservoir[j] = (record.position, record.end)
    reservoir.sort()
    groups = [reservoir[len(reservoir) * i // chunks : len(reservoir) * (i + 1) // chunks] for i in range(chunks)]
    return _renamed([ChunkManifest("", tuple(SourceRange(p[0], p[1], e[1]) for p, e in g), unit) for g in groups if g])


def _renamed(manifests: list[ChunkManifest]) -> list[ChunkManifest]:
    return [ChunkManifest(chunk_id(i, len(manifests)), m.ranges, m.unit) for i, m in enumerate(manifests)]
