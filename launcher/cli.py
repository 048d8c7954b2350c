"""The ``launcher`` command. Each command parses options, calls the library, renders.

Domain errors (``ChunkpilotError``) become one-line messages here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time

import click
from rich.console import Console
from rich.markup import escape

from chunkpilot import __version__
from chunkpilot.errors import ChunkpilotError
from chunkpilot.spec import DEFAULT_MAX_ERROR_RATE
from chunkpilot.store import default_store_uri
from chunkpilot.control.backends import BACKENDS, make_backend


def _console(stderr: bool) -> Console:
    # Not on a terminal (a pipe, a CI log) lines are never wrapped: a wrapped command cannot be pasted.
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 10_000
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=not stream.isatty())


console = _console(stderr=False)
err = _console(stderr=True)


def handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ChunkpilotError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


store_option = click.option(
    "--store",
    "store_uri",
    default=default_store_uri,
    show_default="$CHUNKPILOT_STORE or ./runs",
    help="Where runs live: a local folder or s3://bucket/prefix (AWS_ENDPOINT_URL for R2/MinIO/GCS).",
)


def _store_arg(store_uri: str) -> str:
    """`` --store X`` when X is not what the command would pick by itself, for hints users paste."""
    return "" if store_uri == default_store_uri() else f" --store {store_uri}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chunkpilot")
def cli() -> None:
    """chunkpilot: offline LLM inference over millions of prompts on cheap, preemptible machines.

    \b
      launcher submit prompts.jsonl --chunks 4 --watch     # plan, launch, wait
      launcher status RUN                                  # per-chunk progress
      launcher watch RUN                                   # relaunch failures until done
      launcher collect RUN -o results.jsonl                # verified merge, input order
    """
    logging.basicConfig(level=os.environ.get("CHUNKPILOT_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")


def _key_values(ctx, param, values: tuple[str, ...]) -> dict:
    """A repeatable KEY=VALUE option as a dict (numbers as numbers for --engine-option)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key] = _number(value) if param.name == "engine_options" else value
    return out


