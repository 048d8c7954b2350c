"""``python -m worker`` as is, plus a trace of every answer: ``<unix time> <request id>`` per line.

The real worker loop and engine, unchanged; ``ChunkRun._finish`` (called once per
answered record) is wrapped to append to ``$BENCH_TRACE`` with one unbuffered
write, so a SIGKILL loses nothing of the trace. Used to measure the work a kill
makes the next attempt redo.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import worker.chunk as run  # noqa: E402

_fd = os.open(os.environ["BENCH_TRACE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
_finish = run.ChunkRun._finish


def _traced(self, completion):
    _finish(self, completion)
    os.write(_fd, f"{time.time():.6f} {completion.request_id}\n".encode())


run.ChunkRun._finish = _traced


if __name__ == "__main__":
    from worker.__main__ import main

    main()
