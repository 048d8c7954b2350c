"""The run layout: every key of a run in the store, and how keys are read back. The one place
chunkpilot spells a key.

One run (``<store>/<run_id>/``)::

    run.json                        RunSpec (immutable)
    chunks/<chunk>.json             ChunkManifest
    out/<chunk>/<part>.jsonl        committed result parts, immutable; name = PartName
    out/<chunk>/_SUCCESS            SuccessMarker, written once (put-if-absent), last
    answers/<chunk>/<part>.arrow    Parquet runs: a part's answers in columns, written after the part by
                                    its writer; optional (chunkpilot.answer_columns)
    held/<chunk>/a<attempt>.jsonl   answers finished but not yet in a part (a slower record comes
                                    before them); rewritten every commit, deleted when the chunk is done
    progress/<chunk>.json           Progress heartbeat
    splits/<chunk>.json             SplitRequest: an idle worker asks the chunk's holder to hand over the rest
                                    of its range (chunkpilot.splits); deleted by the holder when it answers
    claims/<chunk>.json             Claim: which worker job answers the chunk, as which attempt, until when
                                    (chunkpilot.claims); taken and renewed with conditional writes
    jobs/<worker>/a<attempt>.json   AttemptRecord, one object per launch of a worker: the launcher's facts
                                    (launch, the backend's start/end, resources, price); only the watcher
                                    writes it. Runs of chunkpilot 0.1 launched a job per chunk: jobs/<chunk>/
    workers/<worker>/a<attempt>.json
                                    WorkerBeat: one worker job's heartbeat (engine starts, chunks done,
                                    the chunk it holds); only that job writes it
    history/<worker>/a<attempt>.<life>.jsonl
                                    one worker process's events (chunkpilot.history); only it writes it
    staged/<batch>/<source>-<piece>.jsonl.zst
                                    a compressed input too big for one chunk, cut at line starts at submit
                                    (chunkpilot.formats.staging); <batch> is random per submit
    lease.json                      the watch lease
    CANCELLED                       CancelMarker: the run is paused (``launcher cancel``, or its error
                                    budget ran out); ``launcher watch`` removes it and resumes
    resumed.json                    ResumeAllowance: attempts pauses cost each chunk, given back
    sky/task_template.yaml          the sky backend's copy of the run's task template
    logs/                           local backend only (a local store): each job's log, pid and exit files

Keys are relative to the run's folder; ``run_key`` and ``split_run_key`` convert to and from
keys relative to the store's root (for listings of a whole store).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chunkpilot.names import validate_chunk_id
from chunkpilot.spec import Position

RUN_SPEC = "run.json"
LEASE = "lease.json"
CANCELLED = "CANCELLED"
RESUMED = "resumed.json"
SKY_TEMPLATE = "sky/task_template.yaml"
LOGS = "logs"
CHUNKS = "chunks/"
CLAIMS = "claims/"
SPLITS = "splits/"
WORKERS = "workers/"
OUTPUTS = "out/"
HELD = "held/"
ANSWER_COLUMNS = "answers/"  # a Parquet run's answers in columns, beside its parts (chunkpilot.answer_columns)
PROGRESS = "progress/"
JOBS = "jobs/"
HISTORY = "history/"
POOL_LAUNCHES = "sky/launches/"  # one object per several-job pool launch: its SkyPilot name and members by rank
LEDGER = "jobs/_ledger.json.gz"  # the watcher's copy of every attempt record (chunkpilot.control.attempts)
DONE_NAME = "_SUCCESS"
STAGED = "staged/"


def staged_input(batch: str, source: int, piece: int) -> str:
    """Piece ``piece`` of input ``source``, staged at submit (a zstd-compressed slice of its lines)."""
    return f"{STAGED}{batch}/{source:05d}-{piece:05d}.jsonl.zst"


def manifest(chunk: str) -> str:
    return f"{CHUNKS}{chunk}.json"


def claim(chunk: str) -> str:
    return f"{CLAIMS}{chunk}.json"


def split_request(chunk: str) -> str:
    return f"{SPLITS}{chunk}.json"


def worker_beat(worker: str, attempt: int) -> str:
    return f"{WORKERS}{worker}/a{attempt}.json"


def outputs(chunk: str) -> str:
    """The folder of a chunk's parts and done marker (a listing prefix)."""
    return f"{OUTPUTS}{chunk}/"


def part(chunk: str, name: "PartName") -> str:
    return f"{OUTPUTS}{chunk}/{name.filename}"


def answer_columns(part_key: str) -> str:
    """The answer-columns file of the part at ``part_key`` (``out/<chunk>/<name>.jsonl``)."""
    return ANSWER_COLUMNS + part_key[len(OUTPUTS):].removesuffix(".jsonl") + ".arrow"


def done_marker(chunk: str) -> str:
    return f"{OUTPUTS}{chunk}/{DONE_NAME}"


def held_folder(chunk: str) -> str:
    return f"{HELD}{chunk}/"


def held(chunk: str, attempt: int) -> str:
    return f"{HELD}{chunk}/a{attempt}.jsonl"