def _number(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _options(*decorators):
    """Several click options as one decorator (a group shared by commands, or kept together)."""

    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


max_error_rate_help = (f"Share of error records past which watch pauses the run and exits 1 (default "
                       f"{DEFAULT_MAX_ERROR_RATE:g}); 1 turns the budget and per-chunk fail-fast off.")

price_help = ("What one job costs an hour, for cost in status and report. Default: SkyPilot's catalog price of "
              "what each sky job got; local runs are priced only with this.")
on_demand_help = "What one job would cost an hour on demand, to compare a spot run with (default: SkyPilot's catalog)."

# The run's settings: each becomes the SubmitOptions field of the same name.
run_options = _options(
    click.option("--chunks", type=click.IntRange(min=1), required=True, help="Number of chunks: the units of work, resume and relaunch."),
    click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker jobs, each keeping one engine and pulling chunk after chunk (1 to --chunks). Default: one per chunk for sky, what this machine can run for local."),
    click.option("--task", type=click.Choice(["generate", "embed"]), default="generate", show_default=True,
                 help="generate: text answers. embed: each record's text becomes a vector (default model all-minilm-l6-v2)."),
    click.option("--truncate", is_flag=True, help="embed: cut inputs longer than the model takes instead of refusing them (prompt_too_long)."),
    click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True),
    click.option("--engine", default="vllm", show_default=True, help="vllm, or echo (no model: plumbing checks)."),
    store_option,
    click.option("--model", default=None, help="Local model folder, s3:// model folder, or hub id[@revision] (pinned to its commit at submit). Default: the bundled SmolLM2-135M-Instruct (local runs only)."),
    click.option("--allow-unpinned", is_flag=True, help="If the hub cannot be reached to pin --model to a commit, run it unpinned (recorded as such) instead of failing."),
    click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True, help="Default max_tokens; records may override."),
    click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Default temperature; records may override."),
    click.option("--run-name", default=None, help="Run id to use (lowercase letters, digits, '-'). Default: run-<time>-<random>."),
    click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Launches per chunk before giving up."),
    click.option("--max-error-rate", type=click.FloatRange(0, 1), default=DEFAULT_MAX_ERROR_RATE, show_default=True, help=max_error_rate_help),
    click.option("--commit-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Commit finished records at least this often."),
    click.option("--commit-records", type=click.IntRange(min=1), default=256, show_default=True, help="...or after this many records."),
    click.option("--engine-option", "engine_options", multiple=True, metavar="KEY=VALUE", callback=_key_values, help="Engine setting, e.g. max_model_len=4096 (repeatable; unknown keys are refused)."),
    click.option("--limit", type=click.IntRange(min=1), default=None, metavar="K", help="Plan only the first K records (a first try of a prompt)."),
    click.option("--sample", type=click.IntRange(min=1), default=None, metavar="K", help="Plan only K records drawn at random (reads every record once at submit; see --seed)."),
    click.option("--seed", type=int, default=0, show_default=True, help="--sample: the seed of the draw (same inputs and seed, same records)."),
    click.option("--split", default=None, metavar="NAME", help="hf://datasets inputs: the split to read (default: the dataset's only split)."),
    click.option("--config", default=None, metavar="NAME", help="hf://datasets inputs: the config (subset) to read (default: the dataset's default)."),
    click.option("--price-per-hour", type=click.FloatRange(min=0), default=None, metavar="USD", help=price_help),
    click.option("--on-demand-price-per-hour", type=click.FloatRange(min=0), default=None, metavar="USD", help=on_demand_help),
)
# How records become prompts and what answers must look like: the run's PromptSpec.
prompt_options = _options(
    click.option("--prompt-template", default=None, metavar="TEXT|@FILE", help="Jinja2 template over each record's fields; the result is the user message (e.g. 'Summarize: {{ title }}\\n{{ body }}')."),
    click.option("--input-key", default=None, metavar="FIELD", help="The field whose text is the user message (the template '{{ FIELD }}')."),
    click.option("--system-prompt", default=None, metavar="TEXT|@FILE", help="A system message before each templated prompt."),
    click.option("--raw-prompt", is_flag=True, help="Send the rendered text as a completion prompt, without the chat template."),
    click.option("--output-key", default="response", show_default=True, help="Field of the answer in `collect --format records` (and <key>_error)."),
    click.option("--id-key", default=None, metavar="FIELD", help="The field holding each record's custom_id (default: custom_id; without one, its position)."),
    click.option("--json-schema", default=None, metavar="FILE", help="Answers must be JSON matching this JSON Schema (constrained decoding, checked)."),
    click.option("--choice", "choices", multiple=True, metavar="TEXT", help="Answers must be one of these (repeatable)."),
    click.option("--regex", default=None, help="Answers must match this regular expression."),
)
# Overrides of the SkyPilot task template: SubmitOptions.backend_options.
sky_options = _options(
    click.option("--template", default=None, help="sky: task template YAML (default task_templates/vllm-spot.yaml)."),
    click.option("--gpus", default=None, help="sky: accelerators, e.g. L4:1 (overrides the template)."),
    click.option("--infra", "--cloud", "infra", default=None, help="sky: infra/cloud, e.g. aws or gcp/us-central1."),
    click.option("--use-spot/--no-use-spot", default=None, help="sky: spot (preemptible) or on-demand machines. Default: the template's choice (vllm-spot: spot)."),
    click.option("--env", "envs", multiple=True, metavar="KEY=VALUE", callback=_key_values, help="sky: extra env for the task (repeatable)."),
    click.option("--secret", "secrets", multiple=True, metavar="NAME", help="sky: pass $NAME to jobs as a SkyPilot secret (repeatable)."),
    click.option("--launch-batch", type=click.IntRange(min=1), default=None, help="sky: at most this many job launches per reconcile cycle (default 16, or $CHUNKPILOT_LAUNCH_BATCH); the rest follow in later cycles."),
    click.option("--image", default=None, metavar="DOCKER_IMAGE", help="sky: run on this docker image (SkyPilot image_id docker:...), e.g. vllm/vllm-openai:v0.32.0: where vLLM is already installed, setup does not install it again."),
    click.option("--pool", default=None, metavar="NAME", help="sky: run the workers as jobs on the SkyPilot pool NAME (`launcher pool up NAME` makes it): setup once per pool worker, workers launched with num_jobs."),
)


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@run_options
@prompt_options
@sky_options
@click.option("--watch", is_flag=True, help="Block until every chunk is done or has given up; exit 0 only if all are done.")
@click.option("--dry-run", is_flag=True, help="Plan and validate, print what would run and an estimate of its cost, write nothing.")
@click.option("--from-step", default=None, metavar="NAME", help="Pipeline files: rerun from this step on, even where an earlier run could be reused.")
@click.option("--tokens-per-second", type=click.FloatRange(min=0, min_open=True), default=None, metavar="N",
              help="--dry-run: tokens one engine makes a second (output tokens; input tokens for --task embed), for the "
                   "cost estimate. Default: the rate measured by an earlier run of the same engine, model, task and "
                   "--gpus in the store.")
