"""The watch lease: one object in the store, taken and renewed with conditional writes.

Two ``launcher watch`` processes on one run would both launch the same chunks;
the lease makes the second one stop with a clear message. It expires, so a
watcher that died without releasing it holds the run for at most ``ttl`` seconds
— or not at all when the new watcher runs on the same machine and sees the old
process is gone.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass

from chunkpilot import layout
from chunkpilot.errors import LeaseHeldError, NotFoundError
from chunkpilot.store import Store
from chunkpilot.control.proc import process_alive, process_start_ticks

LEASE_KEY = layout.LEASE


@dataclass(frozen=True)
class LeaseInfo:
    owner: str
    host: str
    pid: int
    expires_at: float
    pid_started: int | None = None  # the holder's start time (clock ticks since boot): tells pid reuse apart

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()


class Lease:
    """Held by one watcher of one run. ``acquire`` then ``renew`` every cycle, ``release`` at the end."""

    def __init__(self, store: Store, ttl: float = 120.0):
        self.store = store
        self.ttl = ttl
        self.owner = uuid.uuid4().hex
        self._etag: str | None = None

    def _body(self, now: float) -> bytes:
        pid = os.getpid()
        return LeaseInfo(self.owner, socket.gethostname(), pid, now + self.ttl, process_start_ticks(pid)).to_json()

    def acquire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        body = self._body(now)
        if self.store.put_if_absent(LEASE_KEY, body):
            self._etag = self.store.head(LEASE_KEY).etag
            return
        try:
            info = self.store.head(LEASE_KEY)
            data = json.loads(self.store.get(LEASE_KEY))
            current = LeaseInfo(**{k: v for k, v in data.items() if k in LeaseInfo.__dataclass_fields__})
        except NotFoundError:  # released between our two calls: try once more
            if self.store.put_if_absent(LEASE_KEY, body):
                self._etag = self.store.head(LEASE_KEY).etag
                return
            raise LeaseHeldError("another watcher took the run's lease just now") from None
        except (ValueError, TypeError):
            current = None  # unreadable lease: treat as expired
        if current is not None and current.owner != self.owner and current.expires_at > now and not _dead_here(current):
            raise LeaseHeldError(
                f"another `launcher watch` (pid {current.pid} on {current.host}) is driving this run; "
                f"its lease expires in {current.expires_at - now:.0f}s. Stop it, or wait and retry"
            )
        if not self.store.put_if_match(LEASE_KEY, body, info.etag):
            raise LeaseHeldError("another watcher took the run's lease just now")
        self._etag = self.store.head(LEASE_KEY).etag

    def renew(self, now: float | None = None) -> None:
        """Extend the lease; raises LeaseHeldError if someone else took it over."""
        now = time.time() if now is None else now
        if self._etag is None or not self.store.put_if_match(LEASE_KEY, self._body(now), self._etag):
            raise LeaseHeldError("this watcher lost the run's lease to another one; stopping")
        self._etag = self.store.head(LEASE_KEY).etag

    def release(self) -> None:
        if self._etag is None:
            return
        try:
            if self.store.head(LEASE_KEY).etag == self._etag:
                self.store.delete(LEASE_KEY)
        except NotFoundError:
            pass
        self._etag = None


def _dead_here(info: LeaseInfo) -> bool:
    """The holder ran on this machine and is provably gone — its pid no longer runs (or is a
    zombie), or now belongs to a process started at another time: its lease can be taken at once."""
    if info.host != socket.gethostname():
        return False
    if not process_alive(info.pid):
        return True
    started = process_start_ticks(info.pid)
    return info.pid_started is not None and started is not None and started != info.pid_started
