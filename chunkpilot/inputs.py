"""Inputs as the run pinned them: a worker refuses one that changed since submit, and so does collect.

Two checks, of different cost:

* ``pin_change``/``check_pin``: one HEAD (a ``stat`` for a local file) — size and etag (for a local
  file: inode, modification time and size). Catches every edit that changes the size, the
  modification time or the file (an editor's save-as-rename).
* ``InputDigest``: a SHA-256 of the input bytes a chunk's records came from, taken by the worker
  while it reads them anyway (``SuccessMarker.input_digest``) and again by collect when it reads
  the records back. Catches what the pin cannot: a same-size, in-place edit whose modification
  time was put back. It costs no extra read — only CPU over bytes already read (about 1 GB/s
  with SHA-NI: a second per GB, beside hours of inference and collect's own JSON parsing).
"""

from __future__ import annotations

import hashlib

from chunkpilot.errors import InputError, NotFoundError
from chunkpilot.spec import InputPin
from chunkpilot.store import split_object_uri


REMOVED = "it was removed"


def pin_change(pin: InputPin) -> str | None:
    """What changed in the input since the run pinned it, for people; None if it matches its pin.

    Raises StoreError when the input's store cannot be asked."""
    store, key = split_object_uri(pin.uri)
    try:
        info = store.head(key)
    except NotFoundError:
        return REMOVED
    if info.size != pin.size:
        return f"its size changed from {pin.size} to {info.size} bytes"
    if info.etag != pin.etag:
        return "it was modified (same size, other modification time or etag)"
    return None


def check_pin(pin: InputPin) -> None:
    """Raise InputError if the input no longer matches what was planned."""
    change = pin_change(pin)
    if change is not None:
        raise InputError(
            f"input {pin.uri} changed after the run was planned: {change}; "
            "record positions would no longer match: submit a new run"
        )


class InputDigest:
    """The SHA-256 of a chunk's input bytes, fed record by record in input order (blank lines too).

    ``hexdigest`` is "" when a record came without its bytes (a format that keeps none, Parquet):
    then there is nothing to compare and only the pin checks the input."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._complete = True

    def add(self, raw: bytes | None) -> None:
        if raw is None:
            self._complete = False
        else:
            self._hash.update(raw)

    def hexdigest(self) -> str:
        return self._hash.hexdigest() if self._complete else ""