@handle_errors
def submit(inputs, watch, dry_run, from_step, tokens_per_second, **given):
    """Plan INPUT... (files, folders, globs, s3:// prefixes, hf://datasets/ORG/NAME) into chunks and launch them.

    \b
    Examples:
      launcher submit examples/prompts.jsonl --chunks 4 --watch
      launcher submit data/ --chunks 8 --engine echo --dry-run        # see the plan, write nothing
      launcher submit s3://bkt/in/ --chunks 400 --backend sky --gpus H100:1 --model Qwen/Qwen2.5-7B-Instruct \\
          --dry-run --tokens-per-second 2500                          # ... and what it will cost
      launcher submit docs.parquet --chunks 8 --task embed --input-key text --watch   # vectors
      launcher submit hf://datasets/org/reviews@main --split test --chunks 8 --input-key text --limit 50
      launcher submit reviews.jsonl --chunks 3 --prompt-template 'Review: {{ body }}' \\
          --json-schema sentiment.schema.json --output-key sentiment --watch
      launcher submit s3://bkt/prompts/ --chunks 100 --backend sky --gpus L4:1 \\
          --model Qwen/Qwen2.5-7B-Instruct --store s3://bkt/runs --secret HF_TOKEN
      launcher submit examples/pipeline.yaml --chunks 4 --watch    # a multi-step pipeline
    """
    from chunkpilot.control.pipeline.plan import load_pipeline_file
    from chunkpilot.control.submit import SubmitOptions, submit_run
    from chunkpilot.control.watch import WatchOptions
    from launcher.render import plan_summary

    if tokens_per_second is not None and not dry_run:
        raise click.UsageError("--tokens-per-second is for --dry-run's cost estimate")
    options = SubmitOptions.from_cli(inputs, given)
    if len(inputs) == 1 and load_pipeline_file(inputs[0]) is not None:
        from launcher.cli_pipeline import submit_pipeline

        if tokens_per_second is not None:
            raise click.UsageError("--tokens-per-second: the cost estimate covers single runs, not pipeline files yet")

        return submit_pipeline(inputs[0], options, watch, dry_run, from_step, console, err)
    if from_step is not None:
        raise click.UsageError("--from-step applies to a pipeline file (a .yaml with 'steps:')")
    if dry_run:
        return _dry_run(options, tokens_per_second)
    run = submit_run(options, on_plan=lambda plan: err.print(plan_summary(plan), markup=False), watch=watch)
    console.print(run.spec.run_id)
    if watch:
        sys.exit(_watch(run, WatchOptions()))
    where = _store_arg(run.store_uri)
    err.print(
        f"launched; follow with `launcher status {run.spec.run_id}{where}`"
        + (f" and drive it with `launcher watch {run.spec.run_id}{where}`" if run.spec.backend == "local" else "")
    )


