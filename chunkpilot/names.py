"""Validation of names that end up in store keys, job names and file paths.

Run ids and chunk ids become path segments (``<store>/<run>/out/<chunk>/``) and
SkyPilot job names (``<run>-<chunk>-a<attempt>``), so they are restricted to a
small alphabet: no ``/``, no ``..``, no control characters, nothing a shell or a
cloud API would treat specially.
"""

from __future__ import annotations

import re

from chunkpilot.errors import ConfigError

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
# A planned chunk is 4-8 digits; a split's remainder is its parent's id and ``_NN`` (``0003_99``,
# ``0003_99_99``...): NN counts down from 99, so ids sort in input order (``child_chunk_id``).
_CHUNK = re.compile(r"^[0-9]{4,8}(?:_[0-9]{2}){0,8}$")
MAX_CHILDREN = 99  # a chunk's children are _99 down to _01
# A worker slot (``w3``: one job) or one engine process of it (``w3e1``: the job's engine 1, on its own
# GPUs); engine 0 of a slot is the slot itself, so a one-GPU job's worker is ``w3`` as it always was.
_WORKER = re.compile(r"^w[0-9]{1,6}(?:e[1-9][0-9]{0,3})?$")


def validate_run_name(name: str) -> str:
    """Return ``name`` if it is a valid run name or id, else raise ConfigError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid run name {name!r}: use 1-40 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_chunk_id(chunk: str) -> str:
    """Return ``chunk`` if it is a valid chunk id (4-8 digits, then up to 8 ``_NN`` split suffixes),
    else raise ConfigError."""
    if not isinstance(chunk, str) or not _CHUNK.match(chunk) or chunk.endswith("_00"):
        raise ConfigError(f"invalid chunk id {chunk!r}: expected 4-8 digits, optionally followed by _NN split suffixes")
    return chunk


def child_chunk_id(parent: str, children: int) -> str | None:
    """The id of the next remainder split off ``parent``, which has ``children`` already; None when
    it has had all it may (99), or the id would nest too deep.

    Children count *down* (``_99``, ``_98``...): each split of a chunk cuts it earlier than the
    last, so a later child holds records before an earlier one's, and plain sorted order (also
    ``sorted(ids, key=lambda c: c + "/")``, a listing of ``out/``) stays input order, recursively.
    """
    if children >= MAX_CHILDREN:
        return None
    child = f"{parent}_{MAX_CHILDREN - children:02d}"
    return child if _CHUNK.match(child) else None


def parent_chunk_id(chunk: str) -> str | None:
    """``0003_99`` -> ``0003``; None for a planned chunk."""
    head, sep, _ = chunk.rpartition("_")
    return head if sep else None


def chunk_id(index: int, count: int) -> str:
    """The id of chunk ``index`` of ``count``: zero-padded so ids sort in input order."""
    width = max(4, len(str(max(count - 1, 0))))
    return f"{index:0{width}d}"


def worker_id(index: int) -> str:
    """The id of the run's worker ``index`` (0-based): ``w0``, ``w1``..."""
    return f"w{index}"


def validate_worker_id(worker: str) -> str:
    """Return ``worker`` if it is a valid worker id (``w`` and 1-6 digits, then ``e<k>`` for a job's
    engine k >= 1), else raise ConfigError."""
    if not isinstance(worker, str) or not _WORKER.match(worker):
        raise ConfigError(f"invalid worker id {worker!r}: expected w and 1-6 digits (e.g. w0), or w0e1 for engine 1 of w0")
    return worker


def engine_worker_id(slot: str, engine: int) -> str:
    """The worker id of engine ``engine`` (0-based) of the job in worker slot ``slot``: ``w3`` for
    engine 0, ``w3e1``, ``w3e2``... for the others. Each engine process claims, heartbeats and
    commits under its own id, so two engines of one machine never share a claim."""
    return slot if engine == 0 else f"{slot}e{engine}"


def slot_of(worker: str) -> str:
    """The worker slot (the job) a worker id belongs to: ``w3e1`` -> ``w3``; ``w3`` -> ``w3``."""
    head, sep, tail = worker.partition("e")
    return head if sep and tail.isdigit() else worker


def engine_of(worker: str) -> int:
    """Which engine of its job a worker id is: ``w3e1`` -> 1; ``w3`` -> 0."""
    _, sep, tail = worker.partition("e")
    return int(tail) if sep and tail.isdigit() else 0


def job_name(run_id: str, slot: str, attempt: int) -> str:
    """The backend job name of one launch of worker ``slot``, e.g. ``demo-1123-w3-a2``
    (runs of chunkpilot 0.1 had a job per chunk: ``demo-1123-0003-a2``)."""
    return f"{run_id}-{slot}-a{attempt}"
