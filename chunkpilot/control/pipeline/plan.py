"""Plan a pipeline: parse and check the file, plan the input once, make each model step a run,
and decide per step — by its content key — whether an earlier run already answered it.

Nothing is written until every step has passed every check (``write_pipeline`` writes). Step
runs are named ``<run>-s<k>`` (k: the model step's place); the pipeline's own folder holds
``pipeline.json``. A step whose key has a cache entry pointing at a run that did not fail is
reused: the new pipeline's next step reads that run's answers.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

from chunkpilot import layout
from chunkpilot.errors import ConfigError, NotFoundError, RunNotFoundError
from chunkpilot.formats import get_format
from chunkpilot.names import validate_run_name
from chunkpilot.pipeline import keys
from chunkpilot.pipeline.documents import (
    PIPELINE_DOC,
    CacheEntry,
    FilterRef,
    PipelineRun,
    StepEntry,
    StepLink,
    cache_key,
)
from chunkpilot.pipeline.spec import PipelineDef, StepDef, check_fields, is_pipeline_file, parse_pipeline
from chunkpilot.spec import RunSpec
from chunkpilot.store import Store, open_store
from chunkpilot.control.submit import SKY_OPTIONS, Plan, SubmitOptions, checked_options, new_run_id, plan_run, run_spec, write_run

SAMPLE_RECORDS = 50  # records read at submit to learn the input's fields (unknown-field check)


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. ``choice: [yes, no]`` stays two strings, not two booleans."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:bool"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_pipeline_file(path: str) -> tuple[dict[str, Any], str] | None:
    """(the YAML document, its text) if ``path`` is a pipeline file (.yaml/.yml with ``steps:``); else None."""
    if not path.lower().endswith((".yaml", ".yml")) or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return (data, text) if is_pipeline_file(data) else None


@dataclass(frozen=True)
class StepPlan:
    """A model step: the run answering it (``spec`` to write when it runs anew; None when reused)."""

    step: StepDef
    run_id: str
    key: str
    reused: bool
    reason: str
    spec: RunSpec
    filters: tuple[FilterRef, ...] = ()


@dataclass(frozen=True)
class PipelinePlan:
    run_id: str
    pipeline: PipelineDef
    base: Plan  # the input's plan (the first step's), shared by every step
    steps: list[StepPlan]
    doc: PipelineRun
    notes: list[str] = field(default_factory=list)


def step_run_id(run_id: str, index: int) -> str:
    """``<run>-s<k>``: the run answering the pipeline's k-th model step."""
    try:
        return validate_run_name(f"{run_id}-s{index}")
    except ConfigError:
        raise ConfigError(f"run name {run_id!r} is too long for a pipeline: its steps are named {run_id}-s1, "
                          f"{run_id}-s2...; use at most {40 - 2 - len(str(index))} characters") from None


def step_options(base: SubmitOptions, step: StepDef, folder: str) -> SubmitOptions:
    """The step's SubmitOptions: the command line's as defaults, the step's own keys winning; files
    the step names (``@template``, ``json_schema``) relative to the pipeline file's folder."""
    own = dict(step.options)
    sky = {k: own.pop(k) for k in list(own) if k in SKY_OPTIONS}
    if "engine_options" in own:
        own["engine_options"] = {**base.engine_options, **own["engine_options"]}
    for name in ("prompt_template", "system_prompt"):
        if isinstance(own.get(name), str) and own[name].startswith("@"):
            own[name] = "@" + os.path.join(folder, own[name][1:])
    if isinstance(own.get("json_schema"), str):
        own["json_schema"] = os.path.join(folder, own["json_schema"])
    own["output_key"] = step.output_key
    options = dataclasses.replace(base, **own)
    if sky:
        if base.backend != "sky":
            raise ConfigError(f"step {step.name}: {', '.join(sorted(sky))} only apply to --backend sky")
        options = dataclasses.replace(options, backend_options={**base.backend_options, **sky})
    return options


