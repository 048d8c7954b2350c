"""Prompts from fields and structured answers: templates, input keys, constraints and their checks."""

from __future__ import annotations

import pytest

from chunkpilot.errors import ConfigError
from chunkpilot.prompts import PromptSpec, TemplateProblem, compile_template, render
from chunkpilot.requests import RecordError, Request, request_from_record
from chunkpilot.requests.base import Invalid
from chunkpilot.requests.structured import check_answer, check_constraint, from_body

RECORD = {"id": 7, "title": "Great phone", "body": "Battery lasts", "stars": 4.5, "tags": ["a", "b"],
          "meta": {"lang": "de"}, "review text": "spaced key", "empty": None}


@pytest.mark.parametrize("template, expected", [
    ("{{ title }}: {{ body }}", "Great phone: Battery lasts"),
    ("{{ stars }} stars, tags {{ tags }}", '4.5 stars, tags ["a", "b"]'),
    ("{{ tags | join(', ') }} / {{ meta.lang | upper }}", "a, b / DE"),
    ("{{ record['review text'] }}", "spaced key"),
    ("{% if stars > 4 %}good{% else %}bad{% endif %}", "good"),
])
def test_templates_render_a_records_fields(template, expected):
    assert render(PromptSpec(template=template), RECORD) == expected


@pytest.mark.parametrize("template, problem", [
    ("{{ title }} {{ missing }}", "record has no field 'missing'"),
    ("{{ empty }}", "field 'empty' is null"),
    ("{{ meta.nope }}", "UndefinedError"),
    ("{{ title + stars }}", "TypeError"),
    ("{{ title.__class__.__mro__ }}", "SecurityError"),
])
def test_a_record_the_template_cannot_render_names_what_is_wrong(template, problem):
    with pytest.raises(TemplateProblem, match=problem):
        render(PromptSpec(template=template), RECORD)


def test_a_template_that_does_not_parse_is_a_config_error():
    with pytest.raises(ConfigError, match=r"does not parse: .* \(line 2\)"):
        compile_template("ok\n{{ title }")


def test_input_key_takes_a_fields_text():
    assert render(PromptSpec(input_key="body"), RECORD) == "Battery lasts"
    assert render(PromptSpec(input_key="id"), RECORD) == "7"
    for key, problem in (("nope", "no field 'nope'"), ("empty", "is null"), ("tags", "list, not text")):
        with pytest.raises(TemplateProblem, match=problem):
            render(PromptSpec(input_key=key), RECORD)


def test_records_become_chat_or_completion_requests_with_the_runs_constraint():
    spec = PromptSpec(template="Rate: {{ body }}", system="Be brief.", constraint={"choice": ["yes", "no"]})
    r = request_from_record((0, 3), RECORD, {"max_tokens": 8}, spec)
    assert isinstance(r, Request) and r.kind == "chat" and r.params == {"max_tokens": 8}
    assert r.messages == ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Rate: Battery lasts"})
    assert r.constraint == {"choice": ["yes", "no"]} and r.custom_id == "0:3"
    raw = request_from_record((0, 3), RECORD, {}, PromptSpec(input_key="title", raw=True))
    assert raw.kind == "completion" and raw.prompt == "Great phone"
    bad = request_from_record((0, 3), {"title": "x", "custom_id": "c9"}, {}, spec)
    assert isinstance(bad, RecordError) and bad.code == "template_error" and bad.custom_id == "c9"
    assert "no field 'body'" in bad.message


def test_a_requests_own_response_format_wins_over_the_runs_constraint():
    run = PromptSpec(constraint={"choice": ["a"]})
    own = request_from_record((0, 0), {"messages": [{"role": "user", "content": "q"}],
                                       "response_format": {"type": "json_object"}}, {}, run)
    assert own.constraint == {"json_object": True}
    plain = request_from_record((0, 0), {"prompt": "q"}, {}, run)
    assert plain.constraint == {"choice": ["a"]}


