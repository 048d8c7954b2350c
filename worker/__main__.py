"""``python -m worker --chunk <store>/<run>/chunks/<chunk>.json [--attempt N]``

Exit codes: 0 chunk done; 75 stopped (preemption or store outage: retry);
2 configuration error (retrying will not help).
"""

from __future__ import annotations

import logging
import os
import sys

import click

from worker.run import WorkerOptions, run_chunk


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--chunk", "chunk_uri", required=True, help="URI of the chunk manifest: <store>/<run>/chunks/<chunk>.json")
@click.option(
    "--attempt",
    type=int,
    default=lambda: int(os.environ.get("CHUNKPILOT_ATTEMPT", "0")),
    show_default="$CHUNKPILOT_ATTEMPT or 0",
    help="Attempt number; names this process's parts so concurrent attempts never collide.",
)
@click.option("--grace", "grace_seconds", type=float, default=20.0, show_default=True, help="Seconds to finish in-flight requests after SIGTERM.")
def main(chunk_uri: str, attempt: int, grace_seconds: float) -> None:
    """Run one chunk of a chunkpilot run, resuming from what is already committed."""
    logging.basicConfig(
        level=os.environ.get("CHUNKPILOT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sys.exit(run_chunk(chunk_uri, WorkerOptions(attempt=attempt, grace_seconds=grace_seconds)))


if __name__ == "__main__":
    main()
