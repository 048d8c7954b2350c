"""The echo engine: finish_reason says when max_tokens cut the answer; answers follow a --regex."""

from __future__ import annotations

import re

import pytest

from chunkpilot.regex_example import regex_example
from chunkpilot.requests import Request
from worker.engines.echo import echo_answer


def request(prompt: str, max_tokens: int, constraint=None) -> Request:
    return Request(position=(0, 0), custom_id="x", kind="completion", prompt=prompt, params={"max_tokens": max_tokens},
                   constraint=constraint)


@pytest.mark.parametrize("words,max_tokens,reason", [(5, 3, "length"), (5, 5, "stop"), (2, 8, "stop")])
def test_finish_reason_is_length_only_when_max_tokens_cut_the_answer(words, max_tokens, reason):
    text, finish = echo_answer(request(" ".join(f"w{i}" for i in range(words)), max_tokens))
    assert finish == reason and len(text.split()) == min(words, max_tokens)


@pytest.mark.parametrize("pattern", [r"\d{3}-\d{4}", r"(yes|no)", r"[A-Z][a-z]+ \w+!?", r"^[^a0 ]+$", r"(ab)\1c",
                                     r"a{2,5}b*", r"(?i)hello", r"[^\d\s]x", r"\b\w+\b", r"(?:x|y){4}"])
def test_a_regex_answer_is_matched_in_full(pattern):
    text, finish = echo_answer(request("some words here", 16, {"regex": pattern}))
    assert re.fullmatch(pattern, text) and finish == "stop"


@pytest.mark.parametrize("pattern", [r"(?=a)b", r"(?<!x)y", r"(a)?(?(1)b|c)", "("])
def test_what_it_cannot_follow_it_does_not_pretend_to(pattern):
    assert regex_example(pattern) is None
