"""Planning compressed inputs: one streaming pass per compressed file at submit, and staged pieces
for a file too big for one chunk.

Why staging and not seek points: a worker given the middle of a compressed file must not
decompress everything before it. Seek points (``indexed_gzip``) exist for gzip only, and each
carries a 32 KiB window, so an index fine enough for 100 chunks is tens of MB that every worker
would fetch; a single-frame zstd file (what ``zstd`` writes by default) has no seek points at all.
Staging works the same for every compression: the one pass that must happen anyway (to learn the
decompressed size and find line starts) also cuts the file at line starts into pieces of about
one chunk's share and writes each piece, zstd-compressed (fast, level 1), into the run's folder.
A worker then decompresses exactly its piece: its share, once. The cost is at submit — one
decompression of the file plus one zstd compression — and store space of about the compressed
size again; both are measured in BENCHMARKS.md.

A compressed file no bigger than a chunk's share is not staged: chunks are made of whole
files, balanced by size, and a worker decompresses its files from their start.

Positions stay the source file's own — the byte offset of a line in its decompressed data —
whether a line is read from the file or from a piece, so they do not depend on the chunking.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Iterator

from chunkpilot.formats.compressed import READ_BLOCK, decompressed_blocks
from chunkpilot.spec import InputPin
from chunkpilot.store import Store, split_object_uri

MIN_STEP = 1024
STAGED_LEVEL = 1  # zstd level of staged pieces: compression speed matters more than size here


@dataclass(frozen=True)
class Scan:
    """What one pass over a compressed input found: its decompressed size, where it was cut (line
    starts, decompressed offsets; empty when it is read whole) and the pieces' URIs (when written)."""

    units: int
    cuts: tuple[int, ...]
    uris: tuple[str, ...]
    compressed_read: int


def piece_count(size: int, share: float) -> int:
    """How many pieces a compressed input of ``size`` bytes is staged as, given one chunk's share of
    all inputs' bytes: 1 (read whole) up to one and a half shares, else about one per share."""
    if share <= 0 or size <= 1.5 * share:
        return 1
    return max(2, round(size / share))


class _Counted:
    """A sequential reader over a store object that counts the compressed bytes read."""

    def __init__(self, stream):
        self.stream, self.read_bytes = stream, 0

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.read_bytes += len(data)
        return data


def scan(pin: InputPin, compression: str, pieces: int, stage: Callable[[int], tuple[Store, str]] | None) -> Scan:
    """Decompress ``pin`` once; cut it into ``pieces`` at the first line start after each
    ``k/pieces`` of its compressed bytes. ``stage(k)`` gives where piece ``k`` goes (store, key);
    None: only find the cuts (a dry run). InputError if the data is corrupt or truncated."""
    store, key = split_object_uri(pin.uri)
    targets = [pin.size * k // pieces for k in range(1, pieces)]
    cuts: list[int] = []
    uris: list[str] = []
    writer = _PieceWriter(stage, 0) if stage is not None and pieces > 1 else None
    units = 0
    with store.open(key) as stream:
        source = _Counted(stream)
        # Reads small enough that a cut lands within a 16th of a piece of its target.
        step = min(READ_BLOCK, max(MIN_STEP, pin.size // (16 * pieces))) if pieces > 1 else READ_BLOCK
        for block in decompressed_blocks(source.read, compression, pin.uri, step):
            while targets and source.read_bytes >= targets[0]:
                nl = block.find(b"\n")
                if nl < 0:
                    break  # the cut waits for the next line start
                head, block = block[: nl + 1], block[nl + 1 :]
                units += len(head)
                if writer:
                    writer.write(head)
                    uris.append(writer.close())
                    writer = _PieceWriter(stage, len(cuts) + 1)
                cuts.append(units)
                targets.pop(0)
            units += len(block)
            if writer:
                writer.write(block)
        read = source.read_bytes
    if writer:
        uris.append(writer.close())
    cuts = [c for c in cuts if 0 < c < units]
    if writer and len(uris) != len(cuts) + 1:  # a cut at the very end made an empty last piece
        uris = uris[: len(cuts) + 1]
    return Scan(units, tuple(cuts), tuple(uris), read)


class _PieceWriter:
    """One staged piece: zstd-compressed into a temporary file, then put into the store atomically."""

    def __init__(self, stage: Callable[[int], tuple[Store, str]], index: int):
        import zstandard

        self.store, self.key = stage(index)
        fd, self.path = tempfile.mkstemp(prefix="chunkpilot-stage-", suffix=".zst")
        self.file = os.fdopen(fd, "wb")
        self.writer = zstandard.ZstdCompressor(level=STAGED_LEVEL).stream_writer(self.file, closefd=False)

    def write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)

    def close(self) -> str:
        try:
            self.writer.close()
            self.file.close()
            self.store.put_file(self.key, self.path)
        finally:
            os.unlink(self.path)
        return f"{self.store.uri.rstrip('/')}/{self.key}"


def read_piece(uri: str) -> Iterator[bytes]:
    """A staged piece's decompressed data, block by block."""
    store, key = split_object_uri(uri)
    with store.open(key) as stream:
        yield from decompressed_blocks(stream.read, "zstd", uri)
