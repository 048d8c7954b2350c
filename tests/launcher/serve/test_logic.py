"""The pure parts of ``launcher serve``: line rules, object shapes, a batch's next step, keys, config."""

from __future__ import annotations

import json

import pytest

from chunkpilot.errors import ConfigError
from chunkpilot.control.serve import lifecycle
from chunkpilot.control.serve.auth import OPEN_TENANT, tenant_for
from chunkpilot.control.serve.config import check_exposure, is_loopback, parse_model_option, pin_models, read_keys
from chunkpilot.control.serve.objects import ApiError, BatchRecord, FileRecord, is_id, new_id, page_ids, window_seconds
from chunkpilot.control.serve.validate import validate_lines

CHAT = "/v1/chat/completions"


def line(custom_id="a", url=CHAT, model="tiny", **extra) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url,
                       "body": {"model": model, "messages": []}, **extra}).encode()


def test_valid_file_counts_requests_and_names_its_model():
    result = validate_lines([line("a"), b"  \n", line("b")], CHAT, {"tiny"})
    assert result.ok and result.total == 2 and result.model == "tiny"


@pytest.mark.parametrize("lines, code, number", [
    ([line("a"), b"{oops"], "invalid_json_line", 2),
    ([line("a"), b"[1]"], "invalid_json_line", 2),
    ([line("a"), line("a")], "duplicate_custom_id", 2),
    ([line(None)], "missing_custom_id", 1),
    ([line("a"), line("b", url="/v1/completions")], "mismatched_url", 2),
    ([line("a", method="GET")], "invalid_method", 1),
    ([line("a"), line("b", model="other")], "mismatched_model", 2),
    ([line("a", model="gpt-9")], "model_not_found", 1),
    ([json.dumps({"custom_id": "a", "method": "POST", "url": CHAT, "body": {}}).encode()], "missing_model", 1),
    ([b"\n"], "empty_file", None),
])
def test_each_rule_fails_the_file_naming_the_line(lines, code, number):
    result = validate_lines(lines, CHAT, {"tiny", "other"} if code != "model_not_found" else {"tiny"})
    assert [(e.code, e.line) for e in result.errors] == [(code, number)]


def test_problems_are_capped():
    result = validate_lines([b"x"] * 500, CHAT, {"tiny"}, max_errors=10)
    assert len(result.errors) == 10 and result.total == 500


def test_ids_are_unguessable_and_sort_by_creation():
    first, second = new_id("batch_", 1000.0), new_id("batch_", 1000.5)
    assert first < second and is_id(first, "batch_") and len({new_id("file-") for _ in range(100)}) == 100
    assert not is_id("batch_../x", "batch_") and not is_id(first, "file-")


def test_pages_follow_after_and_limit():
    ids = ["e", "d", "c", "b", "a"]
    assert page_ids(ids, None, 2) == (["e", "d"], True)
    assert page_ids(ids, "d", 2) == (["c", "b"], True)
    assert page_ids(ids, "b", 2) == (["a"], False)
    assert page_ids(ids, "cc", 1) == (["c"], True)  # an id that no longer exists still places the page
    assert page_ids(ids[::-1], "b", 10, newest_first=False) == (["c", "d", "e"], False)


def test_window_and_records_round_trip():
    assert window_seconds("24h") == 86400 and window_seconds("24 h") is None and window_seconds(24) is None
    batch = BatchRecord("batch_" + "0" * 32, "T", CHAT, "file-" + "0" * 32, "24h", "validating", 10, 20)
    assert BatchRecord.from_json(batch.to_json()) == batch
    shaped = batch.entering("in_progress", 12.7).to_openai()
    assert shaped["status"] == "in_progress" and shaped["in_progress_at"] == 12 and "tenant" not in shaped
    assert shaped["request_counts"] == {"total": 0, "completed": 0, "failed": 0} and shaped["errors"] is None
    assert set(FileRecord("file-x", "T", 1, 2, "f", "batch").to_openai()) >= {"id", "object", "bytes", "created_at",
                                                                             "filename", "purpose"}


def batch(status="in_progress", expires_at=100, end_status=None):
    return BatchRecord("batch_" + "0" * 32, "T", CHAT, "f", "24h", status, 0, expires_at, end_status=end_status)


