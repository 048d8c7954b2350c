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

from launcher import __version__
from launcher.backends import BACKENDS, make_backend
from launcher.errors import ChunkpilotError, IncompleteRunError
from launcher.store import default_store_uri

console = Console(stderr=False, highlight=False)
err = Console(stderr=True, highlight=False)


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


def _parse_kv(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=what)
        out[key] = value
    return out


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--chunks", type=click.IntRange(min=1), required=True, help="Number of chunks (one job each).")
@click.option("--use-spot/--no-use-spot", default=None, help="sky: spot (preemptible) or on-demand machines. Default: the template's choice.")
@click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True)
@click.option("--engine", default="vllm", show_default=True, help="vllm, or echo (no model: plumbing checks).")
@store_option
@click.option("--model", default=None, help="Local model folder or hub id[@revision]. Default: the bundled SmolLM2-135M-Instruct.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True, help="Default max_tokens; records may override.")
@click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Default temperature; records may override.")
@click.option("--run-name", default=None, help="Run id to use (lowercase letters, digits, '-'). Default: run-<time>-<random>.")
@click.option("--parallel", type=click.IntRange(min=0), default=None, help="Max concurrent jobs (default 1 local, unlimited sky; 0 = unlimited).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True, help="Launches per chunk before giving up.")
@click.option("--commit-seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Commit finished records at least this often.")
@click.option("--commit-records", type=click.IntRange(min=1), default=256, show_default=True, help="...or after this many records.")
@click.option("--engine-option", "engine_options", multiple=True, metavar="KEY=VALUE", help="Engine setting, e.g. max_model_len=4096 (repeatable).")
@click.option("--template", default=None, help="sky: task template YAML (default task_templates/vllm-spot.yaml).")
@click.option("--gpus", default=None, help="sky: accelerators, e.g. L4:1 (overrides the template).")
@click.option("--infra", "--cloud", "infra", default=None, help="sky: infra/cloud, e.g. aws or gcp/us-central1.")
@click.option("--env", "envs", multiple=True, metavar="KEY=VALUE", help="sky: extra env for the task (repeatable).")
@click.option("--secret", "secrets", multiple=True, metavar="NAME", help="sky: pass $NAME to jobs as a SkyPilot secret (repeatable).")
@click.option("--watch", is_flag=True, help="Block until every chunk is done or has given up; exit 0 only if all are done.")
@click.option("--dry-run", is_flag=True, help="Plan and validate, print what would run, write nothing.")
@handle_errors
def submit(inputs, chunks, use_spot, backend, engine, store_uri, model, max_tokens, temperature, run_name, parallel,
           max_attempts, commit_seconds, commit_records, engine_options, template, gpus, infra, envs, secrets, watch, dry_run):
    """Plan INPUT... (JSONL files, folders, globs, s3:// prefixes) into chunks and launch them.

    \b
    Examples:
      launcher submit examples/prompts.jsonl --chunks 4 --watch
      launcher submit s3://bkt/prompts/ --chunks 100 --backend sky --gpus L4:1 \\
          --model Qwen/Qwen2.5-7B-Instruct --store s3://bkt/runs --secret HF_TOKEN
    """
    from launcher.submit import SubmitOptions, plan_run, write_run

    options = SubmitOptions(
        inputs=tuple(inputs), chunks=chunks, store_uri=store_uri, engine=engine, model=model, backend=backend,
        use_spot=use_spot, max_tokens=max_tokens, temperature=temperature, run_name=run_name, parallel=parallel,
        max_attempts=max_attempts, template=template, commit_seconds=commit_seconds, commit_records=commit_records,
        engine_options={k: _number(v) for k, v in _parse_kv(engine_options, "--engine-option").items()},
        backend_options=_backend_options(backend, template, gpus, infra, envs, secrets, use_spot),
    )
    plan = plan_run(options)
    spec = plan.spec
    total = sum(p.size for p in spec.inputs)
    err.print(
        f"planned [bold]{spec.run_id}[/]: {len(spec.inputs)} input(s), {_hb(total)}, {len(plan.manifests)} chunk(s) "
        f"(read {_hb(plan.probe_bytes)} to align them) · {spec.engine}:{spec.model}"
    )
    if backend == "sky":
        from launcher.backends.sky import dry_run_report, validate_run

        validate_run(spec, plan.manifests, store_uri, launching=not dry_run)
        if dry_run:
            console.print(dry_run_report(spec, plan.manifests, store_uri), soft_wrap=True)
            return
    if dry_run:
        for m in plan.manifests:
            ranges = ", ".join(f"{r.source}:[{r.start},{r.end})" for r in m.ranges)
            console.print(f"  chunk {m.chunk}: {_hb(m.bytes)}  {ranges}")
        err.print("dry run: nothing written")
        return
    write_run(plan, store_uri)
    console.print(spec.run_id)
    from launcher.runs import open_run
    from launcher.watch import WatchOptions, reconcile_once

    run = open_run(store_uri, spec.run_id)
    if watch:
        sys.exit(_watch(run, WatchOptions()))
    reconcile_once(run, make_backend(spec, store_uri), WatchOptions(), set())
    err.print(
        f"launched; follow with `launcher status {spec.run_id}`"
        + (f" and drive it with `launcher watch {spec.run_id}`" if backend == "local" else "")
        + (f" (store {store_uri})" if store_uri != "./runs" else "")
    )


def _number(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _backend_options(backend, template, gpus, infra, envs, secrets, use_spot) -> dict:
    if backend != "sky":
        used = [n for n, v in (("--template", template), ("--gpus", gpus), ("--infra", infra), ("--env", envs), ("--secret", secrets)) if v]
        if used:
            raise click.UsageError(f"{', '.join(used)} only apply to --backend sky")
        return {}
    return {
        "template": template,
        "gpus": gpus,
        "infra": infra,
        "envs": _parse_kv(envs, "--env"),
        "secrets": list(secrets),  # names only: values are read from the environment at launch
        "use_spot": use_spot,
    }


def _hb(n: float) -> str:
    from launcher.render import human_bytes

    return human_bytes(n)


def _watch(run, options) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from launcher.reconcile import ChunkState
    from launcher.render import human_seconds
    from launcher.status import summarize
    from launcher.watch import watch as watch_loop

    backend = make_backend(run.spec, run.store_uri)
    total = sum(c.bytes for c in run.spec.chunks)
    interactive = console.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(), console=err, disable=not interactive,
    )
    task = progress.add_task(run.spec.run_id, total=len(run.spec.chunks), info="")
    last_line = [""]

    def on_cycle(decision, observed):
        report = summarize(run.spec, observed, decision)
        t = report.totals
        eta = f" · ETA {human_seconds(t['eta_seconds'])}" if t["eta_seconds"] else ""
        info = (f"{t['records_done']} rec · {_hb(t['bytes_done'])}/{_hb(total)} · {t['records_per_s']:.1f} rec/s{eta} · "
                + ", ".join(f"{n} {s.lower()}" for s, n in sorted(t["states"].items())))
        progress.update(task, completed=t["states"].get("DONE", 0), info=info)
        if not interactive and info != last_line[0]:
            err.print(f"{time.strftime('%H:%M:%S')} {info}")
            last_line[0] = info

    with progress:
        decision = watch_loop(run, backend, options, on_cycle)
    failed = {c: decision.reasons.get(c, "") for c, s in decision.states.items() if s is ChunkState.FAILED}
    cancelled = [c for c, s in decision.states.items() if s is ChunkState.CANCELLED]
    for chunk, reason in failed.items():
        err.print(f"[red]chunk {chunk} failed[/]: {reason}")
    if failed or cancelled:
        err.print(f"[red]{len(failed)} chunk(s) failed, {len(cancelled)} cancelled[/]; see `launcher status {run.spec.run_id}`")
        return 1
    err.print(f"[green]all {len(decision.states)} chunk(s) done[/]: `launcher collect {run.spec.run_id} -o results.jsonl`")
    return 0


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def status(run_id, store_uri, as_json):
    """Per-chunk state, records done, attempts, preemptions, rate and ETA of RUN."""
    from launcher.observe import observe
    from launcher.reconcile import decide
    from launcher.render import status_table
    from launcher.runs import open_run
    from launcher.status import summarize
    from launcher.watch import WatchOptions, policy_for

    run = open_run(store_uri, run_id)
    observed = observe(run.run_store, run.spec, make_backend(run.spec, store_uri))
    decision = decide([o.view() for o in observed.values()], policy_for(run, WatchOptions()), time.time())
    report = summarize(run.spec, observed, decision)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        console.print(status_table(report, run.spec))


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--max-attempts", type=click.IntRange(min=1), default=None, help="Override the run's launches-per-chunk limit.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=None, show_default="$CHUNKPILOT_POLL_SECONDS or 5", help="Seconds between polls.")
@click.option("--stuck-after", type=click.FloatRange(min=0), default=0, show_default="never",
              help="Cancel and relaunch a running job whose heartbeat has not moved for this many seconds.")
@handle_errors
def watch(run_id, store_uri, max_attempts, interval, stuck_after):
    """Reconcile RUN until every chunk is done: relaunch what failed, was preempted or got stuck."""
    from launcher.runs import open_run
    from launcher.watch import WatchOptions

    run = open_run(store_uri, run_id)
    options = WatchOptions(max_attempts=max_attempts, stuck_seconds=stuck_after)
    if interval is not None:
        options = dataclasses.replace(options, interval=interval)
    sys.exit(_watch(run, options))


@cli.command()
@click.argument("run_id")
@store_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True), help="Where to write the merged JSONL.")
@click.option("--allow-partial", is_flag=True, help="Merge what is done even if some chunks are not.")
@handle_errors
def collect(run_id, store_uri, output, allow_partial):
    """Merge RUN's results into one OpenAI-Batch JSONL, in input order, each record once."""
    from launcher.collect import collect as collect_run
    from launcher.render import collect_summary
    from launcher.runs import open_run

    run = open_run(store_uri, run_id)
    report = collect_run(run, output, allow_partial)
    collect_summary(err, report, output)
    if report.mismatched_chunks:
        raise IncompleteRunError("output counts do not match the done markers; the output may be incomplete")


