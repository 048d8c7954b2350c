"""Resolve what the user named (files, folders, prefixes, globs; local or s3://) into pinned inputs."""

from __future__ import annotations

import fnmatch
import glob
import os

from launcher.errors import InputError, NotFoundError, StoreError
from launcher.spec import InputPin
from launcher.store import open_store, split_object_uri

_WILDCARDS = "*?["


def _hidden(name: str) -> bool:
    # Hadoop's convention: _SUCCESS, .crc, .DS_Store and friends are not data.
    return name.startswith((".", "_"))


def resolve_inputs(specs: list[str]) -> list[InputPin]:
    """Every input object, in the order given (folders and globs sorted), pinned by size and etag.

    Raises InputError when something named does not exist, matches nothing, or
    when all inputs together are empty.
    """
    if not specs:
        raise InputError("no input given: name one or more JSONL files, folders, globs or s3:// prefixes")
    pins: list[InputPin] = []
    for spec in specs:
        found = _resolve_s3(spec) if spec.startswith("s3://") else _resolve_local(spec)
        if not found:
            raise InputError(f"input {spec!r} matches no files")
        pins.extend(found)
    seen: set[str] = set()
    unique = [p for p in pins if not (p.uri in seen or seen.add(p.uri))]
    if sum(p.size for p in unique) == 0:
        raise InputError(f"inputs are empty ({len(unique)} file(s), 0 bytes): nothing to run")
    return unique


def _resolve_local(spec: str) -> list[InputPin]:
    path = os.path.expanduser(spec[len("file://") :] if spec.startswith("file://") else spec)
    if any(c in path for c in _WILDCARDS):
        paths = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(path):
        paths = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            paths.extend(os.path.join(dirpath, f) for f in filenames if not _hidden(f))
        paths.sort()
    elif os.path.isfile(path):
        paths = [path]
    elif os.path.exists(path):
        raise InputError(f"input {spec!r} is not a regular file or folder")
    else:
        raise InputError(f"input {spec!r} does not exist")
    pins = []
    for p in paths:
        if not os.access(p, os.R_OK):
            raise InputError(f"input {p!r} is not readable")
        store, key = split_object_uri(os.path.abspath(p))
        info = store.head(key)
        pins.append(InputPin(uri=os.path.abspath(p), size=info.size, etag=info.etag))
    return pins


def _resolve_s3(spec: str) -> list[InputPin]:
    bucket, _, key = spec[len("s3://") :].partition("/")
    store = open_store(f"s3://{bucket}")
    try:
        if any(c in key for c in _WILDCARDS):
            prefix = key[: min(key.find(c) for c in _WILDCARDS if c in key)]
            objects = [o for o in store.list(prefix) if fnmatch.fnmatchcase(o.key, key)]
        elif key and not key.endswith("/"):
            try:
                info = store.head(key)
                return [InputPin(f"s3://{bucket}/{info.key}", info.size, info.etag)]
            except NotFoundError:
                objects = list(store.list(key + "/"))
                if not objects:
                    raise InputError(f"input {spec!r} does not exist") from None
        else:
            objects = list(store.list(key))
    except StoreError as exc:
        raise InputError(f"cannot read input {spec!r}: {exc}") from exc
    objects = [o for o in objects if not _hidden(o.key.rsplit("/", 1)[-1]) and not o.key.endswith("/")]
    return [InputPin(f"s3://{bucket}/{o.key}", o.size, o.etag) for o in objects]


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
