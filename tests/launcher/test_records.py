"""Records as users have them: prompts from their fields, answers merged back, structured answers.

End to end with the CLI, the local backend and the echo engine (which renders templates and
keeps choices and schemas where it can); the vLLM engine's constraints are tested with the
real engine in tests/worker/test_vllm_engine.py.
"""

from __future__ import annotations

import json
import re
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import read_jsonl, write_jsonl
from tests.workers import holders, parts_of, worker_pid


def records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        r = {"id": i, "title": f"title {i}", "body": f"body number {i} says hi", "stars": i % 5 + 0.5,
             "tags": [f"t{i % 3}", "x"], "meta": {"lang": "de" if i % 2 else "en", "n": i}, "flag": i % 7 == 0}
        if i % 50 == 17:
            del r["body"]  # the template needs it: template_error for this record
        out.append(r)
    return out


TEMPLATE = "Title: {{ title }}\nBody: {{ body }}"


def expected_answer(r: dict) -> str:
    return " ".join(f"Title: {r['title']}\nBody: {r['body']}".split()[::-1])


def check_merged(rows: list[dict], inputs: list[dict], key: str = "summary") -> None:
    assert len(rows) == len(inputs), "one line per input record"
    for row, record in zip(rows, inputs):
        kept = {k: v for k, v in row.items() if k not in (key, f"{key}_error")}
        assert kept == record and all(type(kept[k]) is type(record[k]) for k in record), "fields unchanged, types too"
        if "body" in record:
            assert row[key] == expected_answer(record) and row[f"{key}_error"] is None
        else:
            assert row[key] is None and row[f"{key}_error"]["code"] == "template_error"
            assert "'body'" in row[f"{key}_error"]["message"]


def test_a_template_over_fields_with_answers_merged_back(tmp_path, store_uri, cli):
    inputs = records(300)
    path = write_jsonl(tmp_path / "records.jsonl", inputs, extra_lines=[b"\n"])
    result = cli("submit", path, "--chunks", 3, "--engine", "echo", "--store", store_uri, "--run-name", "rec",
                 "--prompt-template", TEMPLATE, "--output-key", "summary", "--watch")
    assert "all 3 chunk(s) done" in result.output and "template_error" in result.output
    assert "-o results.jsonl --format records`" in " ".join(result.output.split())  # the hint gives the records back
    out = tmp_path / "merged.jsonl"
    result = cli("collect", "rec", "--store", store_uri, "-o", out, "--format", "records")
    assert "300 records (294 ok, 6 errors), 1 blank input lines skipped" in result.output
    check_merged(read_jsonl(out), inputs)
    # The default output stays OpenAI Batch lines.
    cli("collect", "rec", "--store", store_uri, "-o", tmp_path / "batch.jsonl")
    assert {"id", "custom_id", "response", "error"} == set(read_jsonl(tmp_path / "batch.jsonl")[0])


def test_records_survive_killed_workers_exactly_once(tmp_path, store_uri, cli, make_run):
    from chunkpilot.prompts import PromptSpec
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.watch import WatchOptions, reconcile_once

    inputs = records(600)
    path = write_jsonl(tmp_path / "records.jsonl", inputs)
    run = make_run([path], chunks=3, workers=3, commit_records=20, prompt_template=TEMPLATE, output_key="summary",
                   engine_options={"delay": 0.01, "batch": 2})
    assert PromptSpec.from_dict(run.spec.prompt).template == TEMPLATE
    reconcile_once(run, make_backend(run.spec, store_uri), WatchOptions(), set())
    run_dir, killed = Path(store_uri) / run.spec.run_id, set()
    deadline = time.monotonic() + 60
    while len(killed) < 3 and time.monotonic() < deadline:  # SIGKILL each chunk's worker once it committed something
        for chunk, claim in holders(run_dir).items():
            pid = worker_pid(run_dir, claim)
            planned = "_" not in chunk  # a split's child is not one of the three chunks
            if planned and chunk not in killed and claim["attempt"] == 1 and pid and len(parts_of(run_dir, chunk, 1)) >= 2:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed.add(chunk)
                if len(killed) == 3:  # one pass may find more eligible workers than the test kills
                    break
        time.sleep(0.02)
    assert len(killed) == 3
    cli("watch", run.spec.run_id, "--store", store_uri)
    out = tmp_path / "merged.jsonl"
    cli("collect", run.spec.run_id, "--store", store_uri, "-o", out, "--format", "records")
    check_merged(read_jsonl(out), inputs)
    status = json.loads(cli("status", run.spec.run_id, "--store", store_uri, "--json").output)
    assert all(c["attempts"] == 2 for c in status["chunks"]), "each chunk resumed after its kill"


