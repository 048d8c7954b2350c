"""``python -m worker --run <store>/<run> --worker w3 [--attempt N]``: one launch of a warm worker.

It claims chunks of the run one after another with one engine, until nothing is left to claim.
Exit codes: 0 nothing left to claim; 75 stopped (preemption, or the store out of reach: retry);
2 configuration error (the engine cannot start: retrying will not help).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from chunkpilot.claims import CLAIM_TTL
from worker.loop import WorkerOptions, run_worker


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", "run_uri", required=True, help="The run's folder in the store: <store>/<run>.")
@click.option("--worker", default=lambda: os.environ.get("CHUNKPILOT_WORKER", "w0"), show_default="$CHUNKPILOT_WORKER or w0",
              help="This worker's id (w0, w1...): where it starts looking for chunks, and whose claims it may take back.")
@click.option(
    "--attempt",
    type=int,
    default=lambda: int(os.environ.get("CHUNKPILOT_ATTEMPT", "1")),
    show_default="$CHUNKPILOT_ATTEMPT or 1",
    help="Which launch of this worker this is (the launcher numbers them).",
)
@click.option("--only", "only", multiple=True, metavar="CHUNK", help="Answer only this chunk (repeatable): for debugging one chunk.")
@click.option("--grace", "grace_seconds", type=float, default=20.0, show_default=True, help="Seconds to finish in-flight requests after SIGTERM.")
def main(run_uri: str, worker: str, attempt: int, only: tuple[str, ...], grace_seconds: float) -> None:
    """Answer chunks of a chunkpilot run with one engine, resuming each from what is already committed."""
    logging.basicConfig(
        level=os.environ.get("CHUNKPILOT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # CHUNKPILOT_CLAIM_TTL: seconds a claim lasts unrenewed (how soon a vanished worker's chunk is taken over).
    os.environ["CHUNKPILOT_WORKER"] = worker  # the engine may read it (echo's slow_worker, in tail tests)
    ttl = float(os.environ.get("CHUNKPILOT_CLAIM_TTL") or CLAIM_TTL)
    # CHUNKPILOT_SPLITS=0: an idle worker exits instead of asking a busy one to split (to measure the tail).
    # CHUNKPILOT_ENGINES / CUDA_VISIBLE_DEVICES: set by ``worker.machine`` for each engine of a several-GPU machine.
    options = WorkerOptions(worker=worker, attempt=attempt, grace_seconds=grace_seconds, claim_ttl=ttl,
                            only=frozenset(only) or None, splits=os.environ.get("CHUNKPILOT_SPLITS", "1") != "0",
                            engines=int(os.environ.get("CHUNKPILOT_ENGINES") or 1),
                            devices=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    sys.exit(run_worker(run_uri.rstrip("/"), options))


if __name__ == "__main__":
    main()
