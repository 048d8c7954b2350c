"""The JSON documents in the store: the contract between launcher, worker and users' scripts.

Each is a small frozen dataclass with ``to_json``/``from_json``; tests pin the JSON. Where
each lives in the store is ``chunkpilot.layout``'s business.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from array import array
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from chunkpilot.errors import ConfigError

SPEC_VERSION = 2  # 2: part names carry error counts, _SUCCESS carries custom_id hashes
# Past this share of error records, ``watch`` pauses the run and exits non-zero (``--max-error-rate``).
DEFAULT_MAX_ERROR_RATE = 0.1

# A record's identity: (input index, where it is in that input). What the second number means
# is the input format's business (a byte offset for JSONL, a row for Parquet); everything else
# only orders, compares and stores positions.
Position = tuple[int, int]


def dumps(obj: Any) -> bytes:
    """Stable, readable JSON bytes for store documents."""
    return (json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class InputPin:
    """One input object as it was when the run was planned: its size in bytes and etag pin it;
    ``units`` is its size in the format's unit when that is not bytes (rows of a Parquet file)."""

    uri: str
    size: int
    etag: str
    units: int | None = None
    # A compressed input (chunkpilot.formats.compressed): its compression, its size ``units`` is the
    # decompressed size, and ``staged`` its pieces written at submit, ``(start, end, uri)`` each:
    # decompressed bytes [start, end) of this input, zstd-compressed in the object at uri.
    compression: str | None = None
    staged: tuple[tuple[int, int, str], ...] | None = None
    # CSV/TSV: ``(row start, its line number)`` at each planned cut, so a worker names a bad row's line.
    lines_at: tuple[tuple[int, int], ...] | None = None
    # The commit a hub input is pinned to (``hf://datasets/…@<sha>/…``): every output record names it.
    revision: str | None = None

    def __post_init__(self) -> None:  # JSON gives lists
        if self.staged is not None:
            object.__setattr__(self, "staged", tuple((int(a), int(b), str(u)) for a, b, u in self.staged))
        if self.lines_at is not None:
            object.__setattr__(self, "lines_at", tuple((int(a), int(b)) for a, b in self.lines_at))

    @property
    def length(self) -> int:
        """Its size in the format's unit."""
        return self.size if self.units is None else self.units


@dataclass(frozen=True)
class ChunkSummary:
    """A chunk as listed in run.json, so status needs no per-chunk read. ``size`` is in the
    run's format's unit (bytes for JSONL), written under that unit's name."""

    id: str
    size: int


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs to know about the run, fixed at submit time."""

    run_id: str
    created_at: str
    inputs: tuple[InputPin, ...]
    chunks: tuple[ChunkSummary, ...]
    engine: str
    model: str
    model_revision: str  # the pin: a hub commit sha, a folder's fingerprint name, "unpinned:<ref>"
    sampling: dict[str, Any]
    backend: str
    use_spot: bool | None  # None: the task template decides
    max_attempts: int
    # Worker jobs the run keeps going, each pulling chunks with its own engine (chunkpilot.claims).
    # 0 in runs of chunkpilot 0.1, which launched a job per chunk ("parallel" in their run.json).
    workers: int
    chunkpilot_version: str
    template: str | None = None
    commit_seconds: float = 5.0
    commit_records: int = 256
    engine_options: dict[str, Any] = field(default_factory=dict)
    # Backend settings every launch of this run reuses (template overrides, secret *names*; never values).
    backend_options: dict[str, Any] = field(default_factory=dict)
    # Share of error records past which watch pauses the run; 1 turns the budget and fail-fast off.
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    task: str = "generate"  # or "embed": every record becomes a vector
    input_format: str = "jsonl"  # every input is read by this format (chunkpilot.formats)
    unit: str = "bytes"  # what the input format measures progress in
    # How records become prompts and where answers go (chunkpilot.prompts.PromptSpec as a dict).
    prompt: dict[str, Any] = field(default_factory=dict)
    # A model folder's files at submit, by name (chunkpilot.fingerprint): a worker names what changed.
    model_files: dict[str, str] = field(default_factory=dict)
    # What one job costs an hour (USD), as the user said (--price-per-hour); None: SkyPilot's catalog
    # prices the resources each job got. The on-demand price is what the run is compared with.
    price_per_hour: float | None = None
    on_demand_price_per_hour: float | None = None
    # Only some records planned (chunkpilot.formats.subset): {"limit": K} or {"sample": K, "seed": S}.
    subset: dict[str, int] | None = None
    # A step of a multi-step pipeline (chunkpilot.pipeline.documents.StepLink as a dict): which run's
    # answered records it reads instead of the bare input, through which filters. None: a plain run.
    pipeline: dict[str, Any] | None = None
    version: int = SPEC_VERSION

    def to_json(self) -> bytes:
        data = asdict(self)
        data["chunks"] = [{"id": c.id, self.unit: c.size} for c in self.chunks]
        data["inputs"] = [{k: v for k, v in i.items() if v is not None} for i in data["inputs"]]
        if data["pipeline"] is None:  # a plain run's run.json is as it always was
            del data["pipeline"]
        return dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> "RunSpec":
        data = json.loads(raw)
        if data.get("version") != SPEC_VERSION:
            raise ConfigError(f"run.json has spec version {data.get('version')}, this chunkpilot reads {SPEC_VERSION}")
        unit = data.get("unit", "bytes")
        data.setdefault("workers", 0)
        data["inputs"] = tuple(_from_dict(InputPin, i) for i in data["inputs"])
        data["chunks"] = tuple(ChunkSummary(c["id"], c[unit]) for c in data["chunks"])
        return _from_dict(cls, data)

    @property
    def chunk_ids(self) -> list[str]:
        return [c.id for c in self.chunks]

    def with_(self, **changes: Any) -> "RunSpec":
        return replace(self, **changes)


@dataclass(frozen=True)
class SourceRange:
    """Positions ``[start, end)`` of input ``source`` (an index into RunSpec.inputs), in the
    format's unit: bytes of a JSONL file, rows of a Parquet file."""

    source: int
    start: int
    end: int