def plan_pipeline(path: str, base: SubmitOptions, from_step: str | None = None, stage: bool = True) -> PipelinePlan:
    """Parse, check and plan the pipeline file at ``path`` with ``base`` (the command line's options)
    as every step's defaults. ConfigError, naming the step, for anything wrong; writes nothing but
    a compressed input's staged pieces when ``stage``."""
    loaded = load_pipeline_file(path)
    if loaded is None:
        raise ConfigError(f"{path} is not a pipeline file (a .yaml with 'steps:')")
    data, text = loaded
    pipeline = parse_pipeline(data, path)
    folder = os.path.dirname(os.path.abspath(path))
    inputs = tuple(i if "://" in i or os.path.isabs(i) else os.path.join(folder, i) for i in pipeline.inputs)
    if not inputs:
        raise ConfigError(f"{path}: name the pipeline's input ('input: reviews.jsonl')")
    if from_step is not None:
        pipeline.step(from_step)  # ConfigError naming the closest step
    run_id = new_run_id(base.run_name)
    validate_run_name(run_id)
    step_run_id(run_id, len(pipeline.model_steps))
    root = open_store(base.store_uri)
    models = pipeline.model_steps
    for step in models:  # every step's own checks before the input is planned
        try:
            checked_options(step_options(dataclasses.replace(base, inputs=inputs), step, folder))
        except ConfigError as exc:
            raise ConfigError(f"step {step.name}: {exc}") from None
    first = step_options(dataclasses.replace(base, inputs=inputs, run_name=run_id), models[0], folder)
    try:
        base_plan = plan_run(first, stage=stage)
    except ConfigError as exc:
        raise ConfigError(f"step {models[0].name}: {exc}") from None
    fmt = get_format(base_plan.spec.input_format)
    _check_fields(pipeline, models, base_plan, folder, base, inputs)
    upstream_key = keys.input_key(fmt.name, base_plan.spec.inputs, base_plan.manifests, base_plan.spec.subset)
    steps: list[StepPlan] = []
    forced = from_step is not None and pipeline.step(from_step)
    rerun: str | None = None  # the step before, when it reruns
    for index, step in enumerate(models, start=1):
        options = step_options(dataclasses.replace(base, inputs=inputs), step, folder)
        engine_options, prompt, pin = checked_options(options)
        spec = run_spec(options, step_run_id(run_id, index), pin, prompt, engine_options, fmt,
                        list(base_plan.spec.inputs), base_plan.manifests, base_plan.spec.subset)
        filters = tuple(FilterRef(f.name, f.filter or "") for f in pipeline.filters_before(step))
        key = keys.step_key(step.definition(), prompt.to_dict(), spec.model, spec.model_revision, spec.engine,
                            spec.engine_options, spec.sampling, spec.task, [f"{f.name}:{f.expression}" for f in filters],
                            upstream_key)
        upstream = steps[-1] if steps else None
        link = StepLink(run_id, step.name, key, upstream.run_id if upstream else None,
                        upstream.step.name if upstream else None, filters)
        spec = spec.with_(pipeline=link.to_dict())
        reused_run, reason = None, ""
        if forced and step.index >= forced.index:
            reason = f"--from-step {forced.name}"
        elif rerun is not None:
            reason = f"the step before it ({rerun}) reruns"
        else:
            reused_run, reason = _cached(root, key)
        rerun = None if reused_run is not None else step.name
        if reused_run is None and spec.backend == "sky":  # its task rendered and checked by SkyPilot, as submit does
            from chunkpilot.control.backends.sky import validate_run

            try:
                validate_run(spec, base_plan.manifests, base.store_uri, launching=stage)
            except ConfigError as exc:
                raise ConfigError(f"step {step.name}: {exc}") from None
        steps.append(StepPlan(step, reused_run or spec.run_id, key, reused_run is not None, reason, spec, filters))
        upstream_key = key
    doc = PipelineRun(
        run_id=run_id,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        inputs=inputs,
        steps=tuple(_entry(s, steps) for s in pipeline.steps),
        chunks=tuple(m.chunk for m in base_plan.manifests),
        source=text,
    )
    return PipelinePlan(run_id, pipeline, base_plan, steps, doc)


