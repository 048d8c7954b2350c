"""Serve's state in the store: files, batches, and which batches are still moving.

Everything lives under ``_serve/`` in the store root (``_`` starts no run name, so it can never
collide with a run's folder)::

    _serve/<tenant>/files/<file_id>.json        FileRecord
    _serve/<tenant>/files/<file_id>.jsonl       the file's bytes (immutable)
    _serve/<tenant>/batches/<batch_id>.json     BatchRecord, changed only by ``update_batch``
    _serve/active/<tenant>/<batch_id>           a batch not yet in a terminal status (the scheduler's list)

A tenant's objects sit under its own prefix: a request is only ever resolved inside its
tenant's folder, so one tenant cannot name another's file or batch. Ids are checked
(``objects.is_id``) before they reach a key. Nothing here holds state in memory: a server
started on the same store sees exactly what the last one left.
"""

from __future__ import annotations

import time
from typing import BinaryIO, Callable, Iterator

from chunkpilot.errors import NotFoundError
from chunkpilot.store import Store, open_store
from chunkpilot.control.serve.objects import BATCH_PREFIX, FILE_PREFIX, BatchRecord, FileRecord, is_id, new_id, not_found, page_ids

ROOT = "_serve"
ACTIVE = "active/"
UPDATE_TRIES = 20


