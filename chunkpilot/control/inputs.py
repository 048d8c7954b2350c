"""Resolve what the user named (files, folders, prefixes, globs; local, s3:// or hf://datasets/) into pinned inputs.

A file named directly, or matched by a glob the user wrote, is taken whatever its name. A folder
or an ``s3://`` prefix contributes only files of the formats chunkpilot reads (``chunkpilot.formats``);
the others are reported as skipped, never silently planned as records. Hidden files (``.x``, ``_x``:
Hadoop's bookkeeping) are passed over too; those named like data (``_part.jsonl``) are reported,
so a user who meant them as data sees they were left out. A Hugging Face dataset is pinned to
the commit its revision names now (``chunkpilot.control.hf_inputs``).
"""

from __future__ import annotations

import fnmatch
import glob
import os
from dataclasses import dataclass, field

from chunkpilot.errors import InputError, NotFoundError, StoreError
from chunkpilot.formats import InputFormat, described_suffixes, format_of, get_format
from chunkpilot.spec import InputPin
from chunkpilot.store import open_store, split_object_uri

_WILDCARDS = "*?["


def _hidden(name: str) -> bool:
    # Hadoop's convention: _SUCCESS, .crc, .DS_Store and friends are not data.
    return name.startswith((".", "_"))


def is_data_file(name: str) -> bool:
    """A file a folder or prefix contributes: one of a format chunkpilot reads."""
    return format_of(name) is not None


@dataclass
class ResolvedInputs:
    """The inputs to plan, and the files folders/prefixes held that are not data (``skipped``)."""

    pins: list[InputPin]
    skipped: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # hidden files named like data, left out
    notes: list[str] = field(default_factory=list)  # what resolving did that a person should know (hub pins)


def resolve_inputs(specs: list[str], split: str | None = None, config: str | None = None) -> ResolvedInputs:
    """Every input object, in the order given (folders and globs sorted), pinned by size and etag
    (and a hub dataset's files by the commit; ``split``/``config`` choose its files).

    Raises InputError when something named does not exist, matches nothing, or
    when all inputs together are empty.
    """
    if not specs:
        raise InputError("no input given: name one or more JSONL files, folders, globs, s3:// prefixes or "
                         "hf://datasets/ORG/NAME")
    if (split or config) and not any(s.startswith("hf://") for s in specs):
        raise InputError("--split/--config choose the files of a Hugging Face dataset: name one as hf://datasets/ORG/NAME")
    pins: list[InputPin] = []
    skipped: list[str] = []
    hidden: list[str] = []
    notes: list[str] = []
    for spec in specs:
        if spec.startswith("hf://"):
            from chunkpilot.control.hf_inputs import resolve_hf_input

            hub = resolve_hf_input(spec, split, config)
            pins.extend(hub.pins)
            skipped.extend(hub.skipped)
            notes.append(hub.note)
            continue
        found, passed_over = _resolve_s3(spec) if spec.startswith("s3://") else _resolve_local(spec)
        hid = [p for p in passed_over if _hidden(p.rsplit("/", 1)[-1])]
        passed_over = [p for p in passed_over if p not in set(hid)]
        hidden.extend(hid)
        skipped.extend(passed_over)
        if not found:
            detail = (f": it holds {len(passed_over)} file(s) but none named {described_suffixes(glob=True)}"
                      f" (e.g. {passed_over[0]})" if passed_over else "")
            if hid:
                detail += f"{';' if detail else ':'} hidden files are left out (e.g. {hid[0]}): name one directly to include it"
            raise InputError(f"input {spec!r} matches no files{detail}")
        pins.extend(found)
    seen: set[str] = set()
    unique = [p for p in pins if not (p.uri in seen or seen.add(p.uri))]
    if sum(p.size for p in unique) == 0:
        raise InputError(f"inputs are empty ({len(unique)} file(s), 0 bytes): nothing to run")
    return ResolvedInputs(unique, skipped, hidden, notes)


def _resolve_local(spec: str) -> tuple[list[InputPin], list[str]]:
    path = os.path.expanduser(spec[len("file://") :] if spec.startswith("file://") else spec)
    skipped: list[str] = []
    if any(c in path for c in _WILDCARDS):
        paths = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(path):
        paths = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            for f in filenames:
                if _hidden(f):
                    if is_data_file(f):  # reported apart (resolve_inputs)
                        skipped.append(os.path.join(dirpath, f))
                    continue
                (paths if is_data_file(f) else skipped).append(os.path.join(dirpath, f))
        paths.sort()
        skipped.sort()
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
    return pins, skipped


def _resolve_s3(spec: str) -> tuple[list[InputPin], list[str]]:
    bucket, _, key = spec[len("s3://") :].partition("/")
    store = open_store(f"s3://{bucket}")
    skipped: list[str] = []
    try:
        if any(c in key for c in _WILDCARDS):
            prefix = key[: min(key.find(c) for c in _WILDCARDS if c in key)]
            objects = [o for o in store.list(prefix) if fnmatch.fnmatchcase(o.key, key)]
        elif key and not key.endswith("/"):
            try:
                info = store.head(key)
                return [InputPin(f"s3://{bucket}/{info.key}", info.size, info.etag)], []
            except NotFoundError:
                objects = list(store.list(key + "/"))
                if not objects:
                    raise InputError(f"input {spec!r} does not exist") from None
                objects, skipped = _data_objects(objects)
        else:
            objects, skipped = _data_objects(store.list(key))
    except StoreError as exc:
        raise InputError(f"cannot read input {spec!r}: {exc}") from exc
    objects = [o for o in objects if not _hidden(o.key.rsplit("/", 1)[-1]) and not o.key.endswith("/")]
    return [InputPin(f"s3://{bucket}/{o.key}", o.size, o.etag) for o in objects], [f"s3://{bucket}/{k}" for k in skipped]


def _data_objects(objects) -> tuple[list, list[str]]:
    """A prefix's objects split into data files and the keys of the rest (hidden ones dropped quietly)."""
    data, skipped = [], []
    for o in objects:
        name = o.key.rsplit("/", 1)[-1]
        if o.key.endswith("/"):
            continue
        if _hidden(name):
            if is_data_file(name):  # reported apart (resolve_inputs)
                skipped.append(o.key)
            continue
        if is_data_file(name):
            data.append(o)
        else:
            skipped.append(o.key)
    return data, skipped


def choose_format(pins: list[InputPin]) -> InputFormat:
    """The one input format of the run: the format every input's name says (JSON Lines for names
    no format claims). InputError if the inputs mix formats: one run reads one format."""
    named = {pin.uri: fmt.name for pin in pins if (fmt := format_of(pin.uri.rsplit("/", 1)[-1])) is not None}
    found = sorted(set(named.values()))
    if len(found) > 1:
        examples = ", ".join(f"{next(u for u, f in named.items() if f == name)} ({name})" for name in found)
        raise InputError(f"inputs mix formats ({examples}): submit one run per format")
    return get_format(found[0] if found else "jsonl")
