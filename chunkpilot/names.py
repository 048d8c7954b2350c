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
_CHUNK = re.compile(r"^[0-9]{4,8}$")
_WORKER = re.compile(r"^w[0-9]{1,6}$")


def validate_run_name(name: str) -> str:
    """Return ``name`` if it is a valid run name or id, else raise ConfigError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid run name {name!r}: use 1-40 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_chunk_id(chunk: str) -> str:
    """Return ``chunk`` if it is a valid chunk id (4-8 digits), else raise ConfigError."""
    if not isinstance(chunk, str) or not _CHUNK.match(chunk):
        raise ConfigError(f"invalid chunk id {chunk!r}: expected 4-8 digits")
    return chunk


def chunk_id(index: int, count: int) -> str:
    """The id of chunk ``index`` of ``count``: zero-padded so ids sort in input order."""
    width = max(4, len(str(max(count - 1, 0))))
    return f"{index:0{width}d}"


def worker_id(index: int) -> str:
    """The id of the run's worker ``index`` (0-based): ``w0``, ``w1``..."""
    return f"w{index}"


def validate_worker_id(worker: str) -> str:
    """Return ``worker`` if it is a valid worker id (``w`` and 1-6 digits), else raise ConfigError."""
    if not isinstance(worker, str) or not _WORKER.match(worker):
        raise ConfigError(f"invalid worker id {worker!r}: expected w and 1-6 digits, e.g. w0")
    return worker


def job_name(run_id: str, slot: str, attempt: int) -> str:
    """The backend job name of one launch of worker ``slot``, e.g. ``demo-1123-w3-a2``
    (runs of chunkpilot 0.1 had a job per chunk: ``demo-1123-0003-a2``)."""
    return f"{run_id}-{slot}-a{attempt}"