class ServeState:
    """Files and batches of every tenant in one store."""

    def __init__(self, store_uri: str):
        self.store_uri = store_uri
        self.root: Store = open_store(store_uri)
        self.store: Store = self.root.child(ROOT)

    # -- keys -----------------------------------------------------------------------------
    @staticmethod
    def _file_meta(tenant: str, file_id: str) -> str:
        return f"{tenant}/files/{file_id}.json"

    @staticmethod
    def _file_content(tenant: str, file_id: str) -> str:
        return f"{tenant}/files/{file_id}.jsonl"

    @staticmethod
    def _batch(tenant: str, batch_id: str) -> str:
        return f"{tenant}/batches/{batch_id}.json"

    @staticmethod
    def _active(tenant: str, batch_id: str) -> str:
        return f"{ACTIVE}{tenant}/{batch_id}"

    # -- files ------------------------------------------------------------------------------
    def add_file(self, tenant: str, path: str, size: int, filename: str, purpose: str,
                 file_id: str | None = None) -> FileRecord:
        """Store the local file at ``path`` (streamed: ``Store.put_file``), then its record. A
        ``file_id`` chosen earlier (a result file being rewritten) replaces what it held."""
        record = FileRecord(file_id or new_id(FILE_PREFIX), tenant, size, int(time.time()), filename, purpose)
        self.store.put_file(self._file_content(tenant, record.id), path)
        self.store.put(self._file_meta(tenant, record.id), record.to_json())
        return record

    def get_file(self, tenant: str, file_id: str) -> FileRecord:
        """The file's record; ApiError 404 if this tenant has no such file."""
        if not is_id(file_id, FILE_PREFIX):
            raise not_found("file", file_id, "file_id")
        try:
            return FileRecord.from_json(self.store.get(self._file_meta(tenant, file_id)))
        except NotFoundError:
            raise not_found("file", file_id, "file_id") from None

    def open_content(self, tenant: str, file_id: str) -> BinaryIO:
        self.get_file(tenant, file_id)
        return self.store.open(self._file_content(tenant, file_id))

    def content_uri(self, tenant: str, file_id: str) -> str:
        """Where a run reads the file from (a path in a local store, ``s3://...`` in S3)."""
        return f"{self.store.uri.rstrip('/')}/{self._file_content(tenant, file_id)}"

    def list_files(self, tenant: str, purpose: str | None, after: str | None, limit: int,
                   newest_first: bool = True) -> tuple[list[FileRecord], bool]:
        """One page of the tenant's files in creation order (newest first unless told otherwise),
        only those of ``purpose`` if given (which reads every record; unfiltered reads only the page's)."""
        ids = sorted((k[: -len(".json")].rsplit("/", 1)[-1] for k in self.store.keys(f"{tenant}/files/")
                      if k.endswith(".json")), reverse=newest_first)
        if purpose is None:
            chosen, more = page_ids(ids, after, limit, newest_first)
            return [self.get_file(tenant, i) for i in chosen], more
        by_id = {r.id: r for r in (self.get_file(tenant, i) for i in ids) if r.purpose == purpose}
        chosen, more = page_ids([i for i in ids if i in by_id], after, limit, newest_first)
        return [by_id[i] for i in chosen], more

    def delete_file(self, tenant: str, file_id: str) -> None:
        self.get_file(tenant, file_id)
        self.store.delete(self._file_content(tenant, file_id))
        self.store.delete(self._file_meta(tenant, file_id))

    # -- batches ------------------------------------------------------------------------------
    def create_batch(self, record: BatchRecord) -> BatchRecord:
        """Write a new batch; its active marker first, so the scheduler never misses a batch."""
        self.store.put(self._active(record.tenant, record.id), b"")
        self.store.put_if_absent(self._batch(record.tenant, record.id), record.to_json())
        return record

    def get_batch(self, tenant: str, batch_id: str) -> BatchRecord:
        if not is_id(batch_id, BATCH_PREFIX):
            raise not_found("batch", batch_id, "batch_id")
        try:
            return BatchRecord.from_json(self.store.get(self._batch(tenant, batch_id)))
        except NotFoundError:
            raise not_found("batch", batch_id, "batch_id") from None

    def update_batch(self, tenant: str, batch_id: str,
                     change: Callable[[BatchRecord], BatchRecord | None]) -> BatchRecord:
        """Apply ``change`` to the stored batch and write it only if nobody wrote it meanwhile (a
        conditional write, retried on a fresh read); ``change`` returning None writes nothing.
        The API (cancel) and the scheduler both write batches through here."""
        key = self._batch(tenant, batch_id)
        for _ in range(UPDATE_TRIES):
            etag = self.store.head(key).etag
            current = BatchRecord.from_json(self.store.get(key))
            new = change(current)
            if new is None or new == current:
                return current
            if self.store.put_if_match(key, new.to_json(), etag):
                if new.terminal:
                    self.store.delete(self._active(tenant, batch_id))
                return new
        raise RuntimeError(f"batch {batch_id} kept changing under a write; retry")

    def list_batches(self, tenant: str, after: str | None, limit: int) -> tuple[list[BatchRecord], bool]:
        """One page of the tenant's batches, newest first (ids sort by creation: one listing, and a
        read of only the batches on the page)."""
        ids = sorted((k[: -len(".json")].rsplit("/", 1)[-1] for k in self.store.keys(f"{tenant}/batches/")
                      if k.endswith(".json")), reverse=True)
        chosen, more = page_ids(ids, after, limit)
        return [self.get_batch(tenant, i) for i in chosen], more

    def forget_active(self, tenant: str, batch_id: str) -> None:
        """Drop a finished batch's active marker (``update_batch`` does; this is for a crash between)."""
        self.store.delete(self._active(tenant, batch_id))

    def active_batches(self) -> Iterator[tuple[str, str]]:
        """(tenant, batch id) of every batch not yet finished, oldest first."""
        found = []
        for key in self.store.keys(ACTIVE):
            tenant, _, batch_id = key[len(ACTIVE):].partition("/")
            if is_id(batch_id, BATCH_PREFIX):
                found.append((batch_id, tenant))
        return ((tenant, batch_id) for batch_id, tenant in sorted(found))

    def files_in_use(self, tenant: str, file_id: str) -> list[str]:
        """Batches of the tenant still running on ``file_id`` (its input must not go meanwhile)."""
        out = []
        for t, batch_id in self.active_batches():
            if t == tenant and self.get_batch(t, batch_id).input_file_id == file_id:
                out.append(batch_id)
        return out
