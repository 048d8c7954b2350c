"""Dynamic work rebalancing: an idle worker asks the slowest chunk's holder to hand over the rest.

Like Dataflow's dynamic work rebalancing, without a coordinator:

1. **Request** — a worker with nothing left to claim picks the chunk with the longest estimated
   time to go (``slowest_first``: units left / the rate its heartbeat reports) and creates
   ``splits/<chunk>.json`` put-if-absent (``ask``): who asks, and its own rate.
2. **Answer** — the chunk's holder looks for a request at each heartbeat. It picks a cut
   (``split_point``): never before anything it has taken from its record iterator (read ahead,
   in flight, or committed by any attempt), placed so that it keeps the share of what is left
   its rate earns against the asker's (half when a rate is unknown), moved forward to a record
   start by the input format (``boundary``). Too little past the cut, or a format that cannot
   tell a record start, and it refuses (deletes the request). Otherwise (``hand_over``), in this
   order: the child's manifest ``chunks/<chunk>_NN.json`` (the ranges from the cut on), then the
   parent's manifest cut there and naming the child (only now is the child a chunk of the run:
   ``chunkpilot.chunks``), then the request deleted. From then on the holder reads no record at
   or past the cut; its ``_SUCCESS`` counts the cut chunk.
3. The asker, polling the request, sees it gone and scans the claims again: the child is there.

A holder that never answers (dead, stopped) leaves the request in place; the asker withdraws it
after a bounded wait and tries the next chunk, and the claim's lease deals with the holder.
A later attempt of the parent reads the cut manifest, so it never answers the child's records.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Callable

from chunkpilot import layout
from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.formats.base import position_at, units_before
from chunkpilot.names import child_chunk_id
from chunkpilot.spec import ChunkManifest, Position, Progress
from chunkpilot.store import Store


@dataclass(frozen=True)
class SplitRequest:
    """``splits/<chunk>.json``: worker job ``by`` (answering ``rate`` units/s; 0: unknown) asks the
    chunk's holder to hand over part of what it has left."""

    by: str
    rate: float
    asked_at: float

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "SplitRequest":
        data = json.loads(raw)
        return cls(str(data["by"]), float(data.get("rate", 0.0)), float(data.get("asked_at", 0.0)))


# -- pure decisions -----------------------------------------------------------------------

def keep_share(holder_rate: float, asker_rate: float) -> float:
    """The share of what is left the holder keeps: what its rate earns against the asker's, so
    both finish together (a fast holder keeps more: no ping-pong); half when either is unknown."""
    if holder_rate > 0 and asker_rate > 0:
        return holder_rate / (holder_rate + asker_rate)
    return 0.5


def split_target(done: int, total: int, holder_rate: float, asker_rate: float, min_units: int) -> int | None:
    """Units into the chunk where the cut should go (before moving it to a record start), given
    that ``done`` units are taken already; None when what would be handed over is under
    ``min_units`` (or nothing)."""
    remaining = total - done
    if remaining <= 0:
        return None
    at = done + math.ceil(remaining * keep_share(holder_rate, asker_rate))
    return at if total - at >= max(1, min_units) else None


def split_point(manifest: ChunkManifest, floor: Position, holder_rate: float, asker_rate: float, min_units: int,
                boundary: Callable[[int, int], int | None]) -> Position | None:
    """Where to cut ``manifest``: a record start at or past ``floor`` (the first position its holder
    has not taken), ``split_target``'s share of the rest, with at least ``min_units`` units past
    it; None to refuse. ``boundary(source, offset)`` is the format's next record start (None: it
    cannot tell)."""
    if not manifest.ranges:
        return None
    first = manifest.ranges[0]
    floor = max(floor, (first.source, first.start))
    done = units_before(manifest, floor) if floor < (manifest.ranges[-1].source, manifest.ranges[-1].end) else manifest.size
    at = split_target(done, manifest.size, holder_rate, asker_rate, min_units)
    if at is None:
        return None
    source, offset = position_at(manifest, at)
    aligned = boundary(source, offset)
    if aligned is None:
        return None
    end = next(r.end for r in manifest.ranges if r.source == source and r.start <= offset <= r.end)
    cut = (source, min(max(aligned, offset), end))
    if cut < floor or manifest.size - units_before(manifest, cut) < max(1, min_units):
        return None
    return cut


def slowest_first(beats: list[Progress], now: float, stale_after: float, min_seconds: float = 0.0) -> list[str]:
    """Chunks worth asking to split, the longest to go first: running, heartbeat fresher than
    ``stale_after`` seconds, units left. Those with a measured rate come first (by units left /
    rate; none under ``min_seconds`` to go), then those without one, most units left first."""
    measured, unknown = [], []
    for beat in beats:
        left = beat.units_total - beat.units_done
        if beat.state != "running" or left <= 0 or now - beat.updated_at > stale_after:
            continue
        if beat.units_per_s > 0:
            seconds = left / beat.units_per_s
            if seconds >= min_seconds:
                measured.append((-seconds, beat.chunk))
        else:
            unknown.append((-left, beat.chunk))
    return [c for _, c in sorted(measured)] + [c for _, c in sorted(unknown)]


# -- the store's side ---------------------------------------------------------------------

def ask(store: Store, chunk: str, by: str, rate: float, now: float) -> bool:
    """Ask ``chunk``'s holder to split; False if a request is already there."""
    return store.put_if_absent(layout.split_request(chunk), SplitRequest(by, round(rate, 3), now).to_json())


def pending(store: Store, chunk: str) -> SplitRequest | None:
    """The request waiting for ``chunk``'s holder, if any."""
    try:
        return SplitRequest.from_json(store.get(layout.split_request(chunk)))
    except NotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # not one we wrote: answered as "no split"
        return SplitRequest("", 0.0, 0.0)


def withdraw(store: Store, chunk: str) -> None:
    """Delete the request for ``chunk`` (a refusal, or an asker giving up on a silent holder)."""
    try:
        store.delete(layout.split_request(chunk))
    except NotFoundError:
        pass


def hand_over(store: Store, manifest: ChunkManifest, at: Position) -> tuple[ChunkManifest, str] | None:
    """Split ``manifest`` at ``at``: the child's manifest, then the parent's cut and naming it, then
    the request deleted. Returns (the parent's new manifest, the child's id); None (nothing
    written) when the chunk has had all the children it may or nothing lies past ``at``. A
    StoreError leaves the split undecided until the parent's manifest is read back: it holds if
    that names the child."""
    child = child_chunk_id(manifest.chunk, len(manifest.children))
    front, back = manifest.cut(at)
    if child is None or not back:
        return None
    body = ChunkManifest(child, back, manifest.unit).to_json()
    if not store.put_if_absent(layout.manifest(child), body):
        # An orphan: a holder died between writing it and naming it in the parent (which names
        # children only after writing them), so no one has read it as a chunk: ours to replace.
        store.put(layout.manifest(child), body)
    parent = replace(front, children=manifest.children + (child,))
    store.put(layout.manifest(manifest.chunk), parent.to_json())
    try:  # the split holds from here on, whatever happens to the request
        withdraw(store, manifest.chunk)
    except StoreError:
        pass  # the asker withdraws it when its wait is over (or the holder answers it again)
    return parent, child
