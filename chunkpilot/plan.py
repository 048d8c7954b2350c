"""Split inputs into chunks of line-aligned byte ranges. Pure: sizes and a probe in, manifests out.

Like Hadoop input splits: pick ``n - 1`` split points evenly by bytes over the
concatenated inputs, move each forward to the next line start (the probe finds
it with a small ranged read), and cut there. No input is read in full and
nothing is copied; a chunk may span files; empty chunks are dropped.

A position is a line start when it is 0 or the byte before it is ``\\n``. Only
``\\n`` ends a line, so CRLF, U+2028 inside JSON strings and multi-byte UTF-8
characters never move a cut into the middle of a record.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Callable, Iterable, Iterator, Sequence

from chunkpilot.names import chunk_id
from chunkpilot.spec import ByteRange, ChunkManifest

# probe(source, offset) -> the first line start >= offset in that source (or its size).
Probe = Callable[[int, int], int]
# How probes are run: ``map`` one after another, or an executor's ``map`` to overlap their round trips.
Mapper = Callable[[Callable[[int, int], int], Iterable[int], Iterable[int]], Iterator[int]]


def split_points(total: int, n: int) -> list[int]:
    """The ``n - 1`` ideal cut positions in the concatenation, evenly spaced by bytes."""
    return [total * k // n for k in range(1, n)]


def plan_chunks(sizes: Sequence[int], n: int, probe: Probe, run: Mapper = map) -> list[ChunkManifest]:
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
        manifests.append(ChunkManifest(chunk_id(index, len(spans)), tuple(_ranges(starts, sizes, lo, hi))))
    return manifests


def _ranges(starts: Sequence[int], sizes: Sequence[int], lo: int, hi: int) -> list[ByteRange]:
    """Per-source ranges of the global span ``[lo, hi)``, skipping empty pieces."""
    out = []
    for source, size in enumerate(sizes):
        a, b = max(lo, starts[source]), min(hi, starts[source] + size)
        if b > a:
            out.append(ByteRange(source, a - starts[source], b - starts[source]))
    return out


def next_line_start(read: Callable[[int, int], bytes], size: int, offset: int, block: int = 1024) -> int:
    """The first line start at or after ``offset`` in an object of ``size`` bytes.

    ``read(start, end)`` returns bytes ``[start, end)``. The first read is small (most
    JSONL records are under 1 KB, so 1,000 probes read < 0.1% of a 1 GB input) and
    reads grow geometrically, so a very long line costs a few reads, not one per block.
    """
    if offset <= 0:
        return 0
    pos = offset - 1  # the line starts at offset iff byte offset-1 is '\n'
    while pos < size:
        data = read(pos, min(size, pos + block))
        found = data.find(b"\n")
        if found >= 0:
            return pos + found + 1
        if not data:
            break
        pos += len(data)
        block *= 2
    return size
