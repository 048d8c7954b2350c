"""A Hugging Face dataset repo at one commit, as a read-only store: inputs only, never a run store.

Keys are paths in the repo. Every read names the commit the store was opened at (its URI is
``hf://datasets/ORG/NAME@<sha>``), so what a worker reads cannot move when the branch it came
from does. Reads are ranged GETs (``chunkpilot.hf.api.read_range``); ``open`` streams a file in
blocks of them. Writes raise StoreError.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Iterator

from chunkpilot.errors import NotFoundError, StoreError
from chunkpilot.hf import api
from chunkpilot.hf.uri import DatasetRef, parse_dataset_uri
from chunkpilot.store.base import ObjectInfo, Store, join_key

STREAM_BLOCK = 8 * 1024 * 1024


class HfDatasetStore(Store):
    """The files of dataset ``ref.repo_id`` at ``ref.revision`` (a commit sha), under ``ref.path``."""

    parallel_reads = 8  # each read is a round trip to the hub

    def __init__(self, ref: DatasetRef):
        self.ref = ref
        self.uri = ref.uri

    @classmethod
    def from_uri(cls, uri: str) -> "HfDatasetStore":
        return cls(parse_dataset_uri(uri))

    def _path(self, key: str) -> str:
        return join_key(self.ref.path, key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return api.read_range(self.ref, self._path(key), max(0, start), end)

    def open(self, key: str) -> BinaryIO:
        size = self.head(key).size
        return io.BufferedReader(_RangedReader(self, key, size), buffer_size=STREAM_BLOCK)  # type: ignore[return-value]

    def head(self, key: str) -> ObjectInfo:
        found = api.path_info(self.ref, self._path(key))
        if found is None:
            raise NotFoundError(f"{self.uri}/{key} is a folder")
        return ObjectInfo(key, found.size, found.etag, 0.0)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # The hub lists folders, not key prefixes: list the folder holding the prefix, then filter.
        full = self._path(prefix)
        folder = full if full.endswith("/") or not full else full.rsplit("/", 1)[0] if "/" in full else ""
        try:
            files = api.list_files(self.ref, folder.rstrip("/"))
        except NotFoundError:
            return
        base = self.ref.path + "/" if self.ref.path else ""
        for f in files:
            if f.path.startswith(full) and f.path.startswith(base):
                yield ObjectInfo(f.path[len(base):], f.size, f.etag, 0.0)

    def child(self, prefix: str) -> "HfDatasetStore":
        return HfDatasetStore(self.ref.file(self._path(prefix)))

    def check_writable(self) -> None:
        raise StoreError(f"{self.uri} is a Hugging Face dataset: it is read as an input, never written")

    def _read_only(self, *_args, **_kwargs):
        raise StoreError(f"{self.uri} is a Hugging Face dataset: chunkpilot never writes to it")

    put = put_if_absent = put_if_match = delete = _read_only  # type: ignore[assignment]


class _RangedReader(io.RawIOBase):
    """A forward stream over a hub file: each ``readinto`` is one ranged read."""

    def __init__(self, store: HfDatasetStore, key: str, size: int):
        super().__init__()
        self.store, self.key, self.size, self.pos = store, key, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        want = min(len(buffer), self.size - self.pos)
        if want <= 0:
            return 0
        data = self.store.get_range(self.key, self.pos, self.pos + want)
        if not data:
            raise StoreError(f"{self.store.uri}/{self.key} ended at byte {self.pos}, expected {self.size}")
        memoryview(buffer)[: len(data)] = data
        self.pos += len(data)
        return len(data)
