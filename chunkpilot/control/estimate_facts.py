"""What the dry run's cost estimate reads: a sample of the planned records, and the rate an
earlier run of the same setup measured. The arithmetic is ``chunkpilot.control.estimate`` (pure).

* ``sample_requests`` reads the first records of up to ``SAMPLE_CHUNKS`` chunks spread over the
  plan (at most ``SAMPLE_RECORDS`` in all), as the worker would send them.
* ``find_rate`` lists the store once, reads the run.json of each run, picks the newest with the
  same ``setup_key`` (engine, model, task, backend, ``--gpus``, GPUs per engine) that has done
  chunks, and reads at most ``RATE_MARKERS`` of its ``_SUCCESS`` markers.
"""

from __future__ import annotations

import logging
from typing import Any

from chunkpilot import layout
from chunkpilot.errors import ChunkpilotError
from chunkpilot.fleet import gpus_per_engine
from chunkpilot.formats import get_format
from chunkpilot.prompts import PromptSpec
from chunkpilot.requests import RecordError, custom_id_of, request_from_record
from chunkpilot.spec import ChunkManifest, RunSpec, SuccessMarker
from chunkpilot.store import open_store
from chunkpilot.control.estimate import (HourlyPrice, JobShape, Throughput, estimate, estimate_lines, measured_rate,
                               sample_tokens)

log = logging.getLogger("chunkpilot.estimate")

SAMPLE_CHUNKS = 16
SAMPLE_RECORDS = 512
RATE_MARKERS = 64


def sample_requests(spec: RunSpec, manifests: list[ChunkManifest]) -> list[tuple[Any, int]]:
    """``(Request or RecordError, units it spans)`` for the first records of chunks spread over the plan."""
    fmt, prompt = get_format(spec.input_format), PromptSpec.from_dict(spec.prompt)
    step = max(1, len(manifests) // SAMPLE_CHUNKS)
    chosen = manifests[::step][:SAMPLE_CHUNKS]
    per_chunk = max(1, SAMPLE_RECORDS // max(1, len(chosen)))
    out: list[tuple[Any, int]] = []
    for manifest in chosen:
        taken = 0
        records = fmt.records(spec.inputs, manifest, prompt.columns())
        try:
            for record in records:
                span = record.end[1] - record.position[1] if record.end[0] == record.position[0] else 0
                if record.blank:
                    continue
                if record.error is not None:
                    out.append((RecordError(record.position, custom_id_of(record.position, None), *record.error), span))
                else:
                    out.append((request_from_record(record.position, record.fields, spec.sampling, prompt), span))
                taken += 1
                if taken >= per_chunk:
                    break
        finally:
            getattr(records, "close", lambda: None)()
    return out


def setup_key(spec: RunSpec) -> tuple:
    """What must match for one run's measured rate to stand for another's."""
    return (spec.engine, spec.model, spec.task, spec.backend, (spec.backend_options or {}).get("gpus"),
            gpus_per_engine(spec.engine_options))


def find_rate(store_uri: str, spec: RunSpec) -> Throughput | None:
    """The per-engine rate of the newest earlier run in the store with the same setup, or None."""
    store = open_store(store_uri)
    specs: list[str] = []
    done: dict[str, list[str]] = {}
    try:
        for key in store.keys(""):
            run_id, run_key = layout.split_run_key(key)
            if run_key == layout.RUN_SPEC:
                specs.append(run_id)
            elif run_key.startswith(layout.OUTPUTS) and layout.parse_output(run_key)[1] == layout.DONE_NAME:
                done.setdefault(run_id, []).append(run_key)
    except (ChunkpilotError, ValueError) as exc:
        log.warning("could not list %s for an earlier run's rate: %s", store_uri, exc)
        return None
    wanted = setup_key(spec)
    candidates = []
    for run_id in specs:
        if run_id == spec.run_id or not done.get(run_id):
            continue
        try:
            other = RunSpec.from_json(store.get(layout.run_key(run_id, layout.RUN_SPEC)))
        except (ChunkpilotError, ValueError, KeyError, TypeError):
            continue
        if setup_key(other) == wanted:
            candidates.append(other)
    for other in sorted(candidates, key=lambda s: s.created_at, reverse=True):
        figures = []
        for key in sorted(done[other.run_id])[:RATE_MARKERS]:
            try:
                m = SuccessMarker.from_json(store.get(layout.run_key(other.run_id, key)))
            except (ChunkpilotError, ValueError, KeyError, TypeError):
                continue
            figures.append((m.prompt_tokens, m.completion_tokens, m.seconds))
        rate = measured_rate(figures, spec.task == "embed")
        if rate is not None:
            return Throughput(rate, f"measured in run {other.run_id}: {len(figures)} chunk(s), same engine, model, "
                                    "task and GPUs")
    return None


def job_shape(spec: RunSpec, accelerators: dict[str, float] | None) -> JobShape:
    """One job's GPUs and engines: the sky task's first accelerator choice, or this machine for local runs."""
    if spec.backend != "sky" or not accelerators:
        return JobShape("this machine" if spec.backend != "sky" else "no GPU", None, 1, spec.workers)
    name, count = next(iter(accelerators.items()))
    engines = max(1, int(count // gpus_per_engine(spec.engine_options)))
    return JobShape(f"{name}:{count:g}", count, engines, spec.workers)


def estimate_text(spec: RunSpec, manifests: list[ChunkManifest], store_uri: str, tokens_per_second: float | None,
                  accelerators: dict[str, float] | None = None, price: HourlyPrice | None = None) -> str:
    """The dry run's cost estimate: ``tokens_per_second`` if given, else an earlier run's measured rate;
    ``price`` one job's (sky: ``chunkpilot.control.backends.sky.estimate_price``), else the run's --price-per-hour."""
    embed = spec.task == "embed"
    sample = sample_tokens(sample_requests(spec, manifests), embed)
    header = "cost estimate (a model, not a quote):"
    if sample.records == 0:
        return f"{header}\n  not estimated: the sampled chunks hold no records"
    throughput = (Throughput(tokens_per_second, "--tokens-per-second") if tokens_per_second is not None
                  else find_rate(store_uri, spec))
    if price is None and spec.price_per_hour is not None:  # a local run: priced only by the user
        price = HourlyPrice(None, spec.price_per_hour, "--price-per-hour")
    elif price is None:
        price = HourlyPrice(None, None, "no price: pass --price-per-hour")
    shape = job_shape(spec, accelerators)
    est = estimate(sample, sum(m.size for m in manifests), throughput, shape, price, embed)
    lines = estimate_lines(est, sample, shape, price, spec.unit, embed)
    return "\n".join([header, *(f"  {line}" for line in lines)])
