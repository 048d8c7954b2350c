"""An output line names the hub commit its record was read from, in answers and in errors alike."""

from __future__ import annotations

import json

from chunkpilot.output import error_line, ok_line
from chunkpilot.requests import Request, Result

SHA = "0123456789abcdef0123456789abcdef01234567"


def _request() -> Request:
    return Request(position=(0, 7), custom_id="c", kind="completion", prompt="hi", params={"max_tokens": 4})


def test_an_answer_and_an_error_carry_the_input_revision():
    ok = json.loads(ok_line("run", _request(), Result("0:7", text="hi", finish_reason="stop"), "m", "rev", SHA))
    assert ok["response"]["body"]["input_revision"] == SHA and ok["response"]["body"]["model_revision"] == "rev"
    error = json.loads(error_line("run", (0, 7), "c", "too_long", "no", SHA))
    assert error["error"] == {"code": "too_long", "message": "no", "input_revision": SHA}


def test_lines_of_inputs_without_a_hub_commit_are_unchanged():
    ok = json.loads(ok_line("run", _request(), Result("0:7", text="hi", finish_reason="stop"), "m", "rev"))
    assert "input_revision" not in ok["response"]["body"]
    assert json.loads(error_line("run", (0, 7), "c", "x", "y"))["error"] == {"code": "x", "message": "y"}
