"""What a run will cost, before it starts: records, tokens, GPU-hours and dollars. Pure.

The model of the estimate (the dry run prints it, the README states it):

* **Records** = the run's input size (in its format's unit: bytes of JSON Lines, rows of Parquet)
  x the records per unit of a sample of records read from the planned chunks.
* **Prompt tokens** ~ the sampled prompts' characters / 4 (``CHARS_PER_TOKEN``: a rule of thumb
  for English text and common tokenizers; no tokenizer is loaded), scaled to every record.
* **Output tokens** <= each sampled record's ``max_tokens`` (its own, or the run's default),
  scaled: an upper bound — answers that stop early cost less. Embeddings generate none.
* **Engine-hours** = the tokens the rate counts / the throughput of one engine (output tokens per
  second; prompt tokens per second for embeddings), from ``--tokens-per-second`` or an earlier
  run of the same engine, model, task and GPUs in the store (its completion tokens over the
  seconds its chunks took: ``measured_rate``). Prompt processing is not added on top: it is in a
  measured rate as it was in that run, and left out of a given one.
* **Job-hours** = engine-hours / engines per job (GPUs per job / GPUs per engine);
  **GPU-hours** = job-hours x GPUs per job; **$** = job-hours x the hourly price of one job, spot
  and on demand (SkyPilot's catalog, or ``--price-per-hour``).
* **Not included**: cold starts (each worker launch's machine, setup and engine build: the report
  of a run shows them as their own line), preemptions and the tail.

No figure is made up: without a throughput the time and money lines say what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class TokenSample:
    """What a sample of the planned records holds."""

    records: int  # sampled records (error records included: they take input, not the engine)
    units: int  # input units the sampled records span
    prompt_chars: int  # characters of the sampled prompts (every message's text)
    output_tokens: int  # the sampled records' max_tokens, summed (0 for embeddings)
    errors: int  # sampled records that cannot be sent (they become error lines)


@dataclass(frozen=True)
class Throughput:
    """Tokens one engine makes a second (output tokens; prompt tokens for embeddings), and where from."""

    tokens_per_second: float
    source: str


@dataclass(frozen=True)
class JobShape:
    """What one worker job is: ``gpus`` per job (None: not known, e.g. a local run) and engines on it."""

    label: str  # "H100:8", "this machine"
    gpus: float | None
    engines: int
    workers: int


@dataclass(frozen=True)
class HourlyPrice:
    """One job's price an hour, spot and on demand (None: not known), and where they come from."""

    spot: float | None
    on_demand: float | None
    source: str


@dataclass(frozen=True)
class Estimate:
    records: int
    prompt_tokens: int
    output_tokens: int
    rated_tokens: int  # the tokens the throughput counts (output, or prompt for embeddings)
    throughput: Throughput | None
    engine_hours: float | None = None
    job_hours: float | None = None
    gpu_hours: float | None = None
    wall_hours: float | None = None  # job-hours spread over the run's workers
    spot_cost: float | None = None
    on_demand_cost: float | None = None


def prompt_chars(request: Any) -> int:
    """Characters of a request's input: its prompt, every message's text, or the texts to embed."""
    total = len(request.prompt or "")
    for message in request.messages or ():
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):  # content parts: count the text ones
            total += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    total += sum(len(t) for t in request.inputs or ())
    return total


def sample_tokens(items: Iterable[tuple[Any, int]], embed: bool) -> TokenSample:
    """A TokenSample from ``(Request or RecordError, units the record spans)`` pairs."""
    records = units = chars = output = errors = 0
    for request, span in items:
        records += 1
        units += max(0, span)
        if not hasattr(request, "kind"):  # a RecordError
            errors += 1
            continue
        chars += prompt_chars(request)
        if not embed:
            output += int(request.params.get("max_tokens") or 0)
    return TokenSample(records, units, chars, output, errors)


def measured_rate(markers: Iterable[tuple[int, int, float]], embed: bool) -> float | None:
    """Tokens per engine-second from done markers' ``(prompt_tokens, completion_tokens, seconds)``:
    the tokens the chunks' finishing attempts made over the seconds they took (None without any)."""
    tokens = seconds = 0.0
    for prompt, completion, took in markers:
        tokens += prompt if embed else completion
        seconds += max(0.0, took)
    return tokens / seconds if tokens > 0 and seconds > 0 else None


