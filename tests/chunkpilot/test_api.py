"""The Python API (``chunkpilot.submit`` / ``open_run`` / ``Run``): a script that imports only
``chunkpilot`` runs a local echo run end to end, and its records are the CLI's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import chunkpilot
from chunkpilot.errors import ChunkpilotError, ConfigError, IncompleteRunError, InputError, RunFailedError, RunNotFoundError
from tests.conftest import read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import chunkpilot

inputs, store, out = sys.argv[1:4]
calls = []
run = chunkpilot.submit(inputs, chunks=3, engine="echo", store=store, run_name="by-api")
assert run.wait(progress=calls.append) == run
assert calls and all("totals" in s and "chunks" in s for s in calls), len(calls)
status = run.status()
assert status["totals"]["finished"] and status["totals"]["states"] == {"DONE": 3}, status["totals"]
again = chunkpilot.open_run("by-api", store=store)
report = again.collect(out)
with open(out + ".iter", "w") as f:
    for record in run.collect():
        f.write(json.dumps(record) + "\\n")
with open(out + ".records", "w") as f:
    for record in run.collect(format="records"):
        f.write(json.dumps(record) + "\\n")
print(json.dumps({"records": report.records, "cycles": len(calls)}))
"""


def test_a_script_using_only_the_api_collects_what_the_cli_collects(prompts, store_uri, tmp_path, cli):
    out = tmp_path / "api.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(prompts), store_uri, str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["records"] == 120 and summary["cycles"] >= 1

    # The same run through the CLI: byte-identical file; the iterator gives the same records.
    cli("collect", "by-api", "--store", store_uri, "-o", tmp_path / "cli-same.jsonl")
    assert out.read_bytes() == (tmp_path / "cli-same.jsonl").read_bytes()
    assert read_jsonl(Path(f"{out}.iter")) == read_jsonl(out)

    # A second run of the same input, submitted and collected by the CLI: the same records.
    cli("submit", prompts, "--chunks", "3", "--engine", "echo", "--store", store_uri, "--run-name", "by-cli", "--watch")
    cli("collect", "by-cli", "--store", store_uri, "-o", tmp_path / "cli.jsonl", "--format", "records")
    assert read_jsonl(Path(f"{out}.records")) == read_jsonl(tmp_path / "cli.jsonl")
    cli("collect", "by-cli", "--store", store_uri, "-o", tmp_path / "cli-openai.jsonl")
    assert [_answer(r) for r in read_jsonl(Path(f"{out}.iter"))] == [_answer(r) for r in read_jsonl(tmp_path / "cli-openai.jsonl")]


def _answer(line: dict) -> tuple:
    """An OpenAI output line less what names its run (ids) or its time."""
    body = line["response"]["body"]
    return line["custom_id"], line["response"]["status_code"], body["choices"], body["usage"], line["error"]


def test_status_json_is_the_clis(prompts, store_uri, cli):
    run = chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, run_name="st", watch=True)
    shown = json.loads(cli("status", "st", "--store", store_uri, "--json").output)
    mine = run.status()
    for volatile in ("eta_seconds", "cost", "rate", "elapsed_seconds"):
        shown["totals"].pop(volatile, None), mine["totals"].pop(volatile, None)
    assert _rows(mine) == _rows(shown) and mine["model"] == shown["model"] and mine["paused"] is None
    assert mine["totals"]["states"] == shown["totals"]["states"] == {"DONE": 2}


def _rows(status: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if "per_s" not in k} for row in status["chunks"]]


def test_an_unknown_option_is_a_type_error_naming_the_closest(prompts, store_uri):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'run_nme'; did you mean 'run_name'\?"):
        chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, run_nme="x")
    with pytest.raises(TypeError, match=r"did you mean 'prompt_template'\?"):
        chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, prompt_templat="{{ x }}")
    assert not Path(store_uri).exists() or not any(Path(store_uri).iterdir())


def test_errors_are_the_clis_exceptions(tmp_path, store_uri, prompts):
    with pytest.raises(InputError, match="does not exist"):
        chunkpilot.submit(tmp_path / "missing.jsonl", chunks=2, engine="echo", store=store_uri)
    with pytest.raises(ConfigError):
        chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, run_name="Not A Name")
    with pytest.raises(ConfigError, match="only apply to --backend sky"):
        chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, gpus="L4:1")
    with pytest.raises(ConfigError, match="--max-tokens must be at least 1, got 0"):  # click's range, for the API too
        chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, max_tokens=0)
    with pytest.raises(ConfigError, match="--temperature must be at least 0"):
        chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, temperature=-1)
    with pytest.raises(RunNotFoundError):
        chunkpilot.open_run("nope", store=store_uri)
    with pytest.raises(ConfigError, match="pipeline file"):
        chunkpilot.submit(ROOT / "examples" / "pipeline.yaml", chunks=2, engine="echo", store=store_uri)
    assert issubclass(RunFailedError, ChunkpilotError)


def test_collect_refuses_an_unfinished_run_lazily_and_partial_reads_what_is_there(prompts, store_uri):
    run = chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, run_name="half")
    run.cancel()
    records = run.collect()  # nothing is read before the first record is asked for
    if chunkpilot.open_run("half", store=store_uri).status()["totals"]["states"].get("DONE", 0) < 2:
        with pytest.raises(IncompleteRunError, match="allow-partial"):
            next(iter(records))
    partial = list(run.collect(allow_partial=True))
    assert len(partial) <= 120
    run.wait()
    assert len(list(run.collect())) == 120


def test_wait_raises_run_failed_with_the_reasons(tmp_path, store_uri):
    # Every record fails the same way: the worker's fail-fast stops the chunk for good.
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"custom_id": f"x{i}", "nothing": i} for i in range(40)])
    run = chunkpilot.submit(bad, chunks=1, engine="echo", store=store_uri, run_name="bad")
    with pytest.raises(RunFailedError) as caught:
        run.wait()
    error = caught.value
    assert error.run_id == "bad" and (error.failed or error.over_budget), error
    assert str(error).startswith("run bad: ")


def test_runs_lists_what_the_api_submitted(prompts, store_uri):
    chunkpilot.submit(prompts, chunks=2, engine="echo", store=store_uri, run_name="listed", watch=True)
    [entry] = chunkpilot.runs(store_uri)
    assert entry.spec.run_id == "listed" and entry.state == "done"


def test_the_api_is_typed_and_documented():
    from chunkpilot import api

    for fn in (api.submit, api.open_run, api.runs, api.Run.status, api.Run.wait, api.Run.collect):
        assert fn.__doc__ and fn.__annotations__.get("return"), fn
    assert "return" in textwrap.dedent(api.Run.wait.__doc__).lower() or "raises" in api.Run.wait.__doc__.lower()