def _dry_run(options, tokens_per_second) -> None:
    """``submit --dry-run``: the plan, a preview of the prompts, the sky task and the estimate; nothing written."""
    from chunkpilot.control.estimate_facts import estimate_text
    from chunkpilot.control.submit import check_launchable, plan_run, preview
    from launcher.render import dry_run_listing, plan_summary, prompt_preview

    plan = plan_run(options, stage=False)
    spec, store_uri = plan.spec, options.store_uri
    err.print(plan_summary(plan), markup=False)
    sky_text, accelerators, hourly = None, None, None
    sky_plan = check_launchable(plan, store_uri, launching=False)
    if sky_plan is not None:
        from chunkpilot.control.backends.sky import estimate_price, price_lines
        from chunkpilot.control.backends.sky_sdk import sky_version
        from chunkpilot.control.skytask import accelerator_choices
        from launcher.render import sky_dry_run

        sky_text = sky_dry_run(spec, plan.manifests, sky_plan, sky_version(), price_lines(spec, sky_plan.first[0]))
        accelerators, hourly = accelerator_choices(sky_plan.first[0]), estimate_price(spec, sky_plan.first[0])
    console.print(dry_run_listing(spec, plan.manifests), markup=False)
    console.print(prompt_preview(preview(spec, plan.manifests[0])), markup=False)
    console.print(sky_text or "", markup=False)
    console.print(estimate_text(spec, plan.manifests, store_uri, tokens_per_second, accelerators, hourly),
                  markup=False)
    err.print("dry run: nothing written")


def _hb(n: float) -> str:
    from launcher.render import human_bytes

    return human_bytes(n)


