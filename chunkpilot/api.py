"""chunkpilot's Python API: submit a run, follow it, wait for it, read its records — from a
notebook, a script or an orchestrator's task, without shelling out to ``launcher``.

    import chunkpilot

    run = chunkpilot.submit("prompts.jsonl", chunks=4, engine="echo", store="runs")
    run.wait(progress=lambda s: print(s["totals"]["states"]))
    for record in run.collect():          # OpenAI Batch output lines, in input order
        ...
    run.collect("results.jsonl")          # or a file, exactly as `launcher collect -o` writes it

The ``launcher`` command line is a thin layer over the same calls (``chunkpilot.control``):
``submit`` plans, writes and starts a run as ``launcher submit`` does, ``Run.wait`` drives it as
``launcher watch`` does, ``Run.status`` is ``launcher status --json``, ``Run.collect`` is
``launcher collect``. Keyword options are the CLI's, in snake_case (``--run-name`` is
``run_name=``, ``--store`` is ``store=``). Failures raise the exceptions the CLI turns into its
one-line messages: ``chunkpilot.errors.ChunkpilotError`` and its subclasses.

Pipeline files (a ``.yaml`` with ``steps:``) are the CLI's for now: ``submit`` refuses one with a
ConfigError that says so, and ``open_run`` refuses a pipeline's run id the same way.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Mapping, Sequence

from chunkpilot.errors import ConfigError, RunFailedError
from chunkpilot.spec import DEFAULT_MAX_ERROR_RATE, RunSpec
from chunkpilot.store import default_store_uri

if TYPE_CHECKING:
    from typing import Never

    from chunkpilot.control.collect import CollectReport
    from chunkpilot.control.runs import OpenRun, RunEntry
    from chunkpilot.control.watch import WatchOutcome

__all__ = ["Run", "Status", "submit", "open_run", "runs"]

# ``launcher status --json``: per-chunk rows (``chunks``), totals (states, records, errors, cost, ETA), workers,
# why the run is paused (or null) and its model. A plain dict: the JSON document is the contract.
Status = dict[str, Any]
PathLike = str | os.PathLike


@dataclass(frozen=True)
class Run:
    """A run in a store. Cheap to make and to keep: every method reads the store afresh, so two
    ``Run`` objects (or a ``Run`` and the CLI) on the same run see the same thing.

    ``run_id`` and ``store`` name it; ``spec`` is its ``run.json`` (engine, model, chunks, prompt,
    options), fixed at submit.
    """

    run_id: str
    store: str
    spec: RunSpec = field(repr=False)
    _open: OpenRun = field(repr=False, compare=False)

    @classmethod
    def _of(cls, run: OpenRun) -> "Run":
        return cls(run.spec.run_id, run.store_uri, run.spec, run)

    def status(self) -> Status:
        """The run's state now, as ``launcher status RUN --json`` prints it: ``chunks`` (one
        row per chunk: state, records done, errors, attempts), ``totals`` (``states`` counts, records,
        errors, rate, ETA, ``cost``, ``finished``), ``workers``, ``paused`` and ``model``."""
        from chunkpilot.control.backends import make_backend
        from chunkpilot.control.watch import status_document, status_of

        report = status_of(self._open, make_backend(self.spec, self.store))
        return status_document(self._open, report, self._open.cancel_marker())

    def wait(self, progress: Callable[[Status], None] | None = None, *, interval: float | None = None,
             max_attempts: int | None = None, max_error_rate: float | None = None) -> "Run":
        """Drive the run to its end, as ``launcher watch`` does: relaunch workers that failed, were
        preempted or hung, until every chunk is done; resume a paused run. Returns this run.

        ``progress`` is called once a cycle (every ``interval`` seconds: $CHUNKPILOT_POLL_SECONDS
        or 5) with the status (``status()``'s document, ``paused`` null). ``max_attempts`` and
        ``max_error_rate`` override the run's, as ``watch``'s options do.

        Raises RunFailedError (its ``failed``, ``cancelled`` and ``over_budget`` say why) when a
        chunk failed for good, was cancelled, or the error budget ran out; LeaseHeldError when
        another watcher drives the run. Interrupted (KeyboardInterrupt), the run's jobs keep
        running and a later ``wait`` carries on.
        """
        import dataclasses

        from chunkpilot.control.backends import make_backend
        from chunkpilot.control.watch import WatchOptions, outcome, status_document, watch

        options = WatchOptions(max_attempts=max_attempts, max_error_rate=max_error_rate)
        if interval is not None:
            options = dataclasses.replace(options, interval=interval)
        on_cycle = None if progress is None else (lambda report: progress(status_document(self._open, report, None)))
        result = watch(self._open, make_backend(self.spec, self.store), options, on_cycle)
        ended = outcome(result)
        if not ended.ok:
            raise _failure(self.run_id, ended)
        return self

    def collect(self, path: PathLike | None = None, *, format: Literal["openai", "records", "parquet"] | None = None,
                output_key: str | None = None, allow_partial: bool = False) -> "Iterator[dict[str, Any]] | CollectReport":
        """The run's results in input order, each record once.

        With ``path`` (a local path or ``s3://bucket/key``): written as ``launcher collect -o PATH``
        writes it (same function, same format rules: ``*.parquet`` is Parquet, ``*.csv``/``*.tsv`` a
        table, ``*.gz``/``*.zst`` compressed, else OpenAI Batch lines), whole or not at all;
        returns the CollectReport (records, errors, duplicates, bytes).

        Without: an iterator of dicts, streamed (one part in memory at a time), that are the lines
        the same file would hold — ``format`` ``openai`` (default: OpenAI Batch output lines) or
        ``records`` (each input record with its answer under ``output_key``). The iterator checks
        what ``collect`` checks, lazily: the first ``next`` raises IncompleteRunError if a chunk is
        not done (unless ``allow_partial``) and InputError if an input changed since submit.
        """
        from chunkpilot.control.collect import check_counts, collect_to, collected_records

        if path is None:
            return collected_records(self._open, allow_partial, fmt=format, output_key=output_key)
        report = collect_to(self._open, os.fspath(path), allow_partial, fmt=format, output_key=output_key)
        check_counts(report)
        return report

    def records(self, *, format: Literal["openai", "records"] | None = None, output_key: str | None = None,
                allow_partial: bool = False) -> Iterator[dict[str, Any]]:
        """``collect()`` without a path, typed as the iterator it is."""
        from chunkpilot.control.collect import collected_records

        return collected_records(self._open, allow_partial, fmt=format, output_key=output_key)

    def cancel(self) -> int:
        """Pause the run, as ``launcher cancel`` does: its jobs are asked to stop and ``wait`` (or
        ``launcher watch``) resumes it; committed results stay. A finished run is left as it is.
        Returns how many jobs were asked to stop."""
        from chunkpilot.control.backends import make_backend
        from chunkpilot.control.runs import run_entry
        from chunkpilot.control.watch import pause

        if run_entry(self._open).finished:
            return 0
        return pause(self._open, make_backend(self.spec, self.store), "cancelled from the Python API")

    def report(self, path: PathLike | None = None) -> str:
        """Write the run's HTML report (``launcher report``) to ``path`` (default
        ``<run_id>-report.html``; a local path or ``s3://bucket/key``); returns where it went."""
        from chunkpilot.control.backends import make_backend
        from chunkpilot.control.report import report_html, write_report

        output = os.fspath(path) if path is not None else f"{self.run_id}-report.html"
        html, _ = report_html(self._open, make_backend(self.spec, self.store), None)
        write_report(html, output)
        return output


def submit(
    inputs: PathLike | Sequence[PathLike],
    chunks: int,
    *,
    store: PathLike | None = None,
    backend: Literal["local", "sky"] = "local",
    engine: str = "vllm",
    model: str | None = None,
    task: Literal["generate", "embed"] = "generate",
    workers: int | None = None,
    truncate: bool = False,
    allow_unpinned: bool = False,
    max_tokens: int = 256,
    temperature: float = 0.0,
    run_name: str | None = None,
    max_attempts: int = 3,
    max_error_rate: float = DEFAULT_MAX_ERROR_RATE,
    commit_seconds: float = 5.0,
    commit_records: int = 256,
    engine_options: Mapping[str, Any] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    split: str | None = None,
    config: str | None = None,
    price_per_hour: float | None = None,
    on_demand_price_per_hour: float | None = None,
    prompt_template: str | None = None,
    input_key: str | None = None,
    system_prompt: str | None = None,
    raw_prompt: bool = False,
    output_key: str = "response",
    id_key: str | None = None,
    json_schema: PathLike | None = None,
    choices: Sequence[str] = (),
    regex: str | None = None,
    template: PathLike | None = None,
    gpus: str | None = None,
    infra: str | None = None,
    use_spot: bool | None = None,
    envs: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    launch_batch: int | None = None,
    image: str | None = None,
    pool: str | None = None,
    watch: bool = False,
    **unknown: Never,
) -> Run:
    """Plan ``inputs`` into ``chunks`` chunks, write the run to ``store`` and start it, as
    ``launcher submit`` does (the same function, ``chunkpilot.control.submit.submit_run``).

    ``inputs``: a file, folder, glob, ``s3://`` prefix or ``hf://datasets/ORG/NAME``, or a list of
    them. Every other option is ``launcher submit``'s, in snake_case and with its default:
    ``--engine-option K=V`` is ``engine_options={K: V}``, ``--choice`` is ``choices=[...]``,
    ``--env`` is ``envs={...}``, ``--secret`` is ``secrets=[...]``; ``store`` defaults to
    $CHUNKPILOT_STORE or ./runs. The sky options (``template``, ``gpus``, ``infra``, ``use_spot``,
    ``envs``, ``secrets``, ``launch_batch``, ``image``, ``pool``) apply to ``backend="sky"`` only.

    Returns the Run once its jobs are launched (``watch=False``: drive it with ``Run.wait()``), or
    once it has finished (``watch=True``: ``wait()`` included, raising what it raises). Every
    check — inputs, options, engine, model, store — raises a ChunkpilotError before anything is
    written; an unknown keyword raises TypeError naming the closest option.
    """
    if unknown:
        raise TypeError(_unknown_message("submit", unknown, _SUBMIT_KEYWORDS))
    from chunkpilot.control.pipeline.plan import load_pipeline_file
    from chunkpilot.control.submit import SubmitOptions, submit_run

    paths = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(i) for i in inputs]
    if len(paths) == 1 and load_pipeline_file(paths[0]) is not None:
        raise ConfigError(f"{paths[0]} is a pipeline file: the Python API submits single runs for now; "
                          f"run it with `launcher submit {paths[0]} --chunks {chunks}`")
    given = dict(
        chunks=chunks, store_uri=_store(store), backend=backend, engine=engine, model=model, task=task,
        workers=workers, truncate=truncate, allow_unpinned=allow_unpinned, max_tokens=max_tokens,
        temperature=temperature, run_name=run_name, max_attempts=max_attempts, max_error_rate=max_error_rate,
        commit_seconds=commit_seconds, commit_records=commit_records, engine_options=dict(engine_options or {}),
        limit=limit, sample=sample, seed=seed, split=split, config=config, price_per_hour=price_per_hour,
        on_demand_price_per_hour=on_demand_price_per_hour, prompt_template=prompt_template, input_key=input_key,
        system_prompt=system_prompt, raw_prompt=raw_prompt, output_key=output_key, id_key=id_key,
        json_schema=None if json_schema is None else os.fspath(json_schema), choices=tuple(choices), regex=regex,
        template=None if template is None else os.fspath(template), gpus=gpus, infra=infra, use_spot=use_spot,
        envs=dict(envs or {}), secrets=tuple(secrets), launch_batch=launch_batch, image=image, pool=pool,
    )
    run = Run._of(submit_run(SubmitOptions.from_cli(tuple(paths), given), watch=watch))
    return run.wait() if watch else run


def open_run(run_id: str, store: PathLike | None = None) -> Run:
    """The run ``run_id`` in ``store`` ($CHUNKPILOT_STORE or ./runs). RunNotFoundError if there is
    none; ConfigError for a pipeline's run id (the CLI's, for now)."""
    from chunkpilot.control.pipeline.plan import open_pipeline
    from chunkpilot.control.runs import open_run as open_control_run

    store_uri = _store(store)
    if open_pipeline(store_uri, run_id) is not None:
        raise ConfigError(f"{run_id} is a pipeline: follow it with `launcher status|watch|collect {run_id}`")
    return Run._of(open_control_run(store_uri, run_id))


def runs(store: PathLike | None = None) -> list[RunEntry]:
    """The runs in ``store``, oldest first, as ``launcher runs`` lists them: each entry has ``spec``,
    ``state`` (incomplete, paused, done, failed), ``chunks_done`` and ``chunks_total``;
    ``open_run(entry.spec.run_id, store)`` opens one."""
    from chunkpilot.control.runs import list_runs

    return list_runs(_store(store))


def _store(store: PathLike | None) -> str:
    return default_store_uri() if store is None else os.fspath(store)


def _failure(run_id: str, ended: WatchOutcome) -> RunFailedError:
    """The RunFailedError of a watch that did not finish the run, its message one line."""
    if ended.over_budget:
        then = " (the run is paused; wait(max_error_rate=R) resumes it)" if ended.paused else ""
        message = f"run {run_id}: error budget exceeded: {ended.over_budget}{then}"
    else:
        shown = "; ".join(f"chunk {c}: {r}" for c, r in list(ended.failed.items())[:3])
        more = "" if len(ended.failed) <= 3 else f"; and {len(ended.failed) - 3} more"
        message = (f"run {run_id}: {len(ended.failed)} chunk(s) failed, {len(ended.cancelled)} cancelled"
                   + (f" ({shown}{more})" if shown else ""))
    return RunFailedError(message, run_id, ended.failed, ended.cancelled, ended.over_budget, ended.paused)


_SUBMIT_KEYWORDS = tuple(n for n in submit.__code__.co_varnames[: submit.__code__.co_argcount
                                                                  + submit.__code__.co_kwonlyargcount])


def _unknown_message(function: str, unknown: Mapping[str, Any], valid: Sequence[str]) -> str:
    name = sorted(unknown)[0]
    close = difflib.get_close_matches(name.replace("-", "_").lstrip("_"), valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid options: {', '.join(sorted(valid))}"
    return f"{function}() got an unexpected keyword argument {name!r}{hint}"
