"""Plan a run and write it to the store: run.json and one manifest per chunk.

Every check that can fail — inputs, engine, backend, names, the store itself,
the task template — runs before the first byte is written.
"""

from __future__ import annotations

import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from chunkpilot import __version__, layout
from chunkpilot.engines import check_engine_options, loads_model
from chunkpilot.errors import ConfigError, InputError, NotFoundError, StoreError
from chunkpilot.formats import InputFormat, get_format
from chunkpilot.model import ModelPin
from chunkpilot.names import validate_run_name
from chunkpilot.prompts import PromptSpec, compile_template, load_text
from chunkpilot.requests import TASKS, RecordError, Request, custom_id_of, request_from_record
from chunkpilot.requests.structured import check_constraint
from chunkpilot.spec import DEFAULT_MAX_ERROR_RATE, ChunkManifest, ChunkSummary, InputPin, RunSpec
from chunkpilot.store import Store, open_store, split_object_uri
from chunkpilot.control.backends import check_backend_name
from chunkpilot.control.inputs import choose_format, resolve_inputs

# The submit options that override the SkyPilot task template (RunSpec.backend_options), with their flags.
SKY_OPTIONS = {"template": "--template", "gpus": "--gpus", "infra": "--infra", "use_spot": "--use-spot",
               "envs": "--env", "secrets": "--secret", "launch_batch": "--launch-batch", "pool": "--pool",
               "image": "--image"}


@dataclass(frozen=True)
class SubmitOptions:
    """What ``launcher submit`` was asked for; ``plan_run`` checks it and turns it into a RunSpec."""

    inputs: tuple[str, ...]
    chunks: int
    store_uri: str
    engine: str = "vllm"
    model: str | None = None
    backend: str = "local"
    use_spot: bool | None = None  # None: the task template decides
    max_tokens: int = 256
    temperature: float = 0.0
    run_name: str | None = None
    workers: int | None = None  # None: what this machine can run for local, one per chunk for sky
    max_attempts: int = 3
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE
    template: str | None = None
    commit_seconds: float = 5.0
    commit_records: int = 256
    engine_options: dict[str, Any] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)
    # How records become prompts, and where answers go (PromptSpec).
    prompt_template: str | None = None  # text or @file
    input_key: str | None = None
    system_prompt: str | None = None  # text or @file
    raw_prompt: bool = False
    output_key: str = "response"
    json_schema: str | None = None  # a file
    choices: tuple[str, ...] = ()
    regex: str | None = None
    allow_unpinned: bool = False  # a hub model whose commit cannot be looked up runs unpinned
    id_key: str | None = None  # the field holding each record's custom_id (None: "custom_id")
    task: str = "generate"  # or "embed"
    truncate: bool = False  # embed: inputs longer than the model takes are cut, not refused
    price_per_hour: float | None = None  # USD a job costs an hour (None: SkyPilot's catalog prices each)
    on_demand_price_per_hour: float | None = None  # ... and on demand, to compare with
    limit: int | None = None  # plan only the first K records
    sample: int | None = None  # plan only K records drawn at random with ``seed``
    seed: int = 0
    split: str | None = None  # hf://datasets inputs: the split to read (None: the only one)
    config: str | None = None  # ... and the config (None: the default one)

    @classmethod
    def from_cli(cls, inputs: tuple[str, ...], given: dict[str, Any]) -> "SubmitOptions":
        """From the command line's values, named as the fields are (the sky ones grouped into
        ``backend_options``: names only, never a secret's value)."""
        given = dict(given)
        sky = {name: given.pop(name) for name in SKY_OPTIONS if name in given}
        if given.get("backend") != "sky":
            used = [SKY_OPTIONS[n] for n, v in sky.items() if v not in (None, {}, (), [])]
            if used:
                raise ConfigError(f"{', '.join(used)} only apply to --backend sky")
            sky = {}
        else:
            sky["secrets"] = list(sky.get("secrets") or ())
            sky["envs"] = dict(sky.get("envs") or {})
        return cls(inputs=tuple(inputs), template=sky.get("template"), use_spot=sky.get("use_spot"),
                   backend_options=sky, **given)