def _watch(run, options) -> int:
    """Drive ``run`` to its end with a progress line; the exit code says how it ended."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from chunkpilot.control.watch import outcome
    from chunkpilot.control.watch import watch as watch_loop
    from launcher.render import progress_line, run_summary

    backend = make_backend(run.spec, run.store_uri)
    interactive = err.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=err, disable=not interactive,
    )
    task = progress.add_task(run.spec.run_id, total=len(run.spec.chunks), info="")
    last_line = [""]
    where = _store_arg(run.store_uri)

    def on_cycle(report):
        info = escape(progress_line(report))
        progress.update(task, completed=report.totals["states"].get("DONE", 0), info=info)
        if not interactive and info != last_line[0]:
            err.print(f"{time.strftime('%H:%M:%S')} {info}")
            last_line[0] = info

    def on_resume(marker):
        err.print(f"resuming paused run {run.spec.run_id} ({escape(marker.reason)})")

    try:
        with progress:
            result = watch_loop(run, backend, options, on_cycle, on_resume)
    except KeyboardInterrupt:
        err.print(
            f"\nstopped watching {run.spec.run_id}; its jobs keep running. Continue with "
            f"`launcher watch {run.spec.run_id}{where}`, stop them with `launcher cancel {run.spec.run_id}{where}`"
        )
        return 130
    ended = outcome(result)
    failed, cancelled = ended.failed, ended.cancelled
    for chunk, reason in failed.items():
        err.print(f"[red]chunk {chunk} failed[/]: {escape(reason)}")
    err.print(escape(run_summary(result.report)))
    if result.over_budget:
        err.print(f"[red]error budget exceeded[/]: {escape(result.over_budget)}")
        if result.paused:
            err.print(f"paused the run (its jobs were asked to stop). Look at the error lines with "
                      f"`launcher collect {run.spec.run_id}{where} --allow-partial -o partial.jsonl`; resume with "
                      f"`launcher watch {run.spec.run_id}{where} --max-error-rate R`")
        return 1
    if failed or cancelled:
        err.print(f"[red]{len(failed)} chunk(s) failed, {len(cancelled)} cancelled[/]; see `launcher status {run.spec.run_id}{where}`"
                  + (f"; `launcher watch {run.spec.run_id}{where}` resumes a cancelled run" if cancelled else ""))
        return 1
    err.print(f"[green]all {len(result.decision.states)} chunk(s) done[/]: `launcher collect {run.spec.run_id}{where} "
              f"{collect_target(run.spec)}`")
    return 0


def collect_target(spec) -> str:
    """The output a finished run's hint suggests: the user's own records back when they brought records."""
    if spec.input_format == "parquet":
        return "-o results.parquet"
    if spec.task == "embed":  # vectors: a fixed-size list column beside the records' fields
        return "-o vectors.parquet"
    if spec.prompt.get("template") or spec.prompt.get("input_key"):
        return "-o results.jsonl --format records"
    return "-o results.jsonl"


def _price_override(price_per_hour, on_demand):
    from chunkpilot.control.pricing import Price

    if on_demand is not None and price_per_hour is None:
        raise click.UsageError("--on-demand-price-per-hour is compared with what the run costs: give --price-per-hour too")
    return None if price_per_hour is None else Price(price_per_hour, on_demand, "--price-per-hour")


price_override_options = _options(
    click.option("--price-per-hour", type=click.FloatRange(min=0), default=None, metavar="USD",
                 help="Price every job at this (USD an hour) instead of the run's prices."),
    click.option("--on-demand-price-per-hour", type=click.FloatRange(min=0), default=None, metavar="USD",
                 help="...and compare with this on-demand price."),
)


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@price_override_options
@handle_errors
def status(run_id, store_uri, as_json, price_per_hour, on_demand_price_per_hour):
    """Per-chunk state, records and errors, attempts, preemptions, rate, ETA and cost of RUN.

    Cost: each job's GPU time x its hourly price (the run's --price-per-hour, or SkyPilot's
    catalog price of what the job got), so far and projected; what interruptions threw away;
    what on-demand machines would have cost.

    \b
    Examples:
      launcher status run-20261203-101500-3f2a
      launcher status my-run --store s3://bkt/runs --json | jq .totals.cost
      launcher status my-run --price-per-hour 0.35 --on-demand-price-per-hour 1.01
    """
    price = _price_override(price_per_hour, on_demand_price_per_hour)
    from chunkpilot.control.pipeline.plan import open_pipeline
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.watch import status_document, status_of
    from launcher.render import status_table, workers_table

    doc = open_pipeline(store_uri, run_id)
    if doc is not None:
        from launcher.cli_pipeline import status_command

        return status_command(store_uri, doc, as_json, console)
    run = open_run(store_uri, run_id)
    report = status_of(run, make_backend(run.spec, store_uri), price)
    paused = run.cancel_marker()
    if as_json:
        click.echo(json.dumps(status_document(run, report, paused), indent=1))
        return
    console.print(status_table(report, run.spec))
    if report.workers:
        console.print(workers_table(report))
    if paused is not None:
        console.print(f"[magenta]paused[/]: {escape(paused.reason)}. `launcher watch {run_id}{_store_arg(store_uri)}` resumes it")


@cli.command()
@click.argument("run_id")
@store_option
@click.option("-o", "--output", default=None, help="Where to write the page: a local path or s3://bucket/key (default: <run>-report.html).")
@price_override_options
@handle_errors
def report(run_id, store_uri, output, price_per_hour, on_demand_price_per_hour):
    """Write RUN's report: one self-contained HTML page (opens offline) of what it did and cost.

    Totals (records, errors, tokens, wall and GPU time, cost, cold starts, spot saving), a
    timeline with one row per worker (its launches, engine starts, the chunks it answered one
    after another, interruptions), the workers and chunks tables, throughput over time, error
    codes with example records, and the work each interruption threw away. Works on a run in
    progress.

    \b
    Examples:
      launcher report run-20261203-101500-3f2a -o report.html
      launcher report my-run --store s3://bkt/runs -o s3://bkt/reports/my-run.html
      launcher report my-run --price-per-hour 0.35 -o report.html    # price a local run
      launcher report my-pipeline -o pipe.html      # a row per step; each step's page beside it

    A pipeline's page has a row per step (state, reused, chunks, records, errors, dropped, upstream
    failed, tokens, cost) linking to each model step's own report, written as <stem>-<step>.html.
    """
    from launcher.render import human_bytes
    from chunkpilot.control.pipeline.plan import open_pipeline
    from chunkpilot.control.report import report_html, write_report
    from chunkpilot.control.runs import open_run

    price = _price_override(price_per_hour, on_demand_price_per_hour)
    doc = open_pipeline(store_uri, run_id)
    if doc is not None:
        from chunkpilot.control.pipeline.report import write_pipeline_report

        pages = write_pipeline_report(store_uri, doc, output or f"{run_id}-report.html", price)
        err.print(f"[green]wrote[/] {pages[0][0]}: {human_bytes(pages[0][1])}, a row per step; step pages: "
                  + ", ".join(escape(p) for p, _ in pages[1:]))
        return
    run = open_run(store_uri, run_id)
    html, data = report_html(run, make_backend(run.spec, store_uri), price)
    output = output or f"{run_id}-report.html"
    size = write_report(html, output)
    tl = data["timeline"]
    err.print(f"[green]wrote[/] {output}: {human_bytes(size)}, {len(tl['workers'])} worker rows, "
              f"{len(data['chunks'])} chunks, "
              f"{len(data['interruptions'])} interruption(s), {len(data['errors'])} error code(s)")


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--max-attempts", type=click.IntRange(min=1), default=None, help="Override the run's attempts-per-chunk limit (workers apply it at their next claim).")
@click.option("--max-error-rate", type=click.FloatRange(0, 1), default=None, help="Override the run's error budget (1: none).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None, show_default="$CHUNKPILOT_POLL_SECONDS or 5", help="Seconds between polls.")
@handle_errors
def watch(run_id, store_uri, max_attempts, max_error_rate, interval):
    """Reconcile RUN until every chunk is done: relaunch workers that failed, were preempted or hung.

    A worker whose claim on a chunk is not renewed in time (its lease, a minute) is taken to be
    hung: its chunk goes to another worker and the job is cancelled and relaunched.

    A paused run (`launcher cancel`, or past its error budget) is resumed. Safe to stop
    (Ctrl-C) and start again: all its state is in the store.

    \b
    Examples:
      launcher watch run-20261203-101500-3f2a
      launcher watch my-run --max-attempts 5
      launcher watch my-run --max-error-rate 0.5     # resume a run paused by its error budget
    """
    from chunkpilot.control.pipeline.plan import open_pipeline
    from chunkpilot.control.runs import open_run
    from chunkpilot.control.watch import WatchOptions

    options = WatchOptions(max_attempts=max_attempts, max_error_rate=max_error_rate)
    if interval is not None:
        options = dataclasses.replace(options, interval=interval)
    doc = open_pipeline(store_uri, run_id)
    if doc is not None:
        from launcher.cli_pipeline import watch_command

        sys.exit(watch_command(store_uri, doc, options, err))
    run = open_run(store_uri, run_id)
    sys.exit(_watch(run, options))


@cli.command()
@click.argument("run_id")
@store_option
@click.option("-o", "--output", required=True, help="Where to write: a local path or s3://bucket/key.")
@click.option("--format", "fmt", type=click.Choice(["openai", "records", "parquet"]), default=None,
              help="openai: OpenAI Batch output lines. records: each input record with its answer merged in (JSON Lines). "
                   "parquet: the same as Parquet. Default: parquet for -o *.parquet, records for *.csv/*.tsv, else openai. "
                   "-o *.gz/*.zst/*.bz2/*.xz compresses; -o *.csv/*.tsv writes a table (text as is, other values as JSON).")
@click.option("--output-key", default=None, help="records: the answers' field (default: the run's --output-key, else 'response').")
@click.option("--allow-partial", is_flag=True, help="Merge what is done even if some chunks are not.")
@click.option("--step", default=None, metavar="NAME", help="A pipeline: this step's records (default: the final ones).")
@handle_errors
def collect(run_id, store_uri, output, fmt, output_key, allow_partial, step):
    """Merge RUN's results into one file, in input order, each record once.

    \b
    Examples:
      launcher collect run-20261203-101500-3f2a -o results.jsonl
      launcher collect my-run -o reviews-answered.jsonl --format records   # your records + answers
      launcher collect my-run -o answered.parquet                           # the same, as Parquet
      launcher collect my-run -o answered.csv                               # the same, as CSV
      launcher collect my-run -o results.jsonl.gz                           # compressed (.gz, .zst)
      launcher collect my-run --store s3://bkt/runs -o s3://bkt/results/my-run.jsonl
      launcher collect my-run -o partial.jsonl --allow-partial
    """
    from chunkpilot.control.collect import check_counts, collect_to
    from chunkpilot.control.pipeline.plan import open_pipeline
    from launcher.render import collect_summary
    from chunkpilot.control.runs import open_run

    doc = open_pipeline(store_uri, run_id)
    if doc is not None:
        from launcher.cli_pipeline import collect_command

        return collect_command(store_uri, doc, output, step, allow_partial, err)
    if step is not None:
        raise click.UsageError(f"--step applies to a pipeline; {run_id} is a single run")
    run = open_run(store_uri, run_id)
    report = collect_to(run, output, allow_partial, fmt=fmt, output_key=output_key)
    collect_summary(err, report, output)
    check_counts(report)


@cli.command()
@click.argument("run_id")
@store_option
@handle_errors
def cancel(run_id, store_uri):
    """Pause RUN: stop its jobs and keep watch from relaunching them. Committed results stay.

    `launcher watch RUN` resumes it where it stopped. A finished run (every chunk done, or
    failed for good) is left as it is.

    \b
    Examples:
      launcher cancel run-20261203-101500-3f2a
      launcher watch run-20261203-101500-3f2a        # later: carry on
    """
    from chunkpilot.control.runs import open_run, run_entry
    from chunkpilot.control.watch import pause

    run = open_run(store_uri, run_id)
    entry = run_entry(run)
    if entry.state == "done":
        err.print(f"{run_id} is finished: all {entry.chunks_done} chunk(s) done; nothing to cancel")
        return
    if entry.state == "failed":
        err.print(f"{run_id} is finished: it failed ({escape(_failure(entry)['why'])}) and nothing of it runs; "
                  "nothing to cancel")
        return
    asked = pause(run, make_backend(run.spec, store_uri), "cancelled by `launcher cancel`")
    where = _store_arg(store_uri)
    err.print(f"paused {run_id}: asked {asked} job(s) to stop; committed results stay. "
              f"Resume with `launcher watch {run_id}{where}`")


@cli.command()
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def runs(store_uri, as_json):
    """List the runs in the store, oldest first, with their state.

    \b
    Examples:
      launcher runs
      launcher runs --store s3://bkt/runs --json
    """
    from rich.table import Table

    from chunkpilot.control.runs import RESUBMIT, list_runs

    found = list_runs(store_uri)
    if as_json:
        click.echo(json.dumps([{"run_id": r.spec.run_id, "created_at": r.spec.created_at, "state": r.state,
                                "chunks": r.chunks_total, "chunks_done": r.chunks_done, "engine": r.spec.engine,
                                "model": r.spec.model, "backend": r.spec.backend,
                                "failure": _failure(r) if r.state == "failed" else None} for r in found], indent=1))
        return
    table = Table(title=f"runs in {store_uri}", title_justify="left")
    for col in ("run", "created", "state", "chunks", "input", "engine:model", "backend"):
        table.add_column(col, no_wrap=col in ("run", "created"), overflow="fold")
    for r in found:
        s = r.spec
        state = r.state if r.state != "failed" else f"[red]failed[/] ({escape(_failure(r)['why'])})"
        table.add_row(s.run_id, s.created_at, state, f"{r.chunks_done}/{r.chunks_total}", _hb(sum(p.size for p in s.inputs)),
                      f"{s.engine}:{s.model}", s.backend)
    console.print(table)
    for r in found:
        if r.state == "failed":
            failure = _failure(r)
            then = f"resume it with `{failure['resume_command']}`" if failure["resume_command"] else RESUBMIT
            console.print(f"{r.spec.run_id} failed: {escape(failure['reason'])}; {then}")


def _failure(entry) -> dict:
    """Why a failed run stopped, for ``runs``: the fail-fast code (if that is what stopped it), the
    reason, and the command that resumes it when one does (``chunkpilot.control.runs``)."""
    from chunkpilot.control.runs import fail_fast_code, why_stopped

    code = fail_fast_code(entry.stopped)
    if entry.stopped:
        why = f"fail-fast: {code}" if code else "stopped: configuration error"
        reason = f"{len(entry.stopped)} chunk(s) stopped ({why_stopped(entry.stopped)})"
    else:
        why = "out of attempts"
        used = max(entry.exhausted.values(), default=0)
        reason = f"{len(entry.exhausted)} chunk(s) ran out of attempts (up to {used} each)"
    return {"fail_fast_code": code, "why": why, "reason": reason, "resume_command": entry.resume_command}


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on. Anything but loopback needs --api-key-env.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key-env", multiple=True, metavar="VAR", help="An environment variable holding a bearer key clients must send (repeatable: each variable is a tenant that sees only its own files and batches).")
@click.option("--model", "models", multiple=True, metavar="NAME=TARGET", help="A model name the batch lines may use and the weights it runs: a hub id[@revision], a model folder, the bundled model, or 'echo' with --engine echo (repeatable). Pinned at start.")
@click.option("--max-upload-bytes", type=click.IntRange(min=1), default=8 << 30, show_default=True, help="Largest file POST /v1/files takes.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.05), default=lambda: float(os.environ.get("CHUNKPILOT_POLL_SECONDS", "2")), show_default="$CHUNKPILOT_POLL_SECONDS or 2", help="Seconds between passes over the batches in flight.")
@click.option("--chunks", type=click.IntRange(min=1), default=4, show_default=True, help="Chunks per batch (empty ones dropped: a small batch gets fewer).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Worker jobs per batch (default: what this machine can run for local, one per chunk for sky).")
@click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True)
@click.option("--engine", default="vllm", show_default=True, help="vllm, or echo (no model: plumbing checks).")
@store_option
@click.option("--allow-unpinned", is_flag=True, help="Serve a hub model whose commit cannot be looked up, unpinned.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True, help="max_tokens of a request that gives none.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="temperature of a request that gives none.")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Launches per chunk before giving up.")
@click.option("--commit-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
@click.option("--commit-records", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--engine-option", "engine_options", multiple=True, metavar="KEY=VALUE", callback=_key_values, help="Engine setting (repeatable).")
@click.option("--price-per-hour", type=click.FloatRange(min=0), default=None, metavar="USD", help=price_help)
@click.option("--on-demand-price-per-hour", type=click.FloatRange(min=0), default=None, metavar="USD", help=on_demand_help)
@sky_options
@handle_errors
def serve(**given):
    """Serve OpenAI's Files and Batches API: every batch becomes a chunkpilot run.

    Point an unmodified `openai` client at it (base_url=http://HOST:PORT/v1): files.create
    (purpose=batch), batches.create / retrieve / list / cancel, files.content. Each batch's run
    shows in `launcher runs` / `status` / `report` as batch-<id>. All state is in --store: stop
    the server and start it again, and every batch carries on.

    \b
    Examples:
      launcher serve --engine echo --model tiny=echo                 # try the API, no model
      OPENAI_API_KEY=... launcher serve --api-key-env OPENAI_API_KEY \\
          --model smol=smollm2-135m-instruct --chunks 4
      launcher serve --host 0.0.0.0 --api-key-env TEAM_A --api-key-env TEAM_B --backend sky \\
          --gpus L4:1 --model qwen=Qwen/Qwen2.5-7B-Instruct --store s3://bkt/serve
    """
    from chunkpilot.control.serve.server import Server, config_from_options

    config = config_from_options(given, os.environ)
    server = Server(config)
    tenants = f"{len(config.keys)} key(s)" if config.keys else "no key (loopback only)"
    err.print(f"serving {', '.join(sorted(config.models))} on http://{config.host}:{config.port}/v1 "
              f"({tenants}; store {config.store_uri})", markup=False)
    server.serve_forever()


def _register_groups() -> None:
    from launcher.cli_pool import register

    register(cli, handle_errors, console, err)


_register_groups()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
