"""States say what is possible: a run stopped fail-fast is failed (with its code, and no command that
would not resume it); cancel on a finished run changes nothing. The real CLI, local backend, echo engine."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import write_jsonl


@pytest.fixture
def fail_fast_run(tmp_path, store_uri, cli):
    """A 3-chunk run whose every record lacks a prompt: each chunk stops fail-fast on missing_prompt."""
    path = write_jsonl(tmp_path / "bad.jsonl", [{"custom_id": f"x{i}", "text": "no prompt"} for i in range(150)])
    cli("submit", path, "--chunks", 3, "--engine", "echo", "--store", store_uri, "--run-name", "ff")
    # Watched without the run's error budget, which could pause the run before every chunk has
    # stopped by itself; the workers' fail-fast (the run's own setting) stops each chunk.
    result = cli("watch", "ff", "--store", store_uri, "--max-error-rate", 1, expect=1)
    assert "3 chunk(s) failed" in result.output
    return "ff"


def test_a_run_stopped_fail_fast_is_failed_with_its_code_and_no_false_resume(store_uri, cli, fail_fast_run, tmp_path):
    listed = json.loads(cli("runs", "--store", store_uri, "--json").output)
    assert [(r["run_id"], r["state"], r["failure"]["fail_fast_code"], r["failure"]["resume_command"]) for r in listed] == [
        ("ff", "failed", "missing_prompt", None)]
    table = " ".join(cli("runs", "--store", store_uri).output.split())
    assert "failed (fail-fast: missing_prompt)" in table and "incomplete" not in table
    assert "submit a new run (--max-error-rate 1 turns fail-fast off)" in table
    # collect's advice does not send the user to `watch`, which would do nothing here ...
    result = cli("collect", "ff", "--store", store_uri, "-o", tmp_path / "o.jsonl", expect=1)
    assert "3 stopped for good" in result.output and "`launcher watch` cannot finish them" in result.output
    assert "run `launcher watch" not in result.output
    # ... as the watch itself shows: it finishes nothing.
    assert "3 chunk(s) failed" in cli("watch", "ff", "--store", store_uri, "--max-error-rate", 1, expect=1).output


def test_collect_points_at_watch_for_chunks_it_can_still_finish(tmp_path, store_uri, cli, make_run):
    run = make_run([write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p {i}"} for i in range(20)])], chunks=2)
    result = cli("collect", run.spec.run_id, "--store", store_uri, "-o", tmp_path / "o.jsonl", expect=1)
    assert f"2 can still finish (0000, 0001): run `launcher watch {run.spec.run_id} --store {store_uri}`" in result.output
    assert "stopped for good" not in result.output


def _job_logs(store_uri: str, run_id: str) -> set[str]:
    folder = os.path.join(store_uri, run_id, "logs")
    return set(os.listdir(folder)) if os.path.isdir(folder) else set()


@pytest.mark.parametrize("finished", ["done", "failed"])
def test_cancel_on_a_finished_run_says_so_and_changes_nothing(tmp_path, store_uri, cli, fail_fast_run, finished):
    run_id = fail_fast_run
    if finished == "done":
        path = write_jsonl(tmp_path / "ok.jsonl", [{"prompt": f"p {i}"} for i in range(10)])
        cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "ok", "--watch")
        run_id = "ok"
    before = sorted(p for p in os.listdir(os.path.join(store_uri, run_id)))
    result = cli("cancel", run_id, "--store", store_uri)
    assert f"{run_id} is finished" in result.output and "nothing to cancel" in result.output
    assert "asked" not in result.output and "paused" not in result.output
    assert sorted(os.listdir(os.path.join(store_uri, run_id))) == before and "CANCELLED" not in before
    state = json.loads(cli("runs", "--store", store_uri, "--json").output)
    assert {r["run_id"]: r["state"] for r in state}[run_id] == finished


def test_cancel_on_a_run_in_progress_still_pauses_it(tmp_path, store_uri, cli, make_run):
    run = make_run([write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p {i}"} for i in range(20)])], chunks=2)
    result = cli("cancel", run.spec.run_id, "--store", store_uri)
    assert "paused" in result.output
    assert os.path.exists(os.path.join(store_uri, run.spec.run_id, "CANCELLED"))


def test_a_run_out_of_attempts_is_failed_and_names_the_watch_that_gives_more(tmp_path, store_uri, cli, make_run):
    """A chunk whose last allowed attempt was released (its worker preempted) is taken by no worker:
    `runs` says failed, out of attempts, with the command that resumes it — and that command does."""
    from chunkpilot import layout
    from chunkpilot.claims import Claim

    run = make_run([write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"p {i}"} for i in range(20)])], chunks=2,
                   max_attempts=2)
    run_id = run.spec.run_id
    for chunk in ("0000", "0001"):  # both chunks' second (last) attempt ended with a preemption
        run.run_store.put(layout.claim(chunk), Claim(chunk, 2, "w0", 2, "released", 0.0, reason="preempted").to_json())
    listed = json.loads(cli("runs", "--store", store_uri, "--json").output)
    assert [(r["state"], r["failure"]["why"], r["failure"]["resume_command"]) for r in listed] == [
        ("failed", "out of attempts", f"launcher watch {run_id} --max-attempts 3")]
    table = " ".join(cli("runs", "--store", store_uri).output.split())
    assert "2 chunk(s) ran out of attempts" in table and f"resume it with `launcher watch {run_id} --max-attempts 3`" in table
    result = cli("collect", run_id, "--store", store_uri, "-o", tmp_path / "o.jsonl", expect=1)
    assert (f"2 ran out of attempts (0000, 0001): run `launcher watch {run_id} --store {store_uri} --max-attempts 3`"
            in " ".join(result.output.split())) and "can still finish" not in result.output
    # One chunk with an attempt left: the run can still finish, so it is not failed.
    run.run_store.put(layout.claim("0001"), Claim("0001", 1, "w0", 1, "released", 0.0).to_json())
    assert json.loads(cli("runs", "--store", store_uri, "--json").output)[0]["state"] == "incomplete"
    run.run_store.put(layout.claim("0001"), Claim("0001", 2, "w0", 2, "released", 0.0).to_json())
    cli("watch", run_id, "--store", store_uri, "--max-attempts", 3)
    assert json.loads(cli("runs", "--store", store_uri, "--json").output)[0]["state"] == "done"
