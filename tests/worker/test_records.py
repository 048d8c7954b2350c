"""Record parsing: every input shape, and every kind of bad line gets its own error code."""

from __future__ import annotations

import json

import pytest

from chunkpilot.records import is_blank, parse_record
from chunkpilot.requests import RecordError, Request

KEY = (0, 10)
DEFAULTS = {"max_tokens": 32, "temperature": 0.0}


def parse(obj) -> Request | RecordError:
    line = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return parse_record(KEY, line, DEFAULTS)


def test_prompt_record():
    r = parse({"prompt": "hi", "custom_id": "a"})
    assert isinstance(r, Request) and r.kind == "completion" and r.prompt == "hi" and r.custom_id == "a"
    assert r.sampling == DEFAULTS


def test_messages_record_with_overrides():
    r = parse({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 0.7, "seed": 3})
    assert r.kind == "chat" and r.sampling == {"max_tokens": 5, "temperature": 0.7, "seed": 3}
    assert r.custom_id == "0:10", "a record without custom_id gets its position"


def test_openai_batch_lines():
    chat = parse({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "m", "messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 9}})
    assert chat.kind == "chat" and chat.sampling["max_tokens"] == 9 and "max_completion_tokens" not in chat.sampling
    comp = parse({"custom_id": "y", "method": "POST", "url": "/v1/completions", "body": {"prompt": "p"}})
    assert comp.kind == "completion" and comp.prompt == "p"


def test_bom_at_file_start_is_ignored():
    r = parse_record((0, 0), b'\xef\xbb\xbf{"prompt": "x"}\n', DEFAULTS)
    assert isinstance(r, Request) and r.prompt == "x"


@pytest.mark.parametrize(
    "line, code",
    [
        (b"{not json", "invalid_json"),
        (b'{"prompt": "\xff\xfe"}', "invalid_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b'"just a string"', "not_an_object"),
        (b"42", "not_an_object"),
        (b'{"text": "no prompt"}', "missing_prompt"),
        (b'{"prompt": 5}', "missing_prompt"),
        (b'{"messages": []}', "missing_prompt"),
        (b'{"messages": [{"content": "no role"}]}', "invalid_messages"),
        (b'{"messages": ["str"]}', "invalid_messages"),
        (b'{"url": "/v1/embeddings", "method": "POST", "body": {"input": "x"}}', "unsupported_url"),
        (b'{"url": "/v1/completions", "method": "GET", "body": {"prompt": "x"}}', "invalid_method"),
        (b'{"url": "/v1/completions", "method": "POST", "body": "x"}', "invalid_body"),
        (b'{"prompt": "x", "max_tokens": "ten"}', "invalid_parameter"),
        (b'{"prompt": "x", "temperature": true}', "invalid_parameter"),
        (b'{"prompt": "x", "n": 3}', "unsupported_parameter"),
        (b'{"prompt": "x", "custom_id": {"a": 1}}', "invalid_custom_id"),
    ],
)
def test_bad_lines_get_specific_codes(line, code):
    r = parse_record(KEY, line, DEFAULTS)
    assert isinstance(r, RecordError), r
    assert r.code == code and r.message and r.key == KEY


def test_blank_lines():
    assert is_blank(b"\n") and is_blank(b"  \r\n") and is_blank(b"")
    assert not is_blank(b"{}\n")


def test_custom_id_kept_even_when_record_is_bad():
    r = parse({"custom_id": "keep-me", "text": "no prompt"})
    assert isinstance(r, RecordError) and r.custom_id == "keep-me"
