"""Request kinds: every record shape becomes its request, and every bad one gets its own error code."""

from __future__ import annotations

import json

import pytest

from chunkpilot.output import line_outcome, ok_line, position_of_line
from chunkpilot.requests import RecordError, Request, Result, request_from_record

POSITION = (0, 10)
DEFAULTS = {"max_tokens": 32, "temperature": 0.0}


def parse(obj: dict) -> Request | RecordError:
    return request_from_record(POSITION, obj, DEFAULTS)


def test_prompt_record():
    r = parse({"prompt": "hi", "custom_id": "a"})
    assert isinstance(r, Request) and r.kind == "completion" and r.prompt == "hi" and r.custom_id == "a"
    assert r.params == DEFAULTS


def test_messages_record_with_overrides():
    r = parse({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 0.7, "seed": 3})
    assert r.kind == "chat" and r.params == {"max_tokens": 5, "temperature": 0.7, "seed": 3}
    assert r.custom_id == "0:10", "a record without custom_id gets its position"


def test_content_parts_are_joined_and_an_integer_custom_id_is_kept():
    r = parse({"custom_id": 7, "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                           {"type": "text", "text": "b"}]}]})
    assert r.messages == ({"role": "user", "content": "a\nb"},) and r.custom_id == "7"


def test_openai_batch_lines():
    chat = parse({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "m", "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 9,
                           "n": 1, "stream": False, "user": "u"}})
    assert chat.kind == "chat" and chat.params["max_tokens"] == 9 and "max_completion_tokens" not in chat.params
    comp = parse({"custom_id": "y", "method": "POST", "url": "/v1/completions", "body": {"prompt": "p"}})
    assert comp.kind == "completion" and comp.prompt == "p"


def test_user_fields_of_a_plain_record_are_data_not_parameters():
    r = parse({"prompt": "x", "lang": "de", "body": "a field named body", "id": 4})
    assert isinstance(r, Request) and r.params == DEFAULTS


@pytest.mark.parametrize(
    "obj, code, names",
    [
        ({"text": "no prompt"}, "missing_prompt", "'prompt'"),
        ({"prompt": 5}, "missing_prompt", "string"),
        ({"messages": []}, "missing_prompt", "non-empty"),
        ({"messages": [{"content": "no role"}]}, "invalid_messages", "message 0"),
        ({"messages": ["str"]}, "invalid_messages", "message 0"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "invalid_messages", "image_url"),
        ({"url": "/v1/audio/speech", "method": "POST", "body": {"input": "x"}}, "unsupported_url", "/v1/audio/speech"),
        ({"url": "/v1/completions", "method": "GET", "body": {"prompt": "x"}}, "invalid_method", "GET"),
        ({"url": "/v1/completions", "method": "POST", "body": "x"}, "invalid_body", "body"),
        ({"prompt": "x", "max_tokens": "ten"}, "invalid_parameter", "max_tokens"),
        ({"prompt": "x", "temperature": True}, "invalid_parameter", "temperature"),
        ({"prompt": "x", "temperature": -1}, "invalid_request", "temperature"),
        ({"prompt": "x", "top_p": 1.5}, "invalid_request", "top_p"),
        ({"prompt": "x", "n": 3}, "unsupported_parameter", "n=1"),
        ({"prompt": "x", "custom_id": {"a": 1}}, "invalid_custom_id", "custom_id"),
        # Fields that would change the answer and are not honoured are refused, never ignored.
        ({"prompt": "x", "guided_json": {"type": "object"}}, "unsupported_parameter", "'guided_json'"),
        ({"prompt": "x", "guided_regex": "[a-z]+"}, "unsupported_parameter", "'guided_regex'"),
        ({"prompt": "x", "guided_json": {}}, "unsupported_parameter", 'send structured_outputs {"json": <schema>}'),
        ({"messages": [{"role": "user", "content": "q"}], "tools": []}, "unsupported_parameter", "'tools'"),
        ({"prompt": "x", "logprobs": 5}, "unsupported_parameter", "'logprobs'"),
        ({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions",
          "body": {"messages": [{"role": "user", "content": "q"}], "guided_choice": ["a", "b"]}},
         "unsupported_parameter", "'guided_choice'"),
        # In a Batch body every field is known or refused: a typo is no silent default.
        ({"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"prompt": "p", "max_tokenz": 3}},
         "unsupported_parameter", "'max_tokenz'"),
    ],
)
def test_bad_records_get_specific_codes(obj, code, names):
    r = parse(obj)
    assert isinstance(r, RecordError), r
    assert r.code == code and names in r.message and r.position == POSITION


def test_custom_id_kept_even_when_record_is_bad():
    r = parse({"custom_id": "keep-me", "text": "no prompt"})
    assert isinstance(r, RecordError) and r.custom_id == "keep-me"


def test_output_lines_are_read_back_as_json_not_by_their_layout():
    request = parse({"custom_id": "c1", "messages": [{"role": "user", "content": "q"}]})
    line = ok_line("run-x", request, Result("r", text="answer", finish_reason="stop", prompt_tokens=3,
                                            completion_tokens=2), "m", "rev")
    reordered = json.dumps(dict(reversed(list(json.loads(line).items())))).encode() + b"\n"
    assert position_of_line(reordered) == POSITION == position_of_line(line)
    assert line_outcome(reordered) == line_outcome(line) and line_outcome(line).completion_tokens == 2
    body = json.loads(line)["response"]["body"]
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "answer"
    with pytest.raises(ValueError):
        position_of_line(b'{"id": "someone-else"}\n')


# -- embeddings ----------------------------------------------------------------------------------

from chunkpilot.prompts import PromptSpec  # noqa: E402
from chunkpilot.requests.embedding import decode, encode  # noqa: E402

EMBED = PromptSpec(task="embed")


def test_embedding_records_and_batch_lines():
    r = request_from_record(POSITION, {"input": "hello", "custom_id": "e1"}, {}, EMBED)
    assert r.kind == "embedding" and r.inputs == ("hello",) and r.custom_id == "e1"
    batch = request_from_record(POSITION, {"custom_id": "e2", "method": "POST", "url": "/v1/embeddings",
                                           "body": {"model": "m", "input": ["a", "b"], "encoding_format": "base64",
                                                    "dimensions": 64}}, {"truncate_prompt_tokens": -1}, EMBED)
    assert batch.inputs == ("a", "b") and batch.params == {"encoding_format": "base64", "dimensions": 64,
                                                           "truncate_prompt_tokens": -1}
    templated = request_from_record(POSITION, {"title": "T", "body": "B"}, {}, PromptSpec(template="{{ title }}. {{ body }}", task="embed"))
    assert templated.kind == "embedding" and templated.inputs == ("T. B",)


@pytest.mark.parametrize("fields, code", [
    ({"input": ""}, "empty_input"),
    ({"input": ["ok", "  "]}, "empty_input"),
    ({"input": []}, "missing_input"),
    ({"input": [1, 2, 3]}, "unsupported_parameter"),
    ({"text": "no input field"}, "missing_input"),
    ({"prompt": "a generation record"}, "missing_input"),
    ({"url": "/v1/embeddings", "body": {"input": "x", "encoding_format": "int8"}}, "invalid_parameter"),
    ({"url": "/v1/embeddings", "body": {"input": "x", "dimensions": 0}}, "invalid_request"),
    ({"url": "/v1/embeddings", "body": {"input": "x", "pooling": "cls"}}, "unsupported_parameter"),
    ({"url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": "q"}]}}, "wrong_task"),
])
def test_bad_embedding_requests_get_specific_codes(fields, code):
    r = request_from_record(POSITION, fields, {}, EMBED)
    assert isinstance(r, RecordError) and r.code == code, r


