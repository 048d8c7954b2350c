"""A pipeline file, parsed and checked: steps in order, each a model step or a filter. Pure.

The file (YAML)::

    input: reviews.jsonl          # or a list: any input ``launcher submit`` takes
    steps:
      - name: summarize
        prompt_template: "Summarize: {{ body }}"
        output_key: summary
      - name: keep_short
        filter: "summary | length < 400"
      - name: vectors
        task: embed
        input_key: summary

A model step's keys are ``launcher submit``'s option names in snake_case (``STEP_KEYS``); the
command line's options are defaults every step may override. A filter step has a name and a
``filter`` expression (``chunkpilot.pipeline.filters``) and runs no model. A model step's answers
go to its ``output_key`` (default: its name). Every mistake is a ConfigError naming the step and,
for an unknown key, the closest valid one.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from chunkpilot.errors import ConfigError
from chunkpilot.pipeline.filters import compile_filter

# A model step's keys, as ``launcher submit`` names its options (``choice`` is ``--choice``).
STEP_KEYS = (
    "prompt_template", "input_key", "system_prompt", "raw_prompt", "output_key", "json_schema", "choice", "regex",
    "task", "truncate", "model", "engine", "engine_options", "max_tokens", "temperature", "allow_unpinned", "id_key",
    "max_attempts", "max_error_rate", "workers", "commit_seconds", "commit_records", "gpus", "infra", "use_spot",
    "template", "envs", "secrets", "price_per_hour", "on_demand_price_per_hour",
)
# Options that shape the whole pipeline's plan: given once, on the command line (or ``input:``).
RUN_KEYS = ("chunks", "store", "backend", "limit", "sample", "seed", "run_name", "input", "inputs")
FILE_KEYS = ("input", "steps")
_STEP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,38}$")


def closest(word: str, valid: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the valid name closest to ``word``, or the valid names."""
    valid = list(valid)
    match = difflib.get_close_matches(word, valid, n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else f"; valid: {', '.join(valid)}"


@dataclass(frozen=True)
class StepDef:
    """One step of the file. ``options``: a model step's keys as SubmitOptions fields (``choice``
    becomes ``choices``), exactly as written; ``filter``: a filter step's expression."""

    name: str
    index: int  # 1-based, in the file
    options: dict[str, Any] = field(default_factory=dict)
    filter: str | None = None

    @property
    def is_filter(self) -> bool:
        return self.filter is not None

    @property
    def output_key(self) -> str | None:
        """Where a model step's answers go (its name unless it says); None for a filter."""
        return None if self.is_filter else str(self.options.get("output_key") or self.name)

    def definition(self) -> dict[str, Any]:
        """What the step says, for its content key."""
        return {"name": self.name, "filter": self.filter} if self.is_filter else dict(self.options)


@dataclass(frozen=True)
class PipelineDef:
    inputs: tuple[str, ...]
    steps: tuple[StepDef, ...]

    @property
    def model_steps(self) -> list[StepDef]:
        return [s for s in self.steps if not s.is_filter]

    def filters_before(self, step: StepDef) -> list[StepDef]:
        """The filter steps between the model step before ``step`` and ``step``: applied as it reads."""
        out: list[StepDef] = []
        for s in self.steps:
            if s is step:
                return out
            out = [*out, s] if s.is_filter else []
        raise ValueError(f"{step.name} is not a step of this pipeline")

    @property
    def trailing_filters(self) -> list[StepDef]:
        """Filters after the last model step: applied when the final records are collected."""
        out: list[StepDef] = []
        for s in self.steps:
            out = [*out, s] if s.is_filter else []
        return out

    def step(self, name: str) -> StepDef:
        for s in self.steps:
            if s.name == name:
                return s
        raise ConfigError(f"no step {name!r} in this pipeline{closest(name, [s.name for s in self.steps])}")


def is_pipeline_file(data: Any) -> bool:
    return isinstance(data, dict) and "steps" in data


def parse_pipeline(data: Any, source: str = "the pipeline file") -> PipelineDef:
    """The checked pipeline of a loaded YAML document. ConfigError for unknown keys (with the
    closest valid one), duplicate step names, run-wide options inside a step, a filter that does
    not compile, clashing output keys, or a pipeline without a model step."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'input' and 'steps'")
    for key in data:
        if key not in FILE_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}{closest(str(key), FILE_KEYS)} "
                              "(run-wide options such as --chunks go on the command line)")
    raw_input = data.get("input")
    inputs = (raw_input,) if isinstance(raw_input, str) else tuple(raw_input or ())
    if not all(isinstance(i, str) and i for i in inputs):
        raise ConfigError(f"{source}: 'input' is a path or URI, or a list of them")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigError(f"{source}: 'steps' is a list of steps, each with a name")
    steps: list[StepDef] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_steps, start=1):
        step = _parse_step(raw, index)
        if step.name in seen:
            raise ConfigError(f"step {index} ({step.name}): the name {step.name!r} is used by an earlier step; "
                              "step names are unique")
        seen.add(step.name)
        steps.append(step)
    pipeline = PipelineDef(inputs, tuple(steps))
    if not pipeline.model_steps:
        raise ConfigError(f"{source}: every step is a filter; a pipeline needs a step that runs a model")
    outputs: dict[str, str] = {}
    for step in pipeline.model_steps:
        key = step.output_key or ""
        if key in outputs:
            raise ConfigError(f"step {step.name}: output_key {key!r} is already written by step {outputs[key]}; "
                              "give each step its own output_key")
        if key == "custom_id" or key.endswith("_error"):
            raise ConfigError(f"step {step.name}: output_key {key!r} is reserved; name another field")
        outputs[key] = step.name
    return pipeline


def _parse_step(raw: Any, index: int) -> StepDef:
    if not isinstance(raw, dict):
        raise ConfigError(f"step {index}: expected a mapping of keys (name, prompt_template, ...)")
    name = raw.get("name")
    label = f"step {index}" + (f" ({name})" if isinstance(name, str) else "")
    if not isinstance(name, str) or not _STEP_NAME.match(name):
        raise ConfigError(f"{label}: give it a name: 1-39 lowercase letters, digits, '_' and '-'")
    label = f"step {name}"
    if "filter" in raw:
        extra = [k for k in raw if k not in ("name", "filter")]
        if extra:
            raise ConfigError(f"{label}: a filter step takes only 'name' and 'filter', not {extra[0]!r}")
        try:
            compile_filter(raw["filter"])
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        return StepDef(name, index, filter=raw["filter"])
    options: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "name":
            continue
        if key in RUN_KEYS:
            raise ConfigError(f"{label}: {key!r} applies to the whole pipeline, not one step: "
                              f"give it on the command line (--{key.replace('_', '-')})")
        if key not in STEP_KEYS:
            raise ConfigError(f"{label}: unknown key {key!r}{closest(str(key), ('filter', *STEP_KEYS))}")
        options[key] = value
    if "choice" in options:
        choices = options.pop("choice")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{label}: 'choice' is a list of answers, e.g. [yes, no]")
        options["choices"] = tuple(str(c) for c in choices)
    if "engine_options" in options and not isinstance(options["engine_options"], dict):
        raise ConfigError(f"{label}: 'engine_options' is a mapping, e.g. {{max_model_len: 4096}}")
    return StepDef(name, index, options)


def check_fields(pipeline: PipelineDef, needs: dict[str, frozenset[str] | None], input_fields: frozenset[str] | None,
                 ignore: frozenset[str] = frozenset()) -> None:
    """ConfigError for the first step that reads a field neither the input (``input_fields``: the
    fields sampled records have; None: not knowable) nor an earlier model step provides.

    ``needs``: each model step's fields, by name (None: the whole record, nothing to check);
    filters' fields come from their expressions. ``ignore``: fields that may be absent (custom_id).
    """
    if input_fields is None:
        return
    known = set(input_fields)
    for step in pipeline.steps:
        wanted = compile_filter(step.filter).fields if step.is_filter else needs.get(step.name)
        for name in sorted((wanted or frozenset()) - ignore - {"record"}):
            if name not in known:
                raise ConfigError(f"step {step.name} reads the field {name!r}, which neither the input nor an earlier "
                                  f"step provides{closest(name, sorted(known))}")
        if not step.is_filter:
            known.update({step.output_key or "", f"{step.output_key}_error"})
        if step.output_key in input_fields:
            raise ConfigError(f"step {step.name}: output_key {step.output_key!r} is a field the input already has; "
                              "name another one")
