"""Stream a chunk's records from its byte ranges without holding more than a block in memory."""

from __future__ import annotations

from typing import Iterator

from chunkpilot.errors import InputError
from chunkpilot.spec import ByteRange, InputPin, RecordKey
from chunkpilot.store import Store, split_object_uri

BLOCK = 4 * 1024 * 1024


def iter_lines(store: Store, key: str, start: int, end: int, block: int = BLOCK) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` for every line starting in ``[start, end)``; lines keep their ``\\n``.

    ``start`` must be a line start and ``end`` a line start or the object's size,
    which the planner guarantees; the last line of a file may lack a newline.
    """
    pos, carry, carry_at = start, b"", start
    while pos < end:
        data = store.get_range(key, pos, min(end, pos + block))
        if not data:
            raise InputError(f"input {store.uri}/{key} ended at byte {pos}, expected {end}: was it truncated?")
        pos += len(data)
        buf = carry + data if carry else data
        base, cursor = carry_at, 0
        while True:
            nl = buf.find(b"\n", cursor)
            if nl < 0:
                break
            yield base + cursor, buf[cursor : nl + 1]
            cursor = nl + 1
        carry, carry_at = buf[cursor:], base + cursor
    if carry:
        yield carry_at, carry


def iter_chunk_lines(inputs: tuple[InputPin, ...], ranges: tuple[ByteRange, ...]) -> Iterator[tuple[RecordKey, bytes]]:
    """Every line of a chunk, in input order, keyed by ``(source, offset)``."""
    for r in ranges:
        store, key = split_object_uri(inputs[r.source].uri)
        for offset, line in iter_lines(store, key, r.start, r.end):
            yield (r.source, offset), line
