"""``python -m vllm.entrypoints.openai.run_batch`` as is, plus one timing: how long its batch took.

The peer's own code path, unchanged: the same ``parse_args`` and ``main``; only
``run_batch`` (everything after the engine has started: read the file, submit every
request, wait for all, write the output) is wrapped to record its wall time into
``$BENCH_TIMING`` as JSON, so tokens/s can exclude engine start-up for every contender.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

STARTED = time.monotonic()

from vllm.entrypoints.launchers import run_batch as peer  # noqa: E402

_original = peer.run_batch


async def _timed(engine_client, args) -> None:
    began = time.monotonic()
    await _original(engine_client, args)
    ended = time.monotonic()
    with open(os.environ["BENCH_TIMING"], "w") as f:
        json.dump({"gen_s": ended - began, "startup_s": began - STARTED}, f)


peer.run_batch = _timed

if __name__ == "__main__":
    asyncio.run(peer.main(peer.parse_args()))