def estimate(sample: TokenSample, total_units: int, throughput: Throughput | None, shape: JobShape,
             price: HourlyPrice | None, embed: bool) -> Estimate:
    """The run's estimate (see the module docstring). ValueError for a sample without records."""
    if sample.records <= 0:
        raise ValueError("no sampled records to estimate from")
    scale = total_units / sample.units if sample.units > 0 else 1.0
    records = round(sample.records * scale)
    prompt_tokens = round(sample.prompt_chars / CHARS_PER_TOKEN * scale)
    output_tokens = round(sample.output_tokens * scale)
    rated = prompt_tokens if embed else output_tokens
    if throughput is None or throughput.tokens_per_second <= 0:
        return Estimate(records, prompt_tokens, output_tokens, rated, None)
    engine_hours = rated / throughput.tokens_per_second / 3600
    job_hours = engine_hours / max(1, shape.engines)
    gpu_hours = job_hours * shape.gpus if shape.gpus is not None else None
    wall_hours = job_hours / max(1, shape.workers)
    spot = job_hours * price.spot if price is not None and price.spot is not None else None
    on_demand = job_hours * price.on_demand if price is not None and price.on_demand is not None else None
    return Estimate(records, prompt_tokens, output_tokens, rated, throughput, engine_hours, job_hours, gpu_hours,
                    wall_hours, spot, on_demand)


MODEL_TEXT = ("output tokens = max_tokens per record (an upper bound); prompt tokens ~ characters / 4; "
              "engine-hours = the tokens the rate counts / tok/s of one engine; job-hours = engine-hours / engines per "
              "job; $ = job-hours x one job's hourly price. Cold starts, preemptions and the tail are not included")

MISSING_THROUGHPUT = ("no throughput figure: pass --tokens-per-second N (tokens one engine makes a second: output "
                      "tokens, or input tokens for --task embed), or finish a small run of the same engine, model, "
                      "task and --gpus in this store first (e.g. with --limit 2000) and its measured rate is used")


def _count(n: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f}"


def _hours(h: float) -> str:
    return f"{h:.3g}"


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 1 else f"${x:.2g}"


def estimate_lines(est: Estimate, sample: TokenSample, shape: JobShape, price: HourlyPrice | None,
                   unit: str, embed: bool) -> list[str]:
    """The dry run's estimate, a line per figure, then its model."""
    per = sample.units / sample.records if sample.records else 0.0
    errors = f", {sample.errors} of them error records" if sample.errors else ""
    out_text = "no output tokens (embeddings)" if embed else f"<= {_count(est.output_tokens)} output (max_tokens per record)"
    lines = [
        f"records      ~{est.records:,} (from {sample.records} sampled records, {per:.4g} {unit} each{errors})",
        f"tokens       ~{_count(est.prompt_tokens)} prompt (characters / {CHARS_PER_TOKEN:g}) · {out_text}",
    ]
    if est.throughput is None:
        lines.append(f"time, cost   not estimated: {MISSING_THROUGHPUT}")
        return lines + [f"model        {MODEL_TEXT}"]
    what = "input" if embed else "output"
    lines.append(f"throughput   {est.throughput.tokens_per_second:,.4g} {what} tok/s per engine ({est.throughput.source})")
    gpus = f" = {_hours(est.gpu_hours)} GPU-hours" if est.gpu_hours is not None else ""
    lines.append(f"time         {_hours(est.engine_hours)} engine-hours = {_hours(est.job_hours)} job-hours on "
                 f"{shape.label} ({shape.engines} engine(s) per job){gpus}; ~{_hours(est.wall_hours)} h wall with "
                 f"{shape.workers} worker(s)")
    if price is None or (price.spot is None and price.on_demand is None):
        why = price.source if price is not None else "no price"
        lines.append(f"cost         not estimated: {why}")
    else:
        costs = []
        if est.spot_cost is not None:
            costs.append(f"{_money(est.spot_cost)} spot (${price.spot:.4g}/h)")
        if est.on_demand_cost is not None:
            costs.append(f"{_money(est.on_demand_cost)} on demand (${price.on_demand:.4g}/h)")
        lines.append(f"cost         {' · '.join(costs)} · {price.source}")
    return lines + [f"model        {MODEL_TEXT}"]
