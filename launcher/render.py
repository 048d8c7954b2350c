"""Turning reports into tables and lines for people (the CLI's only job besides parsing options)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from chunkpilot.spec import ChunkManifest, RunSpec
from chunkpilot.control.collect import CollectReport

if TYPE_CHECKING:  # not imported for `collect`, whose start-up is part of its benchmarked time
    from rich.table import Table

    from chunkpilot.control.backends.sky import SkyPlan
    from chunkpilot.control.status import StatusReport

_STATE_STYLE = {"DONE": "green", "RUNNING": "cyan", "PENDING": "dim", "RETRYING": "yellow", "FAILED": "red bold", "CANCELLED": "magenta"}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_units(n: float, unit: str) -> str:
    """``12.0 KB`` for bytes, ``1,200 rows`` for anything else."""
    return human_bytes(n) if unit == "bytes" else f"{int(n):,} {unit}"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _codes(codes: dict[str, int] | None) -> str:
    from chunkpilot.control.status import top_codes

    return top_codes(codes or {})


def status_table(report: StatusReport, spec: RunSpec) -> Table:
    from rich.table import Table

    t = Table(title=f"run {report.run_id} · {spec.engine}:{spec.model} ({model_lineage(spec)}) · backend {spec.backend}",
              title_justify="left")
    for col, justify in (("chunk", "left"), ("state", "left"), ("records", "right"), ("errors", "right"),
                         ("progress", "right"), ("attempts", "right"), ("worker", "left"), ("rec/s", "right"),
                         ("tok/s", "right"), ("ETA", "right"), ("note", "left")):
        t.add_column(col, justify=justify)
    for r in report.rows:
        pct = 100.0 * r.done / r.total if r.total else 100.0
        note = escape("; ".join(x for x in (r.phase, _codes(r.error_codes), r.reason) if x))
        t.add_row(
            r.chunk,
            f"[{_STATE_STYLE.get(r.state, '')}]{r.state}[/]",
            str(r.records_done),
            f"[red]{r.errors}[/]" if r.errors else "0",
            f"{pct:5.1f}%",
            str(r.attempts),
            r.worker or "-",
            f"{r.records_per_s:.1f}" if r.records_per_s else "-",
            f"{r.tokens_per_s:.0f}" if r.tokens_per_s else "-",
            human_seconds(r.eta_seconds),
            note,
        )
    t.caption = escape("\n".join(x for x in (run_summary(report), cost_line(report.totals.get("cost"))) if x))
    t.caption_justify = "left"
    return t


def workers_table(report: StatusReport) -> Table:
    """A row per worker: its latest job, state, engines started, chunks answered, cold start, and the
    remainders it handed over to idle workers / took from busy ones (``chunkpilot.splits``)."""
    from rich.table import Table

    t = Table(title="workers", title_justify="left")
    for col, justify in (("worker", "left"), ("job", "left"), ("state", "left"), ("launches", "right"),
                         ("engine starts", "right"), ("chunks done", "right"), ("holds", "left"),
                         ("first answer", "right"), ("in flight", "right"), ("preempted", "right"),
                         ("splits given/taken", "right")):
        t.add_column(col, justify=justify)
    for w in report.workers:
        t.add_row(w.worker, w.name, escape(w.state), str(w.launches), str(w.engine_starts), str(w.chunks_done),
                  w.chunk or "-", human_seconds(w.first_answer_seconds), str(w.max_in_flight or "-"), str(w.preemptions),
                  f"{w.splits_given}/{w.splits_taken}")
    return t


def model_lineage(spec: RunSpec) -> str:
    """``revision 3f2a9c…`` — or, for a run that could not be pinned, a warning that says so."""
    from chunkpilot.model import UNPINNED

    if spec.model_revision.startswith(UNPINNED):
        return f"UNPINNED: whatever {spec.model_revision.removeprefix(UNPINNED)!r} is when each chunk starts"
    return f"revision {spec.model_revision}"


def run_summary(report: StatusReport) -> str:
    """One line: chunks by state, records and errors (top codes), rates, elapsed, ETA, attempts."""
    tot = report.totals
    pct = 100.0 * tot["done"] / tot["total"] if tot["total"] else 100.0
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(tot["states"].items()))
    errors = f"{tot['errors']} errors" + (f" ({_codes(tot['error_codes'])})" if tot["error_codes"] else "")
    rate = "average" if tot["finished"] else f"last {human_seconds(tot['rate_window_seconds'])}"
    eta = "" if tot["finished"] else f" · ETA {human_seconds(tot['eta_seconds'])}"
    return (
        f"{tot['chunks']} chunks ({states}) · {tot['records_done']} records, {tot['ok']} ok, {errors} · {pct:.1f}% of "
        f"{human_units(tot['total'], report.unit)} · {tot['records_per_s']:.1f} rec/s, {tot['tokens_per_s']:.0f} tok/s ({rate}) · "
        f"elapsed {human_seconds(tot['elapsed_seconds'])}{eta} · {tot['attempts']} attempts · {tot['preemptions']} preemptions"
    )


def money(x: float | None) -> str:
    if x is None:
        return "?"
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}".rstrip("0").rstrip(".") if x else "$0"


def cost_line(cost: dict | None) -> str:
    """``cost $1.20 so far (GPU 3h12m; --price-per-hour) · projected $4.10 · lost to 2 preemptions: 130
    records, 4m10s, $0.05 · on demand $3.90 (saved $2.70, 69%)`` — or why there is no cost."""
    if not cost:
        return ""
    gpu = human_seconds(cost["gpu_seconds"])
    sources = "; ".join(cost["sources"])
    if cost["so_far"] is None:
        return f"cost: not known (GPU time {gpu}; {sources or 'no jobs yet'})"
    unpriced = f"; {cost['unpriced_attempts']} job(s) not priced yet" if cost["unpriced_attempts"] else ""
    parts = [f"cost {money(cost['so_far'])} so far (GPU time {gpu}; {sources}{unpriced})"]
    if cost["projected"] is not None and cost["projected"] != cost["so_far"]:
        parts.append(f"projected {money(cost['projected'])} at {money(cost['per_hour_now'])}/h now")
    if cost.get("cold_seconds"):
        parts.append(f"cold starts {human_seconds(cost['cold_seconds'])} of GPU time, {money(cost['cold_cost'])} "
                     "(launch to first answer)")
    if cost["interruptions"]:
        parts.append(f"lost to {cost['interruptions']} interruption(s): {cost['lost_records']} records answered again, "
                     f"{human_seconds(cost['lost_seconds'])} of GPU time, {money(cost['lost_cost'])}")
    if cost["on_demand"] is not None:
        share = f", {100 * cost['saving'] / cost['on_demand']:.0f}%" if cost["on_demand"] else ""
        verb = "saved" if cost["saving"] >= 0 else "spent an extra"
        parts.append(f"on demand {money(cost['on_demand'])} ({verb} {money(abs(cost['saving']))}{share})")
    return " · ".join(parts)


def progress_line(report: StatusReport) -> str:
    """The watch line: records, errors, rates, ETA, chunk states (engines starting)."""
    tot = report.totals
    errors = f" · {tot['errors']} errors" + (f" ({_codes(tot['error_codes'])})" if tot["error_codes"] else "") if tot["errors"] else ""
    eta = f" · ETA {human_seconds(tot['eta_seconds'])}" if tot["eta_seconds"] is not None and not tot["finished"] else ""
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(tot["states"].items()))
    starting = f" ({tot['starting_engine']} starting engine)" if tot["starting_engine"] else ""
    return (f"{tot['records_done']} rec{errors} · {tot['records_per_s']:.1f} rec/s · {tot['tokens_per_s']:.0f} tok/s · "
            f"{human_units(tot['done'], report.unit)}/{human_units(tot['total'], report.unit)}{eta} · {states}{starting}")


def plan_summary(plan) -> str:
    """What ``submit`` planned, in a line or a few: inputs, chunks, what planning read, what it skipped."""
    spec = plan.spec
    lines = [
        f"planned {spec.run_id}: {len(spec.inputs)} input(s), {human_bytes(sum(p.size for p in spec.inputs))}, "
        f"{len(plan.manifests)} chunk(s) (read {human_bytes(plan.probe_bytes)} to check and split them) · "
        f"{spec.engine}:{spec.model} ({model_lineage(spec)})" + f" · {spec.workers} worker(s), one engine each"
    ]
    if plan.skipped:
        shown = ", ".join(plan.skipped[:5]) + (f" and {len(plan.skipped) - 5} more" if len(plan.skipped) > 5 else "")
        from chunkpilot.formats import described_suffixes

        lines.append(f"skipped {len(plan.skipped)} file(s) that are not {described_suffixes()}: {shown}")
    if plan.hidden:
        shown = ", ".join(plan.hidden[:5]) + (f" and {len(plan.hidden) - 5} more" if len(plan.hidden) > 5 else "")
        lines.append(f"skipped {len(plan.hidden)} hidden file(s) (names starting with '.' or '_'; name one directly "
                     f"to include it): {shown}")
    if spec.subset:
        what = (f"the first {spec.subset['limit']} record(s)" if "limit" in spec.subset
                else f"{spec.subset['sample']} record(s) drawn at random with seed {spec.subset['seed']}")
        lines.append(f"planned only {what} ({human_units(sum(m.size for m in plan.manifests), spec.unit)})")
    lines += [f"note: {note}" for note in getattr(plan, "notes", ())]
    lines += [f"warning: {warning}" for warning in plan.warnings]
    return "\n".join(lines)


def prompt_preview(requests: list) -> str:
    """The first records as the model will see them: messages (or the prompt) and any constraint."""
    lines = [f"first {len(requests)} record(s) as the model will see them:"]
    for r in requests:
        if not hasattr(r, "kind"):
            lines.append(f"  {r.custom_id}: error {r.code}: {r.message}")
            continue
        lines.append(f"  {r.custom_id} ({r.kind}" + (f", answer {_constraint(r.constraint)}" if r.constraint else "") + "):")
        for m in r.messages or ():
            lines.append(f"    [{m['role']}] {_indent(m['content'])}")
        if r.prompt is not None:
            lines.append(f"    {_indent(r.prompt)}")
    return "\n".join(lines)


def _constraint(constraint: dict) -> str:
    kind, value = next(iter(constraint.items()))
    return {"json": "JSON per the schema", "json_object": "a JSON object", "choice": f"one of {value}",
            "regex": f"matching {value!r}"}.get(kind, kind)


def _indent(text: str, width: int = 300) -> str:
    text = text if len(text) <= width else text[:width] + "…"
    return text.replace("\n", "\n      ")


def input_description(input_format: str, pin) -> str:
    """An input as the dry run names it: format, compression, size (and what staging made of it), and
    the commit a hub input is pinned to."""
    pinned = f", commit {pin.revision}" if getattr(pin, "revision", None) else ""
    if not pin.compression:
        return f"{input_format}, uncompressed, {human_bytes(pin.size)}{pinned}"
    text = f"{input_format}, {pin.compression}, {human_bytes(pin.size)} ({human_bytes(pin.length)} decompressed)"
    if pin.staged:
        written = all(uri for _, _, uri in pin.staged)
        text += f", staged as {len(pin.staged)} zstd pieces" + ("" if written else " (not written: dry run)")
    else:
        text += ", read whole"
    return text + pinned


def dry_run_listing(spec: RunSpec, manifests: list[ChunkManifest]) -> str:
    """Every input file with its size, then every chunk with its byte ranges (``file:[start,end)``)."""
    lines = [f"inputs ({len(spec.inputs)}):"]
    lines += [f"  {i}: {pin.uri}  {input_description(spec.input_format, pin)}" for i, pin in enumerate(spec.inputs)]
    lines.append(f"chunks ({len(manifests)}):")
    for m in manifests:
        ranges = ", ".join(f"{r.source}:[{r.start},{r.end})" for r in m.ranges)
        lines.append(f"  {m.chunk}: {human_units(m.size, m.unit)}  {ranges}")
    return "\n".join(lines)


def collect_summary(console: Console, report: CollectReport, path: str) -> None:
    console.print(
        f"[green]wrote[/] {path}: {report.records} records ({report.ok} ok, {report.errors} errors), "
        f"{report.skipped_blank} blank input lines skipped, {human_bytes(report.bytes)}"
    )
    if report.duplicates_dropped:
        console.print(f"dropped {report.duplicates_dropped} duplicate result(s) committed twice (resumed or zombie attempts)")
    if report.duplicate_custom_ids:
        ex = ", ".join(report.duplicate_examples)
        console.print(
            f"[yellow]warning[/]: {report.duplicate_custom_ids} custom_id(s) appear on more than one input record"
            + (f" (e.g. {ex})" if ex else "") + "; each record was answered separately"
        )
    if report.incomplete_chunks:
        console.print(f"[yellow]partial[/]: {len(report.incomplete_chunks)} chunk(s) incomplete: {', '.join(report.incomplete_chunks[:10])}")
    if report.removed_inputs:
        console.print(f"note: {len(report.removed_inputs)} input(s) removed since the run (e.g. {report.removed_inputs[0]}): "
                      "these OpenAI Batch lines need none; --format records and Parquet do")
    if report.mismatched_chunks:
        console.print(f"[red]mismatch[/]: output count differs from the done marker in chunk(s) {', '.join(report.mismatched_chunks)}")


def sky_dry_run(spec: RunSpec, manifests: list[ChunkManifest], plan: SkyPlan, sky_version: str,
                prices: list[str] = ()) -> str:
    """What ``submit --backend sky`` would launch: the plan, then the first worker's task YAML, secrets redacted."""
    import json

    import yaml

    from chunkpilot.control.skytask import BlockDumper, accelerator_choices, display_config, redact, worker_lines

    cfg, envs, secrets = plan.first
    resources = cfg.get("resources") or {}
    accelerators = ", ".join(f"{n}:{c:g}" for n, c in accelerator_choices(cfg).items()) or "none (CPU only)"
    recovery = resources.get("job_recovery")
    lines = [
        f"SkyPilot plan for run {spec.run_id}: {len(plan.names)} managed job(s), one per worker, "
        f"pulling {len(manifests)} chunk(s)",
        f"  template     {plan.tasks.template.source}",
        f"  model        {spec.engine}:{spec.model} (revision {spec.model_revision})",
        f"  use_spot     {str(resources.get('use_spot', False)).lower()}",
        f"  gpus         {accelerators}",
        f"  infra        {resources.get('infra') or resources.get('cloud') or 'any enabled cloud (see `sky check`)'}",
        f"  recovery     {json.dumps(recovery) if recovery is not None else 'SkyPilot default'}",
        *[f"  {'price' if i == 0 else '':<12} {line}" for i, line in enumerate(prices)],
        f"  chunkpilot   {spec.chunkpilot_version}, shipped as a wheel built at launch in {plan.dist}",
        "  secrets      " + (", ".join(f"{n} (from ${n})" for n in secrets.passed) or "none")
        + (f"; not set here, left out: {', '.join(secrets.left_out)}" if secrets.left_out else ""),
        "  jobs",
    ]
    lines += [f"    {name}" for name in plan.names]  # a worker takes whichever chunk is free: no chunk is its own
    if plan.pool_config is not None:
        pool = plan.tasks.options.pool
        lines.append(f"  pool         {pool}: the workers run as jobs on its warm workers (setup ran there once; "
                     f"`launcher pool up {pool}` makes it, `launcher pool status {pool}` shows it)")
        lines += [f"  launch       sky.jobs.launch(task, name={cfg['name']!r}, pool={pool!r}, num_jobs={n})"
                  if i == 0 else f"               then num_jobs={n} (at most {plan.launch_batch} per cycle)"
                  for i, n in enumerate(plan.requests or [])]
    elif len(plan.names) > plan.launch_batch:
        lines.append(f"  launch       {plan.launch_batch} jobs per reconcile cycle (--launch-batch), "
                     f"{-(-len(plan.names) // plan.launch_batch)} cycles for {len(plan.names)} workers")
    raw, expanded = worker_lines(cfg, envs)
    if raw:
        lines.append(f"  worker       {raw[0]}")
        values = dict(envs)
        if "worker.machine" in raw[0] and "CHUNKPILOT_WORKER" in values:
            per, first = values.get("CHUNKPILOT_GPUS_PER_ENGINE", "1"), values["CHUNKPILOT_WORKER"]
            lines.append(f"               one worker process per {per} GPU(s) of the machine (SKYPILOT_NUM_GPUS_PER_NODE "
                         f"// {per}), each with its own CUDA_VISIBLE_DEVICES and id ({first}, {first}e1, ...)")
            lines.append(f'               first job: python -m worker --run "{values.get("CHUNKPILOT_RUN_URI", "")}" '
                         f'--worker "{first}" --attempt "{values.get("CHUNKPILOT_ATTEMPT", "1")}"')
        else:
            lines.append(f"               first job: {expanded[0]}")
    lines += [f"  warning      {note}" for note in plan.notes]
    lines.append(f"--- rendered task of the first worker ({plan.names[0]}), secrets redacted ---")
    lines.append(yaml.dump(display_config(cfg, envs, secrets), Dumper=BlockDumper, sort_keys=False,
                           default_flow_style=False, width=10_000).rstrip())
    lines.append("---")
    if plan.pool_config is not None:
        lines.append(f"--- the pool {plan.tasks.options.pool!r} as `launcher pool up` applies it (setup once per pool worker) ---")
        lines.append(yaml.dump(display_config(plan.pool_config, [], secrets), Dumper=BlockDumper, sort_keys=False,
                               default_flow_style=False, width=10_000).rstrip())
        lines.append("---")
    lines.append(f"validated {len(plan.names)} task(s) offline with SkyPilot {sky_version} "
                 f"({plan.shapes} distinct); dry run: nothing launched, nothing written")
    return redact("\n".join(lines), secrets)
