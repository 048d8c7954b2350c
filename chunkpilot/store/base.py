"""The object-store seam: a handful of primitives every backend implements.

Keys are ``/``-separated and relative to the store's root URI. Implementations
guarantee:

* ``put`` is atomic: a reader sees the old object or the whole new one, never a torn one.
* ``put_if_absent`` writes only when no object exists at the key and says whether it
  wrote. It is safe to retry: a write that landed but whose answer was lost reports
  ``True`` when the stored bytes are the ones we sent.
* ``put_if_match`` replaces an object only when its current ``etag`` is the given one.
* ``list`` yields every object under a prefix, recursively, sorted by key, with size,
  etag and modification time, paginating as the backend needs; ``keys`` yields the same
  keys without the rest.
* ``get_range`` reads ``[start, end)``; a range past the end is truncated, not an error.

Everything raises ``NotFoundError`` for a missing key and ``StoreError`` for any other
failure, so no caller ever sees a boto3 or OS exception.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from chunkpilot.errors import NotFoundError, StoreError


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a head says about one object."""

    key: str
    size: int
    etag: str
    mtime: float  # seconds since the epoch


class Store(ABC):
    """An object store rooted at ``uri`` (a local folder or ``s3://bucket/prefix``).

    Implementations fill in the primitives (abstract below); ``get``, ``keys``, ``write_into``,
    ``put_file`` and ``exists`` are derived from them, and an implementation overrides one only
    where it can do better (a local folder copies inside the kernel, S3 uploads in parts).
    """

    uri: str
    #: How many reads are worth having in flight at once: 1 where a read is a system call
    #: served from memory (a local folder), more where each is a network round trip (S3).
    parallel_reads: int = 1

    # -- primitives ---------------------------------------------------------------
    @abstractmethod
    def get_range(self, key: str, start: int, end: int) -> bytes: ...

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of the whole object, for reads too big to hold in memory."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool: ...

    @abstractmethod
    def put_if_match(self, key: str, data: bytes, etag: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def child(self, prefix: str) -> "Store":
        """A store rooted at ``<uri>/<prefix>``, sharing connections with this one."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise StoreError with a clear message if this store cannot be written."""

    # -- derived --------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        with self.open(key) as stream:
            return stream.read()

    def keys(self, prefix: str = "") -> Iterator[str]:
        """The keys ``list`` gives, in its order (cheaper where sizes cost a system call each)."""
        return (obj.key for obj in self.list(prefix))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
            return True
        except NotFoundError:
            return False

    def write_into(self, key: str, fd: int, offset: int) -> int:
        """Write the whole object into the open file ``fd`` at ``offset``; returns its size.

        Positional (``pwrite``): the file's position is untouched, so several objects can
        be written into one file side by side.
        """
        written = 0
        with self.open(key) as stream:
            while block := stream.read(COPY_BLOCK):
                written += pwrite_all(fd, block, offset + written)
        return written

    def put_file(self, key: str, path: str) -> None:
        """Store the local file at ``path`` under ``key``, atomically."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        self.put(key, data)


COPY_BLOCK = 1 << 20


def pwrite_all(fd: int, data, offset: int) -> int:
    """Write all of ``data`` into ``fd`` at ``offset`` (``os.pwrite`` may write less); returns its length."""
    view, done = memoryview(data), 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return done


def join_key(*parts: str) -> str:
    """Join key segments with ``/``, ignoring empty ones."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
