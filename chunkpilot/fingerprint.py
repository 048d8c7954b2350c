"""A model folder's fingerprint: every file that makes the model, by name, size and a cheap content hash.

Taken at submit and again by each worker before it loads the model, so a folder whose weights
changed in between is refused — naming the file — instead of answering half a run with other
weights. Cheap for big models: a file up to ``FULL_HASH_BYTES`` is hashed whole; a bigger one
by its first ``HEAD_BYTES`` (a safetensors file's header: names, dtypes, shapes, offsets) plus
``SAMPLES`` blocks spread over the rest and its last block — a few MB read per file, whatever
its size, and any retraining or requantization changes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FULL_HASH_BYTES = 4 << 20
HEAD_BYTES = 1 << 20
SAMPLES = 16
SAMPLE_BYTES = 64 << 10
# Files that are not the model: docs, VCS and cache bookkeeping, chunkpilot's own conversion marker.
_NOT_MODEL = (".md", ".gitattributes", ".lock")
_NOT_MODEL_NAMES = {"LICENSE", "LICENSE.txt", "NOTICE", "chunkpilot-conversion.json"}


def folder_files(folder: str | os.PathLike[str]) -> dict[str, str]:
    """``{relative path: "<size>:<digest>"}`` of every file of the model in ``folder``."""
    root = Path(folder)
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or rel.endswith(_NOT_MODEL) or path.name in _NOT_MODEL_NAMES:
            continue
        out[rel] = file_fingerprint(path)
    return out


def file_fingerprint(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(HEAD_BYTES))
            step = (size - HEAD_BYTES) // (SAMPLES + 1)
            for i in range(1, SAMPLES + 1):
                f.seek(HEAD_BYTES + i * step)
                h.update(f.read(SAMPLE_BYTES))
            f.seek(max(0, size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
    return f"{size}:{h.hexdigest()[:16]}"


def revision_of(files: dict[str, str], prefix: str = "local") -> str:
    """One short name for a fingerprint: what output lines carry as the model's revision."""
    return f"{prefix}-" + hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12]


def differences(pinned: dict[str, str], now: dict[str, str], limit: int = 3) -> str:
    """What changed between two fingerprints, file by file, for people."""
    changes = []
    for name in sorted(set(pinned) | set(now)):
        before, after = pinned.get(name), now.get(name)
        if before == after:
            continue
        if after is None:
            changes.append(f"{name} is gone")
        elif before is None:
            changes.append(f"{name} was added")
        else:
            size_before, size_after = before.split(":")[0], after.split(":")[0]
            changes.append(f"{name} changed" + (f" (size {size_before} -> {size_after})" if size_before != size_after else " (same size, other content)"))
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(changes[:limit]) + more
