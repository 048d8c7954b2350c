"""The JSON documents in the store: the contract between launcher, worker and users' scripts.

Each is a small frozen dataclass with ``to_json``/``from_json``; tests pin the JSON.

Store layout of one run (``<store>/<run_id>/``)::

    run.json                        RunSpec (immutable)
    chunks/<chunk>.json             ChunkManifest
    out/<chunk>/<part>.jsonl        committed result parts, immutable; name = PartName
    out/<chunk>/_SUCCESS            SuccessMarker, written once (put-if-absent)
    held/<chunk>/a<attempt>.jsonl   answers finished but not yet in a part (a slower record comes
                                    before them); rewritten every commit, deleted when the chunk is done
    progress/<chunk>.json           Progress heartbeat
    jobs/<chunk>/a<attempt>.json    AttemptRecord, one object per launch
    lease.json                      the watch lease
    CANCELLED                       CancelMarker: the run is paused (``launcher cancel``, or its error
                                    budget ran out); ``launcher watch`` removes it and resumes
    resumed.json                    ResumeAllowance: attempts a pause cost each chunk, given back
    logs/                           local backend only: each job's log, pid and exit files
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from array import array
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from chunkpilot.errors import ConfigError

SPEC_VERSION = 2  # 2: part names carry error counts, _SUCCESS carries custom_id hashes
# Past this share of error records, ``watch`` pauses the run and exits non-zero (``--max-error-rate``).
DEFAULT_MAX_ERROR_RATE = 0.1

# A record's identity is its position: (source index, byte offset of its line).
RecordKey = tuple[int, int]


def dumps(obj: Any) -> bytes:
    """Stable, readable JSON bytes for store documents."""
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class InputPin:
    """One input object as it was when the run was planned."""

    uri: str
    size: int
    etag: str


@dataclass(frozen=True)
class ChunkSummary:
    """A chunk as listed in run.json, so status needs no per-chunk read."""

    id: str
    bytes: int


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to know about the run, fixed at submit time."""

    run_id: str
    created_at: str
    inputs: tuple[InputPin, ...]
    chunks: tuple[ChunkSummary, ...]
    engine: str
    model: str
    model_revision: str
    sampling: dict[str, Any]
    backend: str
    use_spot: bool | None  # None: the task template decides
    max_attempts: int
    parallel: int
    chunkpilot_version: str
    template: str | None = None
    commit_seconds: float = 5.0
    commit_records: int = 256
    engine_options: dict[str, Any] = field(default_factory=dict)
    # Backend settings every launch of this run reuses (template overrides, secret *names*; never values).
    backend_options: dict[str, Any] = field(default_factory=dict)
    # Share of error records past which watch pauses the run; 1 turns the budget and fail-fast off.
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    version: int = SPEC_VERSION

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "RunSpec":
        data = json.loads(raw)
        if data.get("version") != SPEC_VERSION:
            raise ConfigError(f"run.json has spec version {data.get('version')}, this chunkpilot reads {SPEC_VERSION}")
        data["inputs"] = tuple(InputPin(**i) for i in data["inputs"])
        data["chunks"] = tuple(ChunkSummary(**c) for c in data["chunks"])
        return _from_dict(cls, data)

    @property
    def chunk_ids(self) -> list[str]:
        return [c.id for c in self.chunks]

    def with_(self, **changes: Any) -> "RunSpec":
        return replace(self, **changes)


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``[start, end)`` of input ``source`` (an index into RunSpec.inputs)."""

    source: int
    start: int
    end: int


@dataclass(frozen=True)
class ChunkManifest:
    """The byte ranges one job processes, in input order."""

    chunk: str
    ranges: tuple[ByteRange, ...]

    @property
    def bytes(self) -> int:
        return sum(r.end - r.start for r in self.ranges)

    def to_json(self) -> bytes:
        return dumps({"chunk": self.chunk, "ranges": [asdict(r) for r in self.ranges], "bytes": self.bytes})

    @classmethod
    def from_json(cls, raw: bytes) -> "ChunkManifest":
        data = json.loads(raw)
        return cls(chunk=data["chunk"], ranges=tuple(ByteRange(**r) for r in data["ranges"]))


_PART = re.compile(r"^a(\d+)-(\d+)_(\d+)\.(\d+)_(\d+)\.(\d+)_(\d+)_(\d+)(?:_(\d+)\.(\d+))?\.jsonl$")


@dataclass(frozen=True, order=True)
class PartName:
    """A committed part: every record with ``first <= key < end`` of its chunk, sorted by key.

    ``a<attempt>-<seq>_<first>_<end>_<records>_<errors>_<prompt tokens>.<completion tokens>.jsonl``:
    the name carries the interval, the record and error-line counts and the tokens its
    answers used, so resume, status and collect learn what is committed, and how fast,
    from one listing, without reading parts. ``end`` is the byte position just past the
    part's last line. Parts from different attempts (or a zombie) may overlap; each is
    complete for its interval. Names without tokens (written before they were added) parse
    with zero tokens.
    """

    first: RecordKey
    end: RecordKey
    attempt: int
    seq: int
    records: int
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def filename(self) -> str:
        return (
            f"a{self.attempt}-{self.seq:05d}_{self.first[0]}.{self.first[1]}"
            f"_{self.end[0]}.{self.end[1]}_{self.records}_{self.errors}"
            f"_{self.prompt_tokens}.{self.completion_tokens}.jsonl"
        )

    @classmethod
    def parse(cls, filename: str) -> "PartName | None":
        m = _PART.match(filename)
        if not m:
            return None
        a, seq, s0, o0, s1, o1, n, e = map(int, m.groups()[:8])
        pt, ct = (int(m.group(9)), int(m.group(10))) if m.group(9) is not None else (0, 0)
        return cls((s0, o0), (s1, o1), a, seq, n, e, pt, ct)


def custom_id_hash(custom_id: str) -> int:
    """The 64-bit hash by which collect finds custom_ids used by more than one record."""
    return int.from_bytes(hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def encode_hashes(hashes: array) -> str:
    """``array('Q')`` -> base64 of little-endian uint64s (the marker's ``custom_id_hashes``)."""
    if sys.byteorder == "big":
        hashes = array("Q", hashes)
        hashes.byteswap()
    return base64.b64encode(hashes.tobytes()).decode("ascii")


def decode_hashes(text: str) -> array:
    """``encode_hashes`` text -> ``array('Q')``."""
    hashes = array("Q", base64.b64decode(text))
    if sys.byteorder == "big":
        hashes.byteswap()
    return hashes


@dataclass(frozen=True)
class SuccessMarker:
    """``out/<chunk>/_SUCCESS``: written once, last, by the worker that finished the chunk.

    ``records``, ``skipped_blank`` and ``bytes`` cover the whole chunk; ``ok``,
    ``errors``, tokens and ``seconds`` cover the finishing attempt's own work, and
    ``resumed_records`` says how many records it found already answered (in parts or
    held). ``custom_id_hashes`` holds ``custom_id_hash`` of every record's custom_id,
    in input order (``encode_hashes``): collect counts duplicate custom_ids from these
    without reading the output.
    """

    chunk: str
    attempt: int
    records: int
    skipped_blank: int
    bytes: int
    ok: int
    errors: int
    resumed_records: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finished_at: str
    custom_id_hashes: str = ""
    error_codes: dict[str, int] = field(default_factory=dict)  # the whole chunk's error lines, by code

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "SuccessMarker":
        return _from_dict(cls, json.loads(raw))


@dataclass(frozen=True)
class Progress:
    """``progress/<chunk>.json``: the worker's heartbeat.

    ``state``: ``starting`` (loading the engine), ``running``, ``stopped`` (exit 75: resumable),
    ``failed`` (exit 2: ``reason`` says why; not retried) or ``done``. ``error_codes`` counts the
    chunk's error lines so far by code, earlier attempts' included.
    """

    chunk: str
    attempt: int
    state: str
    records_done: int
    bytes_done: int
    bytes_total: int
    tokens_per_s: float
    updated_at: float
    error_codes: dict[str, int] = field(default_factory=dict)
    reason: str = ""

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "Progress":
        return _from_dict(cls, json.loads(raw))


@dataclass(frozen=True)
class AttemptRecord:
    """``jobs/<chunk>/a<attempt>.json``: one launch of a chunk, created put-if-absent.

    Creating this object is what claims an attempt number, so two launchers can
    never start the same attempt; ``job_id`` is filled in once the backend answers.
    """

    chunk: str
    attempt: int
    backend: str
    name: str
    launched_at: float
    job_id: str | None = None
    state: str = "PENDING"
    ended_at: float | None = None
    reason: str | None = None
    cancelled_by_us: bool = False

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "AttemptRecord":
        return _from_dict(cls, json.loads(raw))

    def with_(self, **changes: Any) -> "AttemptRecord":
        return replace(self, **changes)


def attempt_key(chunk: str, attempt: int) -> str:
    return f"jobs/{chunk}/a{attempt}.json"


def held_key(chunk: str, attempt: int) -> str:
    return f"held/{chunk}/a{attempt}.jsonl"


def parse_attempt_key(key: str) -> tuple[str, int] | None:
    """``jobs/0003/a2.json`` -> ("0003", 2)."""
    m = re.match(r"^jobs/([0-9]+)/a([0-9]+)\.json$", key)
    return (m.group(1), int(m.group(2))) if m else None


CANCEL_KEY = "CANCELLED"
RESUMED_KEY = "resumed.json"


@dataclass(frozen=True)
class CancelMarker:
    """``CANCELLED``: the run is paused; ``launcher watch`` resumes it.

    ``attempts``: each chunk's latest attempt when it was paused, whose cancellation will
    not count against ``max_attempts`` once the run resumes.
    """

    reason: str
    cancelled_at: float
    attempts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "CancelMarker":
        try:
            return _from_dict(cls, json.loads(raw))
        except (ValueError, TypeError):  # written as plain text by chunkpilot before pauses could resume
            return cls(reason=raw.decode(errors="replace").strip() or "cancelled", cancelled_at=0.0)


@dataclass(frozen=True)
class ResumeAllowance:
    """``resumed.json``: attempts each chunk lost to pauses, given back on top of ``max_attempts``."""

    extra_attempts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "ResumeAllowance":
        return _from_dict(cls, json.loads(raw))