def test_structured_answers_are_checked_and_stored_parsed(tmp_path, store_uri, cli):
    schema = {"type": "object", "properties": {"sentiment": {"enum": ["pos", "neg"]}, "summary": {"type": "string"}},
              "required": ["sentiment", "summary"]}
    (tmp_path / "s.json").write_text(json.dumps(schema))
    path = write_jsonl(tmp_path / "r.jsonl", [{"id": i, "text": f"text {i}"} for i in range(40)])
    cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--run-name", "js",
        "--input-key", "text", "--json-schema", tmp_path / "s.json", "--watch")
    cli("collect", "js", "--store", store_uri, "-o", tmp_path / "js.jsonl", "--format", "records")
    rows = read_jsonl(tmp_path / "js.jsonl")
    assert all(r["response"] == {"sentiment": "pos", "summary": f"{i} text"} for i, r in enumerate(rows))
    batch = read_jsonl(_collect(cli, store_uri, "js", tmp_path / "js-batch.jsonl"))
    message = batch[0]["response"]["body"]["choices"][0]["message"]
    assert json.loads(message["content"]) == message["parsed"] == rows[0]["response"]

    cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", store_uri, "--run-name", "ch",
        "--input-key", "text", "--choice", "yes", "--choice", "no", "--watch")
    rows = read_jsonl(_collect(cli, store_uri, "ch", tmp_path / "ch.jsonl", "--format", "records"))
    assert {r["response"] for r in rows} <= {"yes", "no"} and len(rows) == 40

    # echo follows a regex: each answer is a string the regex matches in full.
    regex = r"(ID|id)-[0-9]{3}-[a-f]+"
    cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", store_uri, "--run-name", "rx",
        "--input-key", "text", "--regex", regex, "--watch")
    rows = read_jsonl(_collect(cli, store_uri, "rx", tmp_path / "rx.jsonl", "--format", "records"))
    assert len(rows) == 40 and all(r["response_error"] is None and re.fullmatch(regex, r["response"]) for r in rows)
    # ... and refuses at submit, one line, a regex it cannot build an answer for, instead of failing every record.
    result = cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", store_uri, "--run-name", "rx2",
                 "--input-key", "text", "--regex", "(?=a)b", expect=1)
    assert "the echo engine cannot build an answer it matches" in result.output
    assert len(result.output.strip().splitlines()) == 1


def _collect(cli, store_uri, run, out, *extra) -> Path:
    cli("collect", run, "--store", store_uri, "-o", out, *extra)
    return out


def test_lines_that_are_no_record_keep_their_text(tmp_path, store_uri, cli):
    path = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "ok one"}, b"{broken\n", b"[1, 2]\n", {"prompt": "ok two"}])
    cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", store_uri, "--run-name", "raw",
        "--max-error-rate", 1, "--watch")
    rows = read_jsonl(_collect(cli, store_uri, "raw", tmp_path / "raw.jsonl", "--format", "records"))
    assert rows[0] == {"prompt": "ok one", "response": "one ok", "response_error": None}
    assert rows[1]["response_input"] == "{broken" and rows[1]["response_error"]["code"] == "invalid_json"
    assert rows[2]["response_input"] == "[1, 2]" and rows[2]["response_error"]["code"] == "not_an_object"
    # A record that already has the answer's field: collect says which --output-key to use instead.
    result = cli("collect", "raw", "--store", store_uri, "-o", tmp_path / "x.jsonl", "--format", "records",
                 "--output-key", "prompt", expect=1)
    assert "already has a field 'prompt'" in result.output and not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (["--prompt-template", "{{ title }"], "--prompt-template does not parse"),
    (["--json-schema", "bad-schema.json"], "not a valid JSON Schema"),
    (["--json-schema", "not-json.json"], "not JSON"),
    (["--json-schema", "missing.json"], "cannot read it"),
    (["--regex", "(open"], "not a valid regular expression"),
    (["--input-key", "a", "--prompt-template", "{{ a }}"], "not both"),
    (["--choice", "a", "--regex", "b"], "give one of"),
    (["--system-prompt", "hi"], "--system-prompt needs --prompt-template"),
    (["--prompt-template", "@nope.txt"], "cannot read nope.txt"),
])
def test_bad_prompt_options_fail_before_anything_is_written(tmp_path, cli, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad-schema.json").write_text('{"type": "objekt"}')
    (tmp_path / "not-json.json").write_text("{type: object")
    write_jsonl(tmp_path / "in.jsonl", [{"title": "x"}])
    result = cli("submit", "in.jsonl", "--chunks", 1, "--engine", "echo", "--store", "runs", *args, expect=1)
    assert message in result.output and not (tmp_path / "runs").exists()


def test_the_dry_run_shows_the_first_prompts_as_the_model_sees_them(tmp_path, cli):
    (tmp_path / "sys.txt").write_text("You rate reviews.")
    path = write_jsonl(tmp_path / "r.jsonl", records(5))
    result = cli("submit", path, "--chunks", 1, "--engine", "echo", "--store", tmp_path / "runs", "--dry-run",
                 "--prompt-template", TEMPLATE, "--system-prompt", f"@{tmp_path / 'sys.txt'}", "--choice", "good",
                 "--choice", "bad")
    assert "first 3 record(s) as the model will see them" in result.output
    assert "[system] You rate reviews." in result.output and "[user] Title: title 0" in result.output
    assert "answer one of ['good', 'bad']" in result.output and not (tmp_path / "runs").exists()