def test_a_generation_run_refuses_embedding_lines_with_wrong_task():
    r = parse({"url": "/v1/embeddings", "body": {"input": "x"}})
    assert isinstance(r, RecordError) and r.code == "wrong_task" and "--task embed" in r.message


def test_embedding_output_is_shaped_as_run_batch_writes_it():
    request = request_from_record(POSITION, {"input": ["a", "b"], "encoding_format": "base64"}, {}, EMBED)
    result = Result("r", prompt_tokens=4, embeddings=[[0.5, -0.25], [1.0, 0.0]])
    line = json.loads(ok_line("run-x", request, result, "m", "rev"))
    body = line["response"]["body"]
    assert body["object"] == "list" and body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert [d["index"] for d in body["data"]] == [0, 1] and all(d["object"] == "embedding" for d in body["data"])
    assert decode(body["data"][0]["embedding"]) == [0.5, -0.25] and encode([0.5, -0.25]) == body["data"][0]["embedding"]
    from chunkpilot.output import answer_of

    assert answer_of(line) == ([[0.5, -0.25], [1.0, 0.0]], None)


@pytest.mark.parametrize("params,says", [
    ({"temperature": -1}, "temperature must be ≥ 0, got -1"),
    ({"top_p": 1.5}, "top_p must be between 0 and 1, got 1.5"),
    ({"frequency_penalty": -3}, "frequency_penalty must be between -2 and 2, got -3"),
])
def test_an_out_of_range_sampling_value_names_its_bound(params, says):
    out = request_from_record((0, 0), {"prompt": "hi", **params}, {"max_tokens": 4})
    assert isinstance(out, RecordError) and out.message == says