@cli.command()
@click.argument("run_id")
@store_option
@handle_errors
def cancel(run_id, store_uri):
    """Cancel RUN: stop its jobs and keep watch from relaunching them. Committed results stay."""
    from launcher.observe import list_attempts
    from launcher.names import job_name
    from launcher.runs import open_run

    run = open_run(store_uri, run_id)
    run.run_store.put("CANCELLED", b"cancelled by launcher cancel\n")
    names = [job_name(run_id, c, a) for c, (a, _) in list_attempts(run.run_store).items()]
    make_backend(run.spec, store_uri).cancel(run_id, names)
    err.print(f"cancelled {run_id}: asked {len(names)} job(s) to stop")


@cli.command()
@store_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def runs(store_uri, as_json):
    """List the runs in the store."""
    from rich.table import Table

    from launcher.runs import list_runs

    specs = list_runs(store_uri)
    if as_json:
        click.echo(json.dumps([{"run_id": s.run_id, "created_at": s.created_at, "chunks": len(s.chunks),
                                "engine": s.engine, "model": s.model, "backend": s.backend} for s in specs], indent=1))
        return
    table = Table(title=f"runs in {store_uri}", title_justify="left")
    for col in ("run", "created", "chunks", "input", "engine:model", "backend"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.run_id, s.created_at, str(len(s.chunks)), _hb(sum(p.size for p in s.inputs)), f"{s.engine}:{s.model}", s.backend)
    console.print(table)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