SCHEMA = {"type": "object", "properties": {"sentiment": {"enum": ["pos", "neg"]}, "score": {"type": "integer"}},
          "required": ["sentiment", "score"], "additionalProperties": False}


@pytest.mark.parametrize("body, constraint", [
    ({"response_format": {"type": "json_object"}}, {"json_object": True}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}}, {"json": SCHEMA}),
    ({"response_format": {"type": "text"}}, None),
    ({"structured_outputs": {"choice": ["x", "y"]}}, {"choice": ["x", "y"]}),
    ({"structured_outputs": {"regex": "[0-9]+"}}, {"regex": "[0-9]+"}),
])
def test_bodies_ask_for_constraints_the_openai_or_the_vllm_way(body, constraint):
    assert from_body(body) == constraint


@pytest.mark.parametrize("body, code", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "nonsense"}}}}, "invalid_parameter"),
    ({"response_format": {"type": "grammar"}}, "unsupported_parameter"),
    ({"structured_outputs": {"grammar": "root ::= x"}}, "invalid_parameter"),
    ({"structured_outputs": {"choice": []}}, "invalid_parameter"),
    ({"response_format": {"type": "json_object"}, "structured_outputs": {"regex": "x"}}, "invalid_parameter"),
])
def test_constraints_that_cannot_be_honoured_are_refused(body, code):
    with pytest.raises(Invalid) as err:
        from_body(body)
    assert err.value.code == code


def test_run_level_constraints_are_checked_at_submit():
    assert check_constraint({"json": SCHEMA}, "--json-schema s.json") == {"json": SCHEMA}
    with pytest.raises(ConfigError, match="--json-schema s.json: not a valid JSON Schema"):
        check_constraint({"json": {"type": "objekt"}}, "--json-schema s.json")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        check_constraint({"regex": "(unclosed"}, "--regex")


@pytest.mark.parametrize("constraint, text, value, ok", [
    ({"json": SCHEMA}, '{"sentiment": "pos", "score": 3}', {"sentiment": "pos", "score": 3}, True),
    ({"json": SCHEMA}, '{"sentiment": "meh", "score": 3}', {"sentiment": "meh", "score": 3}, False),
    ({"json": SCHEMA}, '{"sentiment": "pos", "sco', None, False),
    ({"json_object": True}, '[1, 2]', [1, 2], False),
    ({"choice": ["yes", "no"]}, "yes", "yes", True),
    ({"choice": ["yes", "no"]}, "Yes", "Yes", False),
    ({"regex": "[0-9]{3}"}, "123", "123", True),
    ({"regex": "[0-9]{3}"}, "1234", "1234", False),
])
def test_every_answer_is_checked_against_its_constraint(constraint, text, value, ok):
    parsed, problem = check_answer(constraint, text)
    assert parsed == value and (problem is None) == ok, problem


@pytest.mark.parametrize("template,says", [
    ('{{ tags | joinn(", ") }}', "unknown filter 'joinn' (line 1); did you mean 'join'?"),
    ("{% if x is nosuchtest %}y{% endif %}", "unknown test 'nosuchtest' (line 1)"),
    ("a\n{% if x %}{{ x | upperr }}{% endif %}", "unknown filter 'upperr' (line 2); did you mean 'upper'?"),
    ("{% filter shout %}x{% endfilter %}", "unknown filter 'shout'"),
])
def test_unknown_filters_and_tests_are_refused_when_compiled_even_inside_an_if(template, says):
    with pytest.raises(ConfigError) as exc:
        compile_template(template)
    assert says in str(exc.value) and "\n" not in str(exc.value)


def test_known_filters_and_tests_compile_and_render():
    spec = PromptSpec(template="{% if tags is defined and tags is iterable %}{{ tags | join(', ') | upper }}{% endif %}")
    assert render(spec, {"tags": ["a", "b"]}) == "A, B"