def progress(chunk: str) -> str:
    return f"{PROGRESS}{chunk}.json"


def pool_launch(batch_name: str) -> str:
    """``sky/launches/<batch job name>.json``: which worker launch each rank of a ``num_jobs`` launch is."""
    return f"{POOL_LAUNCHES}{batch_name}.json"


def attempt_record(slot: str, attempt: int) -> str:
    """A launch's record; ``slot`` is the worker id (a chunk id in runs of chunkpilot 0.1)."""
    return f"{JOBS}{slot}/a{attempt}.json"


def history_folder(slot: str) -> str:
    return f"{HISTORY}{slot}/"


def history(slot: str, attempt: int, life: int) -> str:
    """One worker process's history of a launch (``life`` 0, then 1 after a restart in place...)."""
    return f"{HISTORY}{slot}/a{attempt}.{life}.jsonl"


# -- reading keys back ------------------------------------------------------------------

_SLOT = r"(w?[0-9]+(?:e[0-9]+)?)"  # a worker id (w3, or w3e1: engine 1 of w3's job), or a chunk id (chunkpilot 0.1)
_CHUNK = r"([0-9]+(?:[-_][0-9]+)*)"  # ``_NN``: a split's remainder (chunkpilot.names.child_chunk_id)
_ATTEMPT = re.compile(rf"^jobs/{_SLOT}/a([0-9]+)\.json$")
_PROGRESS = re.compile(rf"^progress/{_CHUNK}\.json$")
_CLAIM = re.compile(rf"^claims/{_CHUNK}\.json$")
_MANIFEST = re.compile(rf"^chunks/{_CHUNK}\.json$")
_SPLIT = re.compile(rf"^splits/{_CHUNK}\.json$")
_WORKER_BEAT = re.compile(rf"^workers/{_SLOT}/a([0-9]+)\.json$")


def parse_attempt_record(key: str) -> tuple[str, int] | None:
    """``jobs/0003/a2.json`` -> ("0003", 2)."""
    m = _ATTEMPT.match(key)
    return (m.group(1), int(m.group(2))) if m else None


def parse_claim(key: str) -> str | None:
    """``claims/0003.json`` -> "0003"."""
    m = _CLAIM.match(key)
    return m.group(1) if m else None


def parse_manifest(key: str) -> str | None:
    """``chunks/0003_99.json`` -> "0003_99"."""
    m = _MANIFEST.match(key)
    return m.group(1) if m else None


def parse_split_request(key: str) -> str | None:
    """``splits/0003.json`` -> "0003"."""
    m = _SPLIT.match(key)
    return m.group(1) if m else None


def parse_worker_beat(key: str) -> tuple[str, int] | None:
    """``workers/w3/a2.json`` -> ("w3", 2)."""
    m = _WORKER_BEAT.match(key)
    return (m.group(1), int(m.group(2))) if m else None


def parse_progress(key: str) -> str | None:
    """``progress/0003.json`` -> "0003"."""
    m = _PROGRESS.match(key)
    return m.group(1) if m else None


def parse_output(key: str) -> tuple[str, str]:
    """``out/<chunk>/<name>`` -> (chunk, name); empty strings where the key has fewer parts."""
    _, chunk, name = (key.split("/", 2) + ["", ""])[:3]
    return chunk, name


def split_manifest_uri(uri: str) -> tuple[str, str]:
    """``<store>/<run>/chunks/<chunk>.json`` -> (the run's URI, chunk id); ValueError otherwise."""
    head, sep, tail = uri.rpartition("/" + CHUNKS)
    if not sep or not tail.endswith(".json") or "/" in tail:
        raise ValueError(f"expected <store>/<run>/{CHUNKS}<chunk>.json, got {uri!r}")
    return head, validate_chunk_id(tail[: -len(".json")])


def run_key(run_id: str, key: str) -> str:
    """A run's key as a key of the whole store."""
    return f"{run_id}/{key}"


def split_run_key(key: str) -> tuple[str, str]:
    """A key of the whole store -> (run id, key within the run)."""
    run_id, _, rest = key.partition("/")
    return run_id, rest


# -- part names ---------------------------------------------------------------------------

_PART = re.compile(r"^a(\d+)-(\d+)_(\d+)\.(\d+)_(\d+)\.(\d+)_(\d+)_(\d+)(?:_(\d+)\.(\d+))?\.jsonl$")


@dataclass(frozen=True, order=True)
class PartName:
    """A committed part: every record with ``first <= position < end`` of its chunk, in order.

    ``a<attempt>-<seq>_<first>_<end>_<records>_<errors>_<prompt tokens>.<completion tokens>.jsonl``:
    the name carries the interval, the record and error-line counts and the tokens its
    answers used, so resume, status and collect learn what is committed, and how fast,
    from one listing, without reading parts. ``end`` is the position just past the part's
    last record. Parts from different attempts (or a zombie) may overlap; each is complete
    for its interval. Names without tokens (written before they were added) parse with zero
    tokens.
    """

    first: Position
    end: Position
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
