"""``python -m worker`` as is, plus one line per engine step: ``<waiting> <running> <all read>``.

The real worker loop and vLLM engine, unchanged; ``VllmEngine.step`` is wrapped to read the
scheduler's own queues after each step (vLLM in-process: ``llm_engine.engine_core.engine_core.
scheduler``), and ``ChunkRun._feed_one`` to note when the chunk's records are all read, so
the benchmark can tell whether the engine ever ran out of waiting work while records remained.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import worker.chunk as chunk  # noqa: E402
import worker.engines.vllm as vllm_engine  # noqa: E402

_out = open(os.environ["BENCH_FEED"], "a", buffering=1)
_state = {"all_read": 0}
_step, _feed = vllm_engine.VllmEngine.step, chunk.ChunkRun._feed_one


def _scheduler(engine):
    return engine._engine.engine_core.engine_core.scheduler


def _stepped(self):
    done = _step(self)
    s = _scheduler(self)
    _out.write(f"{len(s.waiting)} {len(s.running)} {_state['all_read']} {self.batch_size}\n")
    return done


def _fed(self, work):
    more = _feed(self, work)
    if not more:
        _state["all_read"] = 1
    return more


vllm_engine.VllmEngine.step = _stepped
chunk.ChunkRun._feed_one = _fed

if __name__ == "__main__":
    from worker.__main__ import main

    main()
