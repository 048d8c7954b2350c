"""Pipelines through the real CLI: local store, local workers, the echo engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from chunkpilot.pipeline.filters import compile_filter
from tests.conftest import read_jsonl, write_jsonl

KEEP = "id % 3 != 0 and faithful in ['yes', 'no']"


def reviews(tmp_path: Path, n: int = 40) -> Path:
    return write_jsonl(tmp_path / "reviews.jsonl", [{"id": i, "body": f"review {i} says it is {'good' if i % 2 else 'bad'}"}
                                                   for i in range(n)])


def pipeline_file(tmp_path: Path, steps: list[dict], name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"input": "reviews.jsonl", "steps": steps}))
    return path


def steps_with_traces(tmp_path: Path, last_prompt: str = "{{ summary }}", **first: object) -> list[dict]:
    def trace(name: str) -> dict:
        return {"trace": str(tmp_path / f"{name}.trace")}

    return [
        {"name": "summarize", "prompt_template": "Summarize: {{ body }}", "output_key": "summary",
         "engine_options": trace("summarize"), **first},
        {"name": "judge", "prompt_template": "{{ body }} / {{ summary }}", "choice": ["yes", "no"],
         "output_key": "faithful", "engine_options": trace("judge")},
        {"name": "keep", "filter": KEEP},
        {"name": "label", "prompt_template": last_prompt, "output_key": "label", "engine_options": trace("label")},
    ]


def traced(tmp_path: Path, name: str) -> int:
    path = tmp_path / f"{name}.trace"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("steps, message", [
    ([{"name": "a", "prompt_templat": "{{ body }}"}], "step a: unknown key 'prompt_templat'; did you mean 'prompt_template'"),
    ([{"name": "a", "prompt_template": "{{ bdy }}"}], "step a reads the field 'bdy', which neither the input nor an earlier "
                                                      "step provides; did you mean 'body'"),
    ([{"name": "a", "input_key": "body"}, {"name": "b", "prompt_template": "{{ a }} {{ nothere }}"}],
     "step b reads the field 'nothere'"),
    ([{"name": "a", "input_key": "body"}, {"name": "f", "filter": "a.strip"}], "step f: filter 'a.strip': attribute access"),
    ([{"name": "a", "input_key": "body"}, {"name": "a", "input_key": "body", "output_key": "x"}], "used by an earlier step"),
])
def test_bad_pipeline_files_fail_at_submit_naming_the_step_and_write_nothing(tmp_path, cli, store_uri, steps, message):
    reviews(tmp_path)
    path = pipeline_file(tmp_path, steps)
    result = cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, expect=1)
    assert message in result.output
    assert not os.path.exists(store_uri) or not os.listdir(store_uri)


def test_dry_run_shows_every_step_with_a_rendered_prompt_and_writes_nothing(tmp_path, cli, store_uri):
    reviews(tmp_path)
    path = pipeline_file(tmp_path, steps_with_traces(tmp_path))
    out = cli("submit", path, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--dry-run").output
    assert "1. summarize: RUN as" in out and "Summarize: review 0 says it is bad" in out
    assert "2. judge: RUN as" in out and "review 0 says it is bad / <summary from step summarize>" in out
    assert "3. keep: filter" in out and "4. label: RUN as" in out
    assert "dry run: nothing written" in out
    assert not os.path.exists(store_uri) or not os.listdir(store_uri)


def test_pipeline_runs_every_step_and_collects_records_in_input_order(tmp_path, cli, store_uri):
    reviews(tmp_path)
    path = pipeline_file(tmp_path, steps_with_traces(tmp_path))
    cli("submit", path, "--chunks", 4, "--engine", "echo", "--store", store_uri, "--run-name", "p1", "--watch")
    assert [traced(tmp_path, s) for s in ("summarize", "judge")] == [40, 40]
    out = tmp_path / "final.jsonl"
    cli("collect", "p1", "--store", store_uri, "-o", out)
    final, dropped = read_jsonl(out), read_jsonl(tmp_path / "final.dropped.jsonl")
    keep = compile_filter(KEEP)
    assert [r["id"] for r in final] == sorted(r["id"] for r in final)  # input order
    assert all(keep.keep(r) for r in final) and not any(keep.keep(d["record"]) for d in dropped)
    assert sorted([r["id"] for r in final] + [d["record"]["id"] for d in dropped]) == list(range(40))
    assert {d["dropped_by"] for d in dropped} == {"keep"}
    assert traced(tmp_path, "label") == len(final)  # the model never saw a dropped record
    for r in final:
        assert r["summary"] and r["faithful"] in ("yes", "no") and r["label"] == " ".join(r["summary"].split()[::-1])[:len(r["label"])]
        assert r["summary_error"] is None and r["faithful_error"] is None and r["label_error"] is None
    lineage = json.loads((tmp_path / "final.lineage.json").read_text())
    assert lineage["fields"]["faithful"]["run"] == "p1-s2" and lineage["fields"]["label"]["step"] == "label"

    # The same records as Parquet: one column per field, typed from the JSON values, rows in order.
    import pyarrow.parquet as pq

    cli("collect", "p1", "--store", store_uri, "-o", tmp_path / "final.parquet")
    table = pq.read_table(tmp_path / "final.parquet")
    assert table.to_pylist() == final and str(table.schema.field("id").type) == "int64"
    assert not list(tmp_path.glob("*.partial")), "no temporary file left"
    assert read_jsonl(tmp_path / "final.dropped.jsonl") == dropped
    refused = cli("collect", "p1", "--store", store_uri, "-o", tmp_path / "final.csv", expect=None)
    assert refused.exit_code != 0 and "a local .jsonl or .parquet file" in refused.output

    step = tmp_path / "judge.jsonl"
    cli("collect", "p1", "--store", store_uri, "-o", step, "--step", "judge")
    judged = read_jsonl(step)
    assert [r["id"] for r in judged] == list(range(40)) and all("label" not in r for r in judged)

    status = json.loads(cli("status", "p1", "--store", store_uri, "--json").output)
    rows = {r["step"]: r for r in status["steps"]}
    assert [r["step"] for r in status["steps"]] == ["summarize", "judge", "keep", "label"]
    assert rows["judge"]["state"] == "done" and rows["judge"]["records"] == 40 and rows["judge"]["errors"] == 0
    assert rows["label"]["passed"] == {"filtered_out": len(dropped)} and rows["label"]["errors"] == 0
    assert rows["keep"]["kind"] == "filter"

    # The report: a row per step, the same counts as status, each model step's run linking to its own page.
    import re

    cli("report", "p1", "--store", store_uri, "-o", tmp_path / "rep.html")
    page = (tmp_path / "rep.html").read_text()
    found = dict(re.findall(r'<tr data-step="(\w+)">(.*?)</tr>', page))
    assert list(found) == ["summarize", "judge", "keep", "label"]
    cells = {step: re.findall(r"<td>(.*?)</td>", row) for step, row in found.items()}
    assert cells["label"][7] == str(len(dropped)) and cells["judge"][5] == "40" and cells["keep"][1] == "filter"
    for step, run in (("summarize", "p1-s1"), ("judge", "p1-s2"), ("label", "p1-s3")):
        assert f'<a href="rep-{step}.html">{run}</a>' in cells[step][2]
        data = (tmp_path / f"rep-{step}.html").read_text().split('id="report-data">', 1)[1].split("</script>", 1)[0]
        assert json.loads(data)["run"]["id"] == run


def test_resubmit_reuses_unchanged_steps_and_reruns_from_the_first_change(tmp_path, cli, store_uri):
    reviews(tmp_path)
    args = ("--chunks", 3, "--engine", "echo", "--store", store_uri, "--watch")
    cli("submit", pipeline_file(tmp_path, steps_with_traces(tmp_path)), *args, "--run-name", "p1")
    before = {s: traced(tmp_path, s) for s in ("summarize", "judge", "label")}

    # Only the last step edited: only its requests are answered again.
    edited = pipeline_file(tmp_path, steps_with_traces(tmp_path, last_prompt="Label: {{ summary }}"), "edited.yaml")
    dry = cli("submit", edited, *args[:-1], "--dry-run").output
    assert "summarize: REUSED from p1-s1" in dry and "judge: REUSED from p1-s2" in dry and "label: RUN as" in dry
    cli("submit", edited, *args, "--run-name", "p2")
    after = {s: traced(tmp_path, s) for s in ("summarize", "judge", "label")}
    assert after["summarize"] == before["summarize"] and after["judge"] == before["judge"]
    assert after["label"] == 2 * before["label"]
    doc = json.loads((Path(store_uri) / "p2" / "pipeline.json").read_text())
    assert [s["run"] for s in doc["steps"] if s["run"]] == ["p1-s1", "p1-s2", "p2-s3"]
    final = read_jsonl_collect(cli, store_uri, tmp_path, "p2")
    assert final and all(r["label"] and r["summary"] for r in final)

    # --from-step judge: judge and everything after rerun, summarize is still reused.
    cli("submit", edited, *args, "--run-name", "p3", "--from-step", "judge")
    again = {s: traced(tmp_path, s) for s in ("summarize", "judge", "label")}
    assert again["summarize"] == before["summarize"] and again["judge"] == 2 * before["judge"]

    # The first step edited: everything reruns.
    first = pipeline_file(tmp_path, steps_with_traces(tmp_path, max_tokens=5), "first.yaml")
    cli("submit", first, *args, "--run-name", "p4")
    last = {s: traced(tmp_path, s) for s in ("summarize", "judge", "label")}
    assert last["summarize"] == 2 * before["summarize"] and last["judge"] == 3 * before["judge"]


def read_jsonl_collect(cli, store_uri: str, tmp_path: Path, run: str) -> list[dict]:
    out = tmp_path / f"{run}.jsonl"
    cli("collect", run, "--store", store_uri, "-o", out)
    return read_jsonl(out)


def test_step_two_finishes_a_chunk_before_step_one_finishes_its_last(tmp_path, cli, store_uri):
    """Streaming: chunk j of step 2 runs as soon as chunk j of step 1 is done."""
    write_jsonl(tmp_path / "reviews.jsonl", [{"id": i, "body": f"review {i}"} for i in range(48)])
    steps = [
        {"name": "slow", "prompt_template": "{{ body }}", "output_key": "a", "workers": 1,
         "engine_options": {"delay": 0.25, "batch": 2}},
        {"name": "fast", "prompt_template": "{{ a }}", "output_key": "b", "workers": 2},
    ]
    path = pipeline_file(tmp_path, steps)
    cli("submit", path, "--chunks", 6, "--engine", "echo", "--store", store_uri, "--run-name", "s", "--watch")
    done = lambda run: sorted(os.path.getmtime(p) for p in Path(store_uri, run, "out").glob("*/_SUCCESS"))  # noqa: E731
    slow, fast = done("s-s1"), done("s-s2")
    assert len(slow) == len(fast) == 6
    assert fast[0] < slow[-1], "step 2 waited for all of step 1"


def test_the_example_pipeline_plans(cli, store_uri):
    example = Path(__file__).resolve().parents[2] / "examples" / "pipeline.yaml"
    out = cli("submit", example, "--chunks", 2, "--engine", "echo", "--store", store_uri, "--dry-run").output
    assert "1. summarize: RUN" in out and "3. keep_faithful: filter" in out and "4. vectors: RUN" in out