def _entry(step: StepDef, planned: list[StepPlan]) -> StepEntry:
    if step.is_filter:
        return StepEntry(step.name, step.index, filter=step.filter)
    p = next(p for p in planned if p.step is step)
    return StepEntry(step.name, step.index, run=p.run_id, key=p.key, output_key=step.output_key, reused=p.reused,
                     reason=p.reason, model=p.spec.model, model_revision=p.spec.model_revision)


def _cached(root: Store, key: str) -> tuple[str | None, str]:
    """(the run that answered ``key`` before, why it is reused) or (None, why the step reruns)."""
    from chunkpilot.control.runs import open_run, run_entry

    try:
        entry = CacheEntry.from_json(root.get(cache_key(key)))
        run = open_run(root.uri, entry.run)
    except NotFoundError:
        return None, "no earlier run has its key (its definition, model, engine settings or input changed, or it never ran)"
    except (RunNotFoundError, ConfigError):
        return None, "its cache entry names a run that is gone"
    state = run_entry(run).state
    if state == "failed":
        return None, f"its earlier run {entry.run} failed"
    return entry.run, f"unchanged: answered by {entry.run} (step {entry.step} of {entry.pipeline}; {state})"


def _check_fields(pipeline: PipelineDef, models: list[StepDef], base_plan: Plan, folder: str, base: SubmitOptions,
                  inputs: tuple[str, ...]) -> None:
    """Refuse a step reading a field neither the input (its schema, or the fields of its first
    records) nor an earlier step provides."""
    from chunkpilot.prompts import PromptSpec

    needs: dict[str, frozenset[str] | None] = {}
    for step in models:
        prompt = PromptSpec.from_dict(base_plan.spec.prompt) if step is models[0] else \
            checked_options(step_options(dataclasses.replace(base, inputs=inputs), step, folder))[1]
        columns = prompt.columns()
        needs[step.name] = None if columns is None else frozenset(columns)
    check_fields(pipeline, needs, _input_fields(base_plan), ignore=frozenset({"custom_id", base.id_key or "custom_id"}))


def _input_fields(plan: Plan) -> frozenset[str] | None:
    """The fields any of the input's first records has (None: none could be read)."""
    fmt = get_format(plan.spec.input_format)
    seen: set[str] = set()
    count = 0
    for manifest in plan.manifests[:1]:
        for record in fmt.records(plan.spec.inputs, manifest):
            if record.fields is not None:
                seen.update(record.fields)
                count += 1
            if count >= SAMPLE_RECORDS:
                break
    return frozenset(seen) if count else None


def write_pipeline(plan: PipelinePlan, store_uri: str) -> None:
    """Write each new step run, its cache entry, then ``pipeline.json`` (put-if-absent, last)."""
    root = open_store(store_uri)
    parent = root.child(plan.run_id)
    for name in (PIPELINE_DOC, layout.RUN_SPEC):
        try:
            parent.head(name)
            raise ConfigError(f"a run named {plan.run_id!r} already exists in {store_uri}: choose another --run-name")
        except NotFoundError:
            pass
    for step in plan.steps:
        if step.reused:
            continue
        write_run(dataclasses.replace(plan.base, spec=step.spec), store_uri)
        entry = CacheEntry(step.key, step.run_id, plan.run_id, step.step.name, plan.doc.created_at)
        root.put(cache_key(step.key), entry.to_json())  # the newest run of a key is the one reused
    if not parent.put_if_absent(PIPELINE_DOC, plan.doc.to_json()):
        raise ConfigError(f"a pipeline named {plan.run_id!r} was just created by someone else: choose another --run-name")


def open_pipeline(store_uri: str, run_id: str) -> PipelineRun | None:
    """The pipeline ``run_id`` in the store, or None when it is no pipeline."""
    try:
        return PipelineRun.from_json(open_store(store_uri).child(validate_run_name(run_id)).get(PIPELINE_DOC))
    except NotFoundError:
        return None
