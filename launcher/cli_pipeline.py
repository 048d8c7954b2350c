"""The ``launcher`` commands on a pipeline: what ``submit``, ``status``, ``watch`` and ``collect``
do when given a pipeline file or a pipeline's run id. Thin: parse, call the library, render."""

from __future__ import annotations

import json
import sys

from chunkpilot.pipeline.documents import PipelineRun
from chunkpilot.control.pipeline.plan import PipelinePlan, plan_pipeline, write_pipeline
from chunkpilot.control.submit import SubmitOptions


def dry_run_text(plan: PipelinePlan) -> str:
    """Every step: its run (new or reused, and why), its key, and a prompt rendered from the first
    record (earlier steps' answers shown as placeholders); filters with their expression."""
    from chunkpilot.formats import get_format
    from chunkpilot.prompts import PromptSpec
    from chunkpilot.requests import request_from_record

    spec0 = plan.base.spec
    fmt = get_format(spec0.input_format)
    first = next((r.fields for r in fmt.records(spec0.inputs, plan.base.manifests[0]) if r.fields is not None), {})
    fields = dict(first or {})
    lines = [f"pipeline {plan.run_id}: {len(plan.base.manifests)} chunk(s), {len(plan.pipeline.steps)} step(s)"]
    planned = {p.step.name: p for p in plan.steps}
    for step in plan.pipeline.steps:
        if step.is_filter:
            lines.append(f"  {step.index}. {step.name}: filter {step.filter!r} (no model; dropped records are kept apart)")
            continue
        p = planned[step.name]
        verdict = f"REUSED from {p.run_id}" if p.reused else f"RUN as {p.run_id}"
        lines.append(f"  {step.index}. {step.name}: {verdict} — {p.reason or 'new'}")
        lines.append(f"     key {p.key[:16]}  engine {p.spec.engine}:{p.spec.model}  -> {step.output_key}")
        try:
            request = request_from_record((0, 0), fields, p.spec.sampling, PromptSpec.from_dict(p.spec.prompt))
            if hasattr(request, "kind"):
                text = request.messages or request.prompt or request.inputs
                lines.append(f"     prompt: {json.dumps(text, ensure_ascii=False)[:300]}")
            else:
                lines.append(f"     prompt: (the first record cannot be rendered: {request.message})")
        except Exception as exc:  # noqa: BLE001 - a preview only
            lines.append(f"     prompt: (not rendered: {exc})")
        fields[step.output_key or ""] = f"<{step.output_key} from step {step.name}>"
        fields[f"{step.output_key}_error"] = None
    return "\n".join(lines)


def submit_pipeline(path: str, options: SubmitOptions, watch: bool, dry_run: bool, from_step: str | None,
                    out, err) -> None:
    plan = plan_pipeline(path, options, from_step=from_step, stage=not dry_run)
    out.print(dry_run_text(plan), markup=False) if dry_run else err.print(dry_run_text(plan), markup=False)
    if dry_run:
        err.print("dry run: nothing written")
        return
    write_pipeline(plan, options.store_uri)
    out.print(plan.run_id)
    if watch:
        sys.exit(watch_command(options.store_uri, plan.doc, None, err))
    from chunkpilot.control.backends import make_backend
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.watch import WatchOptions, reconcile_once

    for step in plan.steps:
        if not step.reused:
            run = open_run(options.store_uri, step.run_id)
            reconcile_once(run, make_backend(run.spec, options.store_uri), WatchOptions(), set())
    err.print(f"launched; drive it with `launcher watch {plan.run_id}` and follow with `launcher status {plan.run_id}`")


def watch_command(store_uri: str, doc: PipelineRun, options, err) -> int:
    from chunkpilot.control.pipeline.watch import watch_pipeline
    from chunkpilot.control.watch import WatchOptions

    last = [""]

    def on_cycle(reports) -> None:
        line = "  ".join(f"{name} {r.totals['states'].get('DONE', 0)}/{r.totals['chunks']}" for name, r in reports.items())
        if line != last[0]:
            err.print(line, markup=False)
            last[0] = line

    result = watch_pipeline(store_uri, doc, options or WatchOptions(), on_cycle)
    if result.over_budget:
        err.print(f"error budget exceeded: {result.over_budget}", markup=False)
        return 1
    if result.failed_step:
        err.print(f"step {result.failed_step} has failed chunks; see `launcher status {doc.run_id}`", markup=False)
        return 1
    err.print(f"all {len(doc.model_steps)} step(s) done: `launcher collect {doc.run_id} -o results.jsonl`", markup=False)
    return 0


def status_command(store_uri: str, doc: PipelineRun, as_json: bool, out) -> None:
    from rich.table import Table

    from chunkpilot.control.pipeline.status import step_rows

    rows = step_rows(store_uri, doc)
    if as_json:
        out.print(json.dumps({"pipeline": doc.run_id, "steps": [r.to_dict() for r in rows]}, indent=1), markup=False)
        return
    table = Table(title=f"pipeline {doc.run_id}", title_justify="left")
    for col in ("step", "run", "state", "chunks", "records", "errors", "dropped", "upstream failed", "tokens", "cost"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r.kind == "filter":
            table.add_row(r.step, "", "filter", "", "", "", "", "", "", "")
            continue
        table.add_row(r.step, r.run, r.state + (" (reused)" if r.reused else ""), f"{r.chunks_done}/{r.chunks}",
                      str(r.records), str(r.errors), str(r.passed.get("filtered_out", 0)),
                      str(r.passed.get("upstream_error", 0)), str(r.prompt_tokens + r.completion_tokens),
                      "" if r.cost is None else f"${r.cost:.4f}")
    out.print(table)


def collect_command(store_uri: str, doc: PipelineRun, output: str, step: str | None, allow_partial: bool, err) -> None:
    from chunkpilot.control.pipeline.collect import collect_pipeline

    report = collect_pipeline(store_uri, doc, output, step, allow_partial)
    dropped = sum(report.dropped.values())
    by = ", ".join(f"{n} by {name}" for name, n in sorted(report.dropped.items()))
    err.print(f"wrote {output}: {report.records} record(s), {report.failed} with an error; {dropped} dropped"
              + (f" ({by}) -> {report.dropped_path}" if dropped else "") + f"; lineage -> {report.lineage_path}",
              markup=False)