@dataclass(frozen=True)
class ChunkManifest:
    """The ranges one job processes, in input order; ``unit`` names what the ranges count.

    ``children``: the remainders split off this chunk (``chunkpilot.splits``), in the order they
    were split off; its ``ranges`` then end where the last one starts. A child is a chunk of the
    run only once its parent's manifest names it here (written after the child's own manifest).
    """

    chunk: str
    ranges: tuple[SourceRange, ...]
    unit: str = "bytes"
    children: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(r.end - r.start for r in self.ranges)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"chunk": self.chunk, "ranges": [asdict(r) for r in self.ranges], self.unit: self.size}
        if self.children:
            data["children"] = list(self.children)
        return dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> "ChunkManifest":
        data = json.loads(raw)
        unit = "rows" if "rows" in data else "bytes"
        return cls(chunk=data["chunk"], ranges=tuple(SourceRange(**r) for r in data["ranges"]), unit=unit,
                   children=tuple(data.get("children", ())))

    def cut(self, at: Position) -> tuple["ChunkManifest", tuple[SourceRange, ...]]:
        """(this manifest with its ranges ending at ``at``, the ranges from ``at`` on)."""
        front, back = [], []
        for r in self.ranges:
            if (r.source, r.end) <= at:
                front.append(r)
            elif (r.source, r.start) >= at:
                back.append(r)
            else:
                front.append(SourceRange(r.source, r.start, at[1]))
                back.append(SourceRange(r.source, at[1], r.end))
        return replace(self, ranges=tuple(front)), tuple(back)


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

    ``records``, ``skipped_blank`` and ``units`` (the chunk's size in its format's unit) cover
    the whole chunk; ``ok``, ``errors``, tokens and ``seconds`` cover the finishing attempt's
    own work, and ``resumed_records`` says how many records it found already answered (in
    parts or held). ``error_codes`` counts the whole chunk's error lines by code.
    ``custom_id_hashes`` holds ``custom_id_hash`` of every record's custom_id, in input order
    (``encode_hashes``): collect counts duplicate custom_ids from these without reading the
    output.
    """

    chunk: str
    attempt: int
    records: int
    skipped_blank: int
    ok: int
    errors: int
    resumed_records: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finished_at: str
    custom_id_hashes: str = ""
    error_codes: dict[str, int] = field(default_factory=dict)
    units: int = 0
    input_digest: str = ""
    # A pipeline step: records it wrote a line for without answering them, by code (``filtered_out``:
    # a filter dropped them; ``upstream_error``: an earlier step failed them). Never in ``errors``.
    passed: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        if not data["passed"]:  # a plain run's marker is as it always was
            del data["passed"]
        return dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> "SuccessMarker":
        data = json.loads(raw)
        if "units" not in data and "bytes" in data:  # written before formats other than JSONL
            data["units"] = data["bytes"]
        return _from_dict(cls, data)


@dataclass(frozen=True)
class Progress:
    """``progress/<chunk>.json``: the worker's heartbeat.

    ``state``: ``starting`` (loading the engine), ``running``, ``stopped`` (exit 75: resumable),
    ``failed`` (exit 2: ``reason`` says why; not retried) or ``done``. ``error_codes`` counts the
    chunk's error lines so far by code, earlier attempts' included. ``units_done`` of
    ``units_total`` is how far the chunk has come, in its format's unit.
    """

    chunk: str
    attempt: int
    state: str
    records_done: int = 0
    units_done: int = 0
    units_total: int = 0
    tokens_per_s: float = 0.0
    updated_at: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    # Units this attempt committed per second of its run: with ``units_total - units_done``, how long
    # the chunk still has to go (an idle worker asks the slowest to split, ``chunkpilot.splits``).
    units_per_s: float = 0.0

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
    Only the watcher holding the run's lease writes it afterwards, with what the backend
    says first-hand: when the job started and ended by its clock (``started_at``,
    ``ended_at``; our own observation where it has none), ``recoveries`` (preemptions the
    backend restarted the job from), the ``resources`` it runs on, and their hourly
    price (USD; ``price_source`` says where it came from).
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
    started_at: float | None = None
    recoveries: int = 0
    resources: dict[str, Any] = field(default_factory=dict)
    price_per_hour: float | None = None
    on_demand_per_hour: float | None = None
    price_source: str = ""

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "AttemptRecord":
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AttemptRecord":
        return _from_dict(cls, data)

    def with_(self, **changes: Any) -> "AttemptRecord":
        return replace(self, **changes)


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
    """``resumed.json``: attempts each chunk (or worker slot) lost to pauses, given back on top of
    ``max_attempts``; and ``max_attempts`` itself when ``launcher watch --max-attempts`` changed it
    (workers read this at every claim)."""

    extra_attempts: dict[str, int] = field(default_factory=dict)
    max_attempts: int | None = None

    def attempts_for(self, chunk: str, run_max_attempts: int) -> int:
        """How many attempts ``chunk`` may have: the run's ``max_attempts`` (or what ``watch
        --max-attempts`` set) plus those pauses gave back."""
        return (self.max_attempts or run_max_attempts) + self.extra_attempts.get(chunk, 0)

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "ResumeAllowance":
        return _from_dict(cls, json.loads(raw))


@dataclass(frozen=True)
class WorkerBeat:
    """``workers/<worker>/a<attempt>.json``: what one launch of a worker says about itself.

    Written by that worker job alone: when it starts, when its engine is ready, at its first
    answer, whenever it takes or finishes a chunk, and when it ends. ``state``: ``starting``,
    ``running`` (``chunk`` is the one it holds), ``idle`` (nothing left to claim), ``done``
    (exited: nothing left), ``stopped`` (exit 75) or ``failed`` (exit 2: ``reason``).
    ``engine_starts`` counts engines this launch started (1 once it answered anything: the
    engine is kept from chunk to chunk). Times are seconds since the epoch.
    """

    worker: str
    attempt: int
    state: str
    started_at: float
    updated_at: float
    engine_starts: int = 0
    ready_at: float | None = None
    first_answer_at: float | None = None
    chunk: str | None = None
    chunks_done: int = 0
    chunks_failed: int = 0
    chunks_lost: int = 0  # taken over by another worker while this one held them
    splits_given: int = 0  # remainders of its chunks it handed over when asked (chunkpilot.splits)
    splits_taken: int = 0  # split requests of its own that were answered
    max_in_flight: int = 0
    reason: str = ""
    devices: str = ""  # its GPUs (CUDA_VISIBLE_DEVICES: "0", "2,3"), when it was given some

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "WorkerBeat":
        return _from_dict(cls, json.loads(raw))

    def with_(self, **changes: Any) -> "WorkerBeat":
        return replace(self, **changes)
