"""The pipeline documents in the store: the contract between submit, workers, watch and collect.

* ``<store>/<run>/pipeline.json`` — ``PipelineRun``: the steps in order, each model step with the
  run that answers it (``<run>-s<k>``, or an earlier pipeline's step run it reuses) and its key.
* A step run is an ordinary run; its ``run.json`` carries a ``StepLink`` (``RunSpec.pipeline``):
  which run it reads (None: the pipeline's input) and the filters it reads through.
* ``<store>/_cache/<key>.json`` — ``CacheEntry``: the step run that computed a content key,
  created put-if-absent; a later submit with a step of that key reuses that run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from chunkpilot.spec import dumps

PIPELINE_DOC = "pipeline.json"
CACHE = "_cache"
PIPELINE_VERSION = 1


def cache_key(key: str) -> str:
    """The store-root key of a content key's cache entry."""
    return f"{CACHE}/{key}.json"


@dataclass(frozen=True)
class FilterRef:
    name: str
    expression: str


@dataclass(frozen=True)
class StepLink:
    """``RunSpec.pipeline`` of a step run. ``upstream``: the run id (same store) whose answered
    records this step reads, None for the pipeline's input; ``upstream_step``: that run's step name;
    ``filters``: applied in order to every record read, before this step sees it."""

    parent: str
    step: str
    key: str
    upstream: str | None = None
    upstream_step: str | None = None
    filters: tuple[FilterRef, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["filters"] = [asdict(f) for f in self.filters]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StepLink":
        return cls(parent=data["parent"], step=data["step"], key=data["key"], upstream=data.get("upstream"),
                   upstream_step=data.get("upstream_step"),
                   filters=tuple(FilterRef(f["name"], f["expression"]) for f in data.get("filters", ())))


@dataclass(frozen=True)
class StepEntry:
    """One step of ``pipeline.json``. A model step has ``run`` (the run answering it), ``key`` and
    ``output_key``; ``reused``: ``run`` belongs to an earlier submit (its key was unchanged) and
    ``reason`` says why it is reused or rerun. A filter step has ``filter``."""

    name: str
    index: int
    run: str | None = None
    key: str | None = None
    output_key: str | None = None
    filter: str | None = None
    reused: bool = False
    reason: str = ""
    model: str | None = None
    model_revision: str | None = None


@dataclass(frozen=True)
class PipelineRun:
    run_id: str
    created_at: str
    inputs: tuple[str, ...]
    steps: tuple[StepEntry, ...]
    chunks: tuple[str, ...]
    version: int = PIPELINE_VERSION
    source: str = ""  # the pipeline file's text, as submitted

    @property
    def model_steps(self) -> list[StepEntry]:
        return [s for s in self.steps if s.filter is None]

    @property
    def trailing_filters(self) -> list[StepEntry]:
        out: list[StepEntry] = []
        for s in self.steps:
            out = [*out, s] if s.filter is not None else []
        return out

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "PipelineRun":
        data = json.loads(raw)
        steps = tuple(StepEntry(**s) for s in data["steps"])
        return cls(run_id=data["run_id"], created_at=data["created_at"], inputs=tuple(data["inputs"]), steps=steps,
                   chunks=tuple(data["chunks"]), version=data.get("version", PIPELINE_VERSION),
                   source=data.get("source", ""))


@dataclass(frozen=True)
class CacheEntry:
    key: str
    run: str
    pipeline: str
    step: str
    created_at: str = ""

    def to_json(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes) -> "CacheEntry":
        data = json.loads(raw)
        return cls(**{k: data[k] for k in ("key", "run", "pipeline", "step")}, created_at=data.get("created_at", ""))


# Error codes of lines a step writes for records that were not its to answer: never its errors
# (not in its error budget, fail-fast or error counts), counted apart.
DROPPED_CODE = "filtered_out"  # a filter step dropped the record
UPSTREAM_FAILED_CODE = "upstream_error"  # an earlier step could not answer it
PASSED_CODES = frozenset({DROPPED_CODE, UPSTREAM_FAILED_CODE})