RUNNING = lifecycle.RunView(finished=False, all_done=False, paused=False)
FINISHED = lifecycle.RunView(finished=True, all_done=True, paused=False)
GAVE_UP = lifecycle.RunView(finished=True, all_done=False, paused=False)


def test_next_step():
    assert lifecycle.next_step(batch("validating"), None, 0) == lifecycle.VALIDATE
    assert lifecycle.next_step(batch("cancelling"), None, 0) == lifecycle.END_UNSTARTED
    assert lifecycle.next_step(batch(), RUNNING, 0) == lifecycle.DRIVE
    assert lifecycle.next_step(batch(), FINISHED, 0) == lifecycle.FINALIZE
    assert lifecycle.next_step(batch("finalizing"), None, 0) == lifecycle.FINALIZE
    assert lifecycle.next_step(batch("completed"), FINISHED, 0) == lifecycle.NOTHING


def test_when_a_run_must_stop_and_how_a_batch_ends():
    assert not lifecycle.must_stop(batch(), run_paused=False, now=50)
    assert lifecycle.must_stop(batch(), run_paused=False, now=100)  # past its window
    assert lifecycle.must_stop(batch("cancelling"), run_paused=False, now=0)
    assert not lifecycle.must_stop(batch("cancelling"), run_paused=True, now=0)
    assert lifecycle.end_status(batch(), FINISHED, 0) == "completed"
    assert lifecycle.end_status(batch(), GAVE_UP, 0) == "failed"
    assert lifecycle.end_status(batch(), GAVE_UP, 200) == "expired"
    assert lifecycle.end_status(batch(), FINISHED, 200) == "completed"  # all answered, if late
    assert lifecycle.end_status(batch("cancelling"), FINISHED, 0) == "cancelled"


def test_bearer_keys_name_tenants():
    keys = {"TEAM_A": "sk-a", "TEAM_B": "sk-b"}
    assert tenant_for("Bearer sk-b", keys) == "TEAM_B" and tenant_for("bearer  sk-a ", keys) == "TEAM_A"
    for header in (None, "", "Bearer", "Basic sk-a", "Bearer sk-c", "Bearer sk-a2"):
        with pytest.raises(ApiError) as info:
            tenant_for(header, keys)
        assert info.value.status == 401
    assert tenant_for(None, {}) == OPEN_TENANT


def test_keys_come_from_the_environment_and_guard_the_address():
    assert read_keys(("A",), {"A": " sk-1 "}) == {"A": "sk-1"}
    for variables, env in ((("A",), {}), (("A",), {"A": ""}), (("sk-123",), {}), (("A", "B"), {"A": "k", "B": "k"})):
        with pytest.raises(ConfigError):
            read_keys(variables, env)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.com")
    check_exposure("127.0.0.1", {})
    check_exposure("0.0.0.0", {"A": "k"})
    with pytest.raises(ConfigError, match="--api-key-env"):
        check_exposure("0.0.0.0", {})


def test_model_options():
    assert parse_model_option("qwen=Qwen/Qwen2.5-7B-Instruct@main") == ("qwen", "Qwen/Qwen2.5-7B-Instruct@main")
    for bad in ("qwen", "=x", "qwen=", "a b=x"):
        with pytest.raises(ConfigError):
            parse_model_option(bad)
    assert pin_models(("tiny=echo",), "echo", "local")["tiny"].target is None
    with pytest.raises(ConfigError, match="--engine echo"):
        pin_models(("tiny=echo",), "vllm", "local")
    with pytest.raises(ConfigError, match="twice"):
        pin_models(("a=echo", "a=echo"), "echo", "local")
    from chunkpilot.model import ModelPin

    pinned = pin_models(("q=Org/model@main",), "vllm", "local", pin=lambda t: ModelPin("Org/model", "abc123", {}))
    assert pinned["q"].target == "Org/model@abc123" and pinned["q"].revision == "abc123"


def test_serve_refuses_an_exposed_address_without_a_key(cli):
    result = cli("serve", "--host", "0.0.0.0", "--engine", "echo", "--model", "tiny=echo", expect=1)
    assert "--api-key-env" in result.output
    result = cli("serve", "--api-key-env", "NOT_SET_ANYWHERE", "--engine", "echo", "--model", "tiny=echo", expect=1)
    assert "NOT_SET_ANYWHERE is not set" in result.output
