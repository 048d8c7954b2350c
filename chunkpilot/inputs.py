"""Inputs as the run pinned them: a worker refuses one that changed since submit."""

from __future__ import annotations

from chunkpilot.errors import InputError, NotFoundError
from chunkpilot.spec import InputPin
from chunkpilot.store import split_object_uri


def check_pin(pin: InputPin) -> None:
    """Raise InputError if the input no longer matches what was planned."""
    store, key = split_object_uri(pin.uri)
    try:
        info = store.head(key)
    except NotFoundError as exc:
        raise InputError(f"input {pin.uri} was removed after the run was planned") from exc
    if info.size != pin.size or info.etag != pin.etag:
        raise InputError(
            f"input {pin.uri} changed after the run was planned (size {pin.size} -> {info.size}); "
            "record positions would no longer match: submit a new run"
        )
