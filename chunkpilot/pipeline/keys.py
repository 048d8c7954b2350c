"""Content keys of pipeline steps. Pure.

A step's key is a hash of everything that decides its answers: what the step says (template,
schema, options), its model's pinned commit, its engine and the engine settings that change
answers, its sampling defaults, the filters it reads through, and the key of what it reads — the
step before it, or for the first step the input's fingerprint (every input's pin and the chunk
plan: chunks keep their identity through a pipeline, so a plan with other chunks is other input).
Two steps with one key answer the same requests the same way: one may stand for the other.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from chunkpilot.spec import ChunkManifest, InputPin

KEY_VERSION = 1
# Engine options that change how an engine runs, never what it answers (echo's test knobs and
# the in-flight bound): left out of keys, so tracing a rerun does not make it a different step.
NOT_IN_KEY = frozenset({"trace", "max_in_flight", "delay", "batch", "straggle_every", "straggle_steps",
                        "start_seconds", "slow_worker"})
# Step options that say how a step is run (retries, budgets, machines, prices), not what it answers.
RUN_OPTIONS = frozenset({"max_attempts", "max_error_rate", "workers", "commit_seconds", "commit_records", "gpus",
                         "infra", "use_spot", "template", "envs", "secrets", "price_per_hour",
                         "on_demand_price_per_hour", "allow_unpinned", "engine_options"})


def digest(value: Any) -> str:
    """A short hex hash of ``value``'s canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def input_key(input_format: str, pins: Iterable[InputPin], manifests: Iterable[ChunkManifest],
              subset: dict[str, int] | None) -> str:
    """The fingerprint of a pipeline's input: each input's uri, size and etag, and the chunk plan."""
    return digest({
        "v": KEY_VERSION,
        "format": input_format,
        "inputs": [[p.uri, p.size, p.etag, p.units] for p in pins],
        "chunks": [[m.chunk, [[r.source, r.start, r.end] for r in m.ranges]] for m in manifests],
        "subset": subset,
    })


def step_key(definition: dict[str, Any], prompt: dict[str, Any], model: str, revision: str, engine: str,
             engine_options: dict[str, Any], sampling: dict[str, Any], task: str,
             filters: Iterable[str], upstream: str) -> str:
    """The content key of a model step (see the module docstring). ``definition``: the step's own
    keys (run options are left out); ``prompt``: the PromptSpec it resolved to (templates read from
    files included); ``upstream``: the key of the step before it, or the input's key."""
    return digest({
        "v": KEY_VERSION,
        "step": {k: v for k, v in sorted(definition.items()) if k not in RUN_OPTIONS},
        "prompt": prompt,
        "model": [model, revision],
        "engine": [engine, {k: v for k, v in sorted(engine_options.items()) if k not in NOT_IN_KEY}],
        "sampling": sampling,
        "task": task,
        "filters": list(filters),
        "upstream": upstream,
    })