@dataclass(frozen=True)
class Plan:
    spec: RunSpec
    manifests: list[ChunkManifest]
    probe_bytes: int  # bytes read to look at each input's start and align split points: nothing else is read
    skipped: list[str] = field(default_factory=list)  # files in input folders/prefixes that are not data
    warnings: list[str] = field(default_factory=list)  # inputs whose first record is not a JSON object
    hidden: list[str] = field(default_factory=list)  # hidden files there named like data, left out
    notes: list[str] = field(default_factory=list)  # what planning did that a person should know (staging)


def new_run_id(name: str | None, now: float | None = None) -> str:
    if name:
        return validate_run_name(name)
    stamp = datetime.fromtimestamp(now or time.time(), timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"run-{stamp}-{secrets.token_hex(2)}"


def pin_run_model(engine: str, model: str | None, backend: str = "local", allow_unpinned: bool = False,
                  task: str = "generate") -> ModelPin:
    """The run's model, pinned to exact weights (``chunkpilot.model.pin_model``). An engine that loads
    no model (echo) pins the one ``--model`` names, if any, to label its answers with it.

    On the sky backend the model must be one a cloud machine can load: a hub id or a
    folder in object storage, not the bundled model or a folder on this machine.
    """
    from chunkpilot.model import default_model, model_kind, pin_model

    if not loads_model(engine) and model is None:
        return ModelPin(engine, f"{engine}-1", {})
    chosen = model or default_model(task)
    if backend == "sky" and model_kind(chosen) in ("alias", "local"):
        what = (f"the bundled model {chosen} (for local runs)" if model_kind(chosen) == "alias"
                else f"{chosen} is a folder on this machine, which")
        raise ConfigError(
            f"--backend sky: {what} cannot be loaded on a cloud machine. Pass --model with a hub id "
            "(e.g. --model Qwen/Qwen2.5-7B-Instruct) or a model folder in object storage "
            "(--model s3://bucket/models/name/)"
        )
    return pin_model(chosen, allow_unpinned=allow_unpinned)


def checked_options(options: SubmitOptions) -> tuple[dict[str, Any], PromptSpec, ModelPin]:
    """Every check of the options that needs no input: (the engine options, the PromptSpec, the
    pinned model). ConfigError says what to fix. A pipeline checks each step's options so."""
    if options.chunks < 1:
        raise ConfigError("--chunks must be at least 1")
    if options.workers is not None and not 1 <= options.workers <= options.chunks:
        raise ConfigError(f"--workers {options.workers}: give 1 to --chunks ({options.chunks}); a worker takes "
                          "one chunk at a time, so more workers than chunks would sit idle")
    if options.max_attempts < 1:
        raise ConfigError("--max-attempts must be at least 1")
    if not 0 <= options.max_error_rate <= 1:
        raise ConfigError(f"--max-error-rate must be between 0 and 1, got {options.max_error_rate}")
    # The ranges click enforces on the command line, for callers of the Python API too.
    for name, value, low in (("max_tokens", options.max_tokens, 1), ("temperature", options.temperature, 0),
                             ("commit_seconds", options.commit_seconds, 0.1), ("commit_records", options.commit_records, 1),
                             ("limit", options.limit, 1), ("sample", options.sample, 1),
                             ("price_per_hour", options.price_per_hour, 0),
                             ("on_demand_price_per_hour", options.on_demand_price_per_hour, 0)):
        if value is not None and value < low:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    if options.on_demand_price_per_hour is not None and options.price_per_hour is None:
        raise ConfigError("--on-demand-price-per-hour is compared with what the run costs: give --price-per-hour too")
    engine_options = check_engine_options(options.engine, options.engine_options)
    check_backend_name(options.backend)
    prompt = prompt_spec(options)
    _check_echo_constraint(options.engine, prompt)
    pin = pin_run_model(options.engine, options.model, options.backend, options.allow_unpinned, options.task)
    return engine_options, prompt, pin


def plan_run(options: SubmitOptions, stage: bool = True) -> Plan:
    """Resolve, check and plan everything. Writes nothing but, when ``stage`` (not in a dry run),
    the staged pieces of compressed inputs too big for one chunk, under the new run's folder
    (``chunkpilot.formats.staging``): run.json and manifests come later, from ``write_run``."""
    engine_options, prompt, pin = checked_options(options)
    open_store(options.store_uri).check_writable()
    run_id = new_run_id(options.run_name)
    resolved = resolve_inputs(list(options.inputs), options.split, options.config)
    fmt = choose_format(resolved.pins)
    warnings, sniffed = _sniff(resolved.pins, fmt)
    planned = plan_inputs(fmt, resolved.pins, options.chunks, open_store(options.store_uri).child(run_id) if stage else None)
    pins, manifests = planned.pins or resolved.pins, planned.manifests
    subset = None
    if options.limit is not None or options.sample is not None:
        manifests, subset = plan_subset(fmt, pins, manifests, options)
    if planned.fields is not None:
        check_fields(prompt, planned.fields, explicit_id_key=options.id_key is not None)
    spec = run_spec(options, run_id, pin, prompt, engine_options, fmt, pins, manifests, subset)
    return Plan(spec, manifests, planned.bytes_read + sniffed, resolved.skipped, warnings, resolved.hidden,
                [*resolved.notes, *planned.notes])


def run_spec(options: SubmitOptions, run_id: str, pin: ModelPin, prompt: PromptSpec, engine_options: dict[str, Any],
             fmt: InputFormat, pins: list[InputPin], manifests: list[ChunkManifest],
             subset: dict[str, int] | None) -> RunSpec:
    """The RunSpec of checked options over planned inputs (``plan_run``; a pipeline's steps share one plan)."""
    from chunkpilot.control.backends.local import default_local_workers

    workers = options.workers
    if workers is None:
        workers = default_local_workers(options.engine, len(manifests)) if options.backend == "local" else len(manifests)
    workers = min(workers, len(manifests))  # planning may drop empty chunks
    if options.task == "embed":  # what an embedding request may be told by the run: how to cut long inputs
        sampling: dict[str, Any] = {"truncate_prompt_tokens": -1} if options.truncate else {}
    else:
        sampling = {"max_tokens": options.max_tokens, "temperature": options.temperature}
    return RunSpec(
        run_id=run_id,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        inputs=tuple(pins),
        chunks=tuple(ChunkSummary(m.chunk, m.size) for m in manifests),
        engine=options.engine,
        model=pin.model,
        model_revision=pin.revision,
        model_files=pin.files,
        sampling=sampling,
        backend=options.backend,
        use_spot=options.use_spot,
        max_attempts=options.max_attempts,
        workers=workers,
        chunkpilot_version=__version__,
        template=options.template,
        commit_seconds=options.commit_seconds,
        commit_records=options.commit_records,
        engine_options=engine_options,
        backend_options=dict(options.backend_options),
        max_error_rate=options.max_error_rate,
        price_per_hour=options.price_per_hour,
        on_demand_price_per_hour=options.on_demand_price_per_hour,
        input_format=fmt.name,
        unit=fmt.unit,
        prompt=prompt.to_dict(),
        task=options.task,
        subset=subset,
    )



def plan_subset(fmt: InputFormat, pins: list[InputPin], manifests: list[ChunkManifest], options: SubmitOptions
                ) -> tuple[list[ChunkManifest], dict[str, int]]:
    """The manifests of ``--limit`` / ``--sample`` (``chunkpilot.formats.subset``) and how run.json names them."""
    from chunkpilot.formats.subset import limit_manifests, sample_manifests

    if options.limit is not None and options.sample is not None:
        raise ConfigError("give --limit or --sample, not both")
    k = options.limit if options.limit is not None else options.sample
    if k is None or k < 1:
        raise ConfigError(f"--{'limit' if options.limit is not None else 'sample'} must be at least 1")
    records = (r for m in manifests for r in fmt.records(pins, m))
    if options.limit is not None:
        chosen, subset = limit_manifests(manifests, records, k), {"limit": k}
    else:
        chosen = sample_manifests(records, k, options.seed, options.chunks, fmt.unit)
        subset = {"sample": k, "seed": options.seed}
    if not chosen:
        raise InputError("the inputs hold no records: nothing to run")
    return chosen, subset


def plan_inputs(fmt: InputFormat, pins: list[InputPin], chunks: int, run_store: Store | None):
    """``fmt.plan``, with a folder for staged pieces where the format stages (JSON Lines); each
    submit stages under its own random batch name, so a failed or repeated submit overwrites nothing."""
    if fmt.name != "jsonl":
        return fmt.plan(pins, chunks)
    return fmt.plan(pins, chunks, stage=run_store, batch=secrets.token_hex(4))


def prompt_spec(options: SubmitOptions) -> PromptSpec:
    """The run's PromptSpec from the options; ConfigError for a template that does not parse, a
    schema that is not JSON Schema, or options that contradict each other."""
    template = load_text(options.prompt_template, "--prompt-template")
    system = load_text(options.system_prompt, "--system-prompt")
    if template is not None and options.input_key is not None:
        raise ConfigError("give --prompt-template or --input-key, not both (--input-key F is the template '{{ F }}')")
    if template is not None:
        compile_template(template)
        if not template.strip():
            raise ConfigError("--prompt-template is empty")
    if options.input_key is not None and not options.input_key:
        raise ConfigError("--input-key needs a field name")
    from_fields = template is not None or options.input_key is not None
    if system is not None and not from_fields:
        raise ConfigError("--system-prompt needs --prompt-template or --input-key (records with messages carry their own)")
    if options.raw_prompt and not from_fields:
        raise ConfigError("--raw-prompt needs --prompt-template or --input-key")
    if options.raw_prompt and system is not None:
        raise ConfigError("--system-prompt is a chat message: it does not apply with --raw-prompt")
    if not options.output_key or options.output_key == "custom_id":
        raise ConfigError(f"--output-key {options.output_key!r}: name a field for the answers (default 'response')")
    if options.task not in TASKS:
        raise ConfigError(f"--task {options.task!r}: use one of {', '.join(TASKS)}")
    if options.task == "embed":
        generation = [flag for flag, used in (("--raw-prompt", options.raw_prompt), ("--system-prompt", system is not None),
                                              ("--json-schema", options.json_schema), ("--choice", options.choices),
                                              ("--regex", options.regex)) if used]
        if generation:
            raise ConfigError(f"{', '.join(generation)} shape generated answers: they do not apply with --task embed")
    elif options.truncate:
        raise ConfigError("--truncate applies to --task embed (generation refuses a prompt longer than the model's context)")
    return PromptSpec(template=template, input_key=options.input_key, system=system, raw=options.raw_prompt,
                      output_key=options.output_key, constraint=_constraint(options), id_key=options.id_key or "custom_id",
                      task=options.task)


def _check_echo_constraint(engine: str, prompt: PromptSpec) -> None:
    """ConfigError for a --regex the echo engine cannot answer: it builds a matching string
    (``chunkpilot.regex_example``) and would otherwise fail every record."""
    from chunkpilot.regex_example import regex_example

    regex = (prompt.constraint or {}).get("regex")
    if engine == "echo" and regex is not None and regex_example(regex) is None:
        raise ConfigError(f"--regex {regex!r}: the echo engine cannot build an answer it matches (it follows literals, "
                          "classes, repeats, alternatives, groups and backreferences, not lookarounds or conditionals); "
                          "use another --regex or --engine vllm")


def check_fields(prompt: PromptSpec, fields: tuple[str, ...], explicit_id_key: bool) -> None:
    """ConfigError, before anything is written, for a field the prompt needs that the inputs' schema lacks."""
    needed = prompt.columns()
    if needed is None and not prompt.from_fields:
        wanted = ("input",) if prompt.task == "embed" else ("prompt", "messages")
        if not set(wanted) & set(fields):
            raise ConfigError(
                f"the inputs have no {' or '.join(repr(w) for w in wanted)} column (columns: {', '.join(fields)}): "
                "say how to make each record's text with --input-key COLUMN or --prompt-template"
            )
        return
    for name in sorted(needed or ()):
        if name == prompt.id_key and not explicit_id_key:
            continue  # the default custom_id column is optional: records without one get their position
        if name not in fields:
            what = "--id-key" if name == prompt.id_key else "--input-key" if name == prompt.input_key else "--prompt-template"
            raise ConfigError(f"{what} uses the field {name!r}, which the inputs do not have "
                              f"(columns: {', '.join(fields)})")


def _constraint(options: SubmitOptions) -> dict[str, Any] | None:
    given = {"--json-schema": options.json_schema, "--choice": options.choices, "--regex": options.regex}
    used = [name for name, value in given.items() if value]
    if len(used) > 1:
        raise ConfigError(f"give one of --json-schema, --choice, --regex, not {' and '.join(used)}")
    if options.json_schema:
        try:
            with open(options.json_schema, encoding="utf-8") as f:
                schema = json.load(f)
        except OSError as exc:
            raise ConfigError(f"--json-schema {options.json_schema}: cannot read it: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"--json-schema {options.json_schema}: not JSON: {exc}") from None
        return check_constraint({"json": schema}, f"--json-schema {options.json_schema}")
    if options.choices:
        return check_constraint({"choice": list(options.choices)}, "--choice")
    if options.regex:
        return check_constraint({"regex": options.regex}, "--regex")
    return None


def preview(spec: RunSpec, manifest: ChunkManifest, count: int = 3) -> list[Request | RecordError]:
    """The first ``count`` records of a chunk as the worker will send them (the dry run shows them)."""
    fmt, prompt = get_format(spec.input_format), PromptSpec.from_dict(spec.prompt)
    out: list[Request | RecordError] = []
    for record in fmt.records(spec.inputs, manifest, prompt.columns()):
        if record.blank:
            continue
        if record.error is not None:
            out.append(RecordError(record.position, custom_id_of(record.position, None), *record.error))
        else:
            out.append(request_from_record(record.position, record.fields, spec.sampling, prompt))
        if len(out) >= count:
            break
    return out


# Reads and manifest writes are independent small requests: on S3 each is a round trip, so
# they go out from a small pool instead of one after another.
STORE_CONCURRENCY = 16
SNIFF_BYTES = 1024


def _sniff(pins: list[InputPin], fmt: InputFormat) -> tuple[list[str], int]:
    """Warnings for inputs whose first bytes cannot start ``fmt``, and the bytes read to tell."""

    def head(pin: InputPin) -> bytes:
        store, key = split_object_uri(pin.uri)
        try:
            return store.get_range(key, 0, min(pin.size, SNIFF_BYTES))
        except StoreError:
            return b""  # unreadable now: planning's own reads report it

    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="plan-sniff") as pool:
        heads = list(pool.map(head, pins))
    warnings = [f"{pin.uri} does not look like {fmt.title}: it looks like {reason}; its lines will become error records"
                for pin, data in zip(pins, heads) if (reason := fmt.not_this_format(data))]
    return warnings, sum(len(h) for h in heads)


def write_run(plan: Plan, store_uri: str) -> str:
    """Write manifests, then run.json (put-if-absent: a run id is never reused). Returns the run's URI."""
    store = open_store(store_uri)
    store.check_writable()
    run_store = store.child(plan.spec.run_id)
    try:
        run_store.head(layout.RUN_SPEC)
        raise ConfigError(f"a run named {plan.spec.run_id!r} already exists in {store_uri}: choose another --run-name")
    except NotFoundError:
        pass
    with ThreadPoolExecutor(STORE_CONCURRENCY, thread_name_prefix="plan-write") as pool:
        list(pool.map(lambda m: run_store.put(layout.manifest(m.chunk), m.to_json()), plan.manifests))
    if not run_store.put_if_absent(layout.RUN_SPEC, plan.spec.to_json()):
        raise ConfigError(f"a run named {plan.spec.run_id!r} was just created by someone else: choose another --run-name")
    return run_store.uri


def check_launchable(plan: Plan, store_uri: str, launching: bool = True):
    """The backend's own checks of a planned run before anything is written: for sky, the task
    template, the wheel and the prices (``backends.sky.validate_run``, its SkyPlan returned); None
    for local, which needs none."""
    if plan.spec.backend != "sky":
        return None
    from chunkpilot.control.backends.sky import validate_run

    return validate_run(plan.spec, plan.manifests, store_uri, launching=launching)


def submit_run(options: SubmitOptions, on_plan: Callable[[Plan], None] | None = None, *, watch: bool = False):
    """Plan, check, write and start a run: what ``launcher submit`` and ``chunkpilot.submit`` both do.

    ``on_plan`` sees the plan before anything is written (the CLI prints its summary). Unless
    ``watch`` (the caller then drives the run to its end), one reconcile cycle launches what may
    start now. Returns the open run (``runs.OpenRun``). Every check raises a ChunkpilotError
    before the first byte is written.
    """
    from chunkpilot.control.runs import open_run

    plan = plan_run(options, stage=True)
    if on_plan is not None:
        on_plan(plan)
    check_launchable(plan, options.store_uri)
    write_run(plan, options.store_uri)
    run = open_run(options.store_uri, plan.spec.run_id)
    if not watch:
        start_run(run)
    return run


def start_run(run) -> None:
    """One reconcile cycle: launch what may start now, and return (``launcher submit`` without ``--watch``)."""
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.watch import WatchOptions, reconcile_once

    reconcile_once(run, make_backend(run.spec, run.store_uri), WatchOptions(), set())
