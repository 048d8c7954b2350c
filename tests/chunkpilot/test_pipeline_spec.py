"""The pipeline file's parser, the filter language and step keys: pure, no store."""

from __future__ import annotations

import pytest

from chunkpilot.errors import ConfigError
from chunkpilot.pipeline import keys
from chunkpilot.pipeline.filters import FilterProblem, compile_filter
from chunkpilot.pipeline.spec import check_fields, parse_pipeline

STEPS = [
    {"name": "summarize", "prompt_template": "S: {{ body }}", "output_key": "summary"},
    {"name": "judge", "prompt_template": "{{ summary }}?", "choice": ["yes", "no"], "output_key": "faithful"},
    {"name": "keep", "filter": "faithful == 'yes'"},
    {"name": "vectors", "task": "embed", "input_key": "summary"},
]


def test_parse_orders_steps_and_attaches_filters_to_the_next_model_step():
    p = parse_pipeline({"input": "in.jsonl", "steps": STEPS})
    assert [s.name for s in p.model_steps] == ["summarize", "judge", "vectors"]
    assert [f.name for f in p.filters_before(p.step("vectors"))] == ["keep"]
    assert p.filters_before(p.step("judge")) == []
    assert p.step("judge").options["choices"] == ("yes", "no")
    assert p.step("vectors").output_key == "vectors"  # default: the step's name
    assert p.trailing_filters == []


@pytest.mark.parametrize("steps, message", [
    ([{"name": "a", "prompt_templat": "x"}], "step a: unknown key 'prompt_templat'; did you mean 'prompt_template'?"),
    ([{"name": "a", "input_key": "x"}, {"name": "a", "input_key": "y", "output_key": "z"}], "used by an earlier step"),
    ([{"name": "a", "input_key": "x"}, {"name": "f", "filter": "x.upper"}], "step f: filter 'x.upper': attribute access"),
    ([{"name": "a", "input_key": "x"}, {"name": "f", "filter": "x ==="}], "step f: filter 'x ===' does not parse"),
    ([{"name": "a", "input_key": "x"}, {"name": "f", "filter": "len(x) > 1"}], "calls are not allowed"),
    ([{"name": "a", "input_key": "x", "chunks": 3}], "step a: 'chunks' applies to the whole pipeline"),
    ([{"name": "f", "filter": "x"}], "needs a step that runs a model"),
    ([{"name": "a", "input_key": "x", "output_key": "o"}, {"name": "b", "input_key": "x", "output_key": "o"}],
     "step b: output_key 'o' is already written by step a"),
    ([{"name": "Bad Name", "input_key": "x"}], "give it a name"),
])
def test_bad_files_are_refused_naming_the_step(steps, message):
    with pytest.raises(ConfigError, match=None) as exc:
        parse_pipeline({"input": "in.jsonl", "steps": steps})
    assert message in str(exc.value)


def test_unknown_top_level_key_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        parse_pipeline({"input": "x", "step": []})


def test_filters_evaluate_safely_and_refuse_what_the_language_leaves_out():
    f = compile_filter("score >= 3 and label in ['a', 'b'] and (text | length) < 10")
    assert f.fields == {"score", "label", "text"}
    assert f.keep({"score": 3, "label": "a", "text": "short"})
    assert not f.keep({"score": 2, "label": "a", "text": "short"})
    with pytest.raises(FilterProblem):
        compile_filter("score > 1").keep({"score": "x"})  # str > int: a type error, reported
    for bad in ("x.__class__", "x['a'].b", "cycler()", "x | attr('y')", "range(10) | length"):
        with pytest.raises(ConfigError):
            compile_filter(bad)


def test_unknown_fields_are_refused_with_the_step_named():
    p = parse_pipeline({"input": "x", "steps": STEPS})
    needs = {"summarize": frozenset({"body"}), "judge": frozenset({"summary"}), "vectors": frozenset({"summary"})}
    check_fields(p, needs, frozenset({"body", "id"}))  # every field is provided
    with pytest.raises(ConfigError, match="step summarize reads the field 'bdy'.*did you mean 'body'"):
        check_fields(p, {**needs, "summarize": frozenset({"bdy"})}, frozenset({"body", "id"}))
    with pytest.raises(ConfigError, match="step judge reads the field 'verdict'"):
        check_fields(p, {**needs, "judge": frozenset({"verdict"})}, frozenset({"body"}))
    check_fields(p, {**needs, "judge": frozenset({"verdict"})}, None)  # not knowable: not refused


def test_step_keys_change_with_what_changes_answers_only():
    base = dict(definition={"prompt_template": "x"}, prompt={"template": "x"}, model="m", revision="r1", engine="echo",
                engine_options={}, sampling={"max_tokens": 8}, task="generate", filters=[], upstream="in")
    key = keys.step_key(**base)
    assert keys.step_key(**{**base, "engine_options": {"trace": "/tmp/t"}}) == key
    assert keys.step_key(**{**base, "definition": {"prompt_template": "x", "max_attempts": 9}}) == key
    for change in ({"revision": "r2"}, {"upstream": "other"}, {"filters": ["f:x"]}, {"sampling": {"max_tokens": 9}},
                   {"prompt": {"template": "y"}}, {"engine_options": {"max_model_len": 64}}):
        assert keys.step_key(**{**base, **change}) != key, change


def test_a_step_link_round_trips_through_run_json_and_plain_runs_write_none():
    from chunkpilot.pipeline.documents import FilterRef, StepLink
    from chunkpilot.spec import RunSpec

    spec = RunSpec(run_id="p-s2", created_at="2026-01-01T00:00:00+00:00", inputs=(), chunks=(), engine="echo", model="m",
                   model_revision="r", sampling={}, backend="local", use_spot=None, max_attempts=3, workers=1,
                   chunkpilot_version="x")
    assert b'"pipeline"' not in spec.to_json()
    link = StepLink("p", "judge", "k" * 32, "p-s1", "summarize", (FilterRef("keep", "x == 1"),))
    again = RunSpec.from_json(spec.with_(pipeline=link.to_dict()).to_json())
    assert StepLink.from_dict(again.pipeline) == link
