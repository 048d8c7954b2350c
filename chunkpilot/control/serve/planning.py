"""A validated batch becomes a chunkpilot run: the same ``plan_run``/``write_run`` path ``submit`` takes.

The run's name is derived from the batch id (``run_name``), so a server that dies between
writing the run and recording it on the batch finds the run on its next try instead of
planning a second one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from chunkpilot.errors import RunNotFoundError
from chunkpilot.control.runs import open_run
from chunkpilot.control.serve.config import ServedModel
from chunkpilot.control.serve.objects import BATCH_PREFIX, BatchRecord

# A request the engine refuses is one line of the error file, as with OpenAI: no share of
# failed requests stops a batch (the worker's fail-fast and watch's error budget are off).
SERVE_MAX_ERROR_RATE = 1.0


def run_name(batch_id: str) -> str:
    """``batch-<hex>``: the run a batch's id names (a valid run name: lowercase, digits, '-')."""
    return "batch-" + batch_id[len(BATCH_PREFIX):]


def task_of(endpoint: str) -> str:
    return "embed" if endpoint == "/v1/embeddings" else "generate"


def submit_options(batch: BatchRecord, served: ServedModel, input_uri: str, store_uri: str,
                   defaults: Mapping[str, Any]):
    """The SubmitOptions of ``batch``'s run: the server's run options, this batch's input, model and task."""
    from chunkpilot.control.submit import SubmitOptions

    options = dict(defaults)
    if task_of(batch.endpoint) == "embed":  # generation defaults mean nothing to an embedding
        options.pop("max_tokens", None)
        options.pop("temperature", None)
    return SubmitOptions(inputs=(input_uri,), store_uri=store_uri, model=served.target, run_name=run_name(batch.id),
                         task=task_of(batch.endpoint), max_error_rate=SERVE_MAX_ERROR_RATE, **options)


def start_run(batch: BatchRecord, served: ServedModel, input_uri: str, store_uri: str,
              defaults: Mapping[str, Any]) -> str:
    """Plan and write the batch's run (or find the one an earlier try wrote); returns its id.
    Raises ChunkpilotError when the run cannot be planned."""
    from chunkpilot.control.submit import plan_run, write_run

    name = run_name(batch.id)
    try:
        return open_run(store_uri, name).spec.run_id
    except RunNotFoundError:
        pass
    plan = plan_run(submit_options(batch, served, input_uri, store_uri, defaults))
    if served.target is None:  # an engine without weights: its answers carry the served name
        plan = dataclasses.replace(plan, spec=dataclasses.replace(plan.spec, model=served.name))
    write_run(plan, store_uri)
    return name
