"""Compressed inputs (gzip, zstd, bzip2, xz): what a file holds, told by its magic bytes, and its
lines, decompressed as a stream.

A compressed file is one stream: a line in the middle can only be reached by decompressing
everything before it. So a record's position in a compressed input is the byte offset of its
line in the *decompressed* data — stable (decompression is deterministic), ordered, and the
same whether the file is read whole or from a staged piece (``chunkpilot.formats.staging``).

Compression is told by content, not by name: a ``.gz`` file holding zstd data is read as zstd,
a ``.jsonl`` file holding gzip data is read as gzip, and a ``.gz`` file holding plain text is
read as plain text (the plan says so). Corrupt or truncated data raises ``InputError`` naming
the file and where the data broke: never records made of garbage.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

from chunkpilot.errors import InputError

# Compressed bytes handed to a decompressor at a time: bounds what one call inflates to.
READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class Compression:
    """One compression: its name in run.json, its magic bytes, the suffixes that name it."""

    name: str
    title: str
    magic: bytes
    suffixes: tuple[str, ...]
    decompressor: Callable[[], object]  # a fresh object with decompress(data), eof, unused_data


def _zstd():
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


COMPRESSIONS: dict[str, Compression] = {
    c.name: c for c in (
        Compression("gzip", "gzip", b"\x1f\x8b", (".gz", ".gzip"), lambda: zlib.decompressobj(wbits=31)),
        Compression("zstd", "zstd", b"\x28\xb5\x2f\xfd", (".zst", ".zstd"), _zstd),
        Compression("bzip2", "bzip2", b"BZh", (".bz2",), bz2.BZ2Decompressor),
        Compression("xz", "xz", b"\xfd7zXZ\x00", (".xz",), lzma.LZMADecompressor),
    )
}
COMPRESSED_SUFFIXES = tuple(s for c in COMPRESSIONS.values() for s in c.suffixes)


def compression_of(head: bytes) -> str | None:
    """The compression whose magic bytes open ``head`` (a file's first bytes), or None: plain."""
    return next((c.name for c in COMPRESSIONS.values() if head.startswith(c.magic)), None)


def compression_named(filename: str) -> str | None:
    """The compression ``filename``'s suffix names (``data.jsonl.gz`` -> gzip), or None."""
    lower = filename.lower()
    return next((c.name for c in COMPRESSIONS.values() if lower.endswith(c.suffixes)), None)


def strip_compression_suffix(filename: str) -> str:
    """``data.jsonl.gz`` -> ``data.jsonl``: the name of what the file holds."""
    lower = filename.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def peek(head: bytes, compression: str) -> bytes:
    """As much of the decompressed start of a file as its first bytes ``head`` give (best effort:
    b"" when they give nothing), to look at what a compressed file holds without reading it."""
    try:
        return COMPRESSIONS[compression].decompressor().decompress(head)
    except Exception:  # noqa: BLE001 - a sniff: a damaged head shows up when the file is read
        return b""


def decompressed_blocks(read: Callable[[int], bytes], compression: str, name: str,
                        block: int = READ_BLOCK) -> Iterator[bytes]:
    """The decompressed data of a stream, block by block; ``read(n)`` gives up to ``n`` compressed
    bytes (b"" at the end), ``block`` at a time (each block's output is yielded before the next
    read, so a caller counting reads knows where in the compressed stream it is). Concatenated members/frames (pigz, bgzip, multi-frame zstd) are read
    one after another. InputError naming ``name`` when the data is corrupt or ends early."""
    kind = COMPRESSIONS[compression]
    decoder, consumed, fed = kind.decompressor(), 0, False
    while True:
        data = read(block)
        if not data:
            break
        while data:
            try:
                out = decoder.decompress(data)
            except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise InputError(f"input {name}: its {kind.title} data is corrupt near compressed byte "
                                 f"{consumed}: {exc}") from None
            except Exception as exc:  # zstandard.ZstdError, without importing zstandard for every file
                raise InputError(f"input {name}: its {kind.title} data is corrupt near compressed byte "
                                 f"{consumed}: {exc}") from None
            fed = True
            if out:
                yield out
            if decoder.eof:
                rest = decoder.unused_data
                consumed += len(data) - len(rest)
                data = rest
                if data and not data.strip(b"\0"):
                    data = b""  # zero padding after the last member, as gzip(1) tolerates
                decoder, fed = kind.decompressor(), False
            else:
                consumed += len(data)
                data = b""
    if fed:
        raise InputError(f"input {name}: its {kind.title} data ends early (after {consumed} compressed bytes): "
                         "was the file truncated?")


def lines_of(blocks: Iterator[bytes], base: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` for every line of a stream of blocks; offsets count from ``base``, lines
    keep their ``\\n`` (the last may lack one)."""
    carry, at = b"", base
    for block in blocks:
        buf = carry + block if carry else block
        cursor = 0
        while True:
            nl = buf.find(b"\n", cursor)
            if nl < 0:
                break
            yield at + cursor, buf[cursor : nl + 1]
            cursor = nl + 1
        carry, at = buf[cursor:], at + cursor
    if carry:
        yield at, carry
