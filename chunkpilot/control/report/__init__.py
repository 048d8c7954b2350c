"""``launcher report``: what a run did and cost, as one self-contained HTML page.

``gather`` reads the store (and polls the backend for a live run), ``model.build`` turns the
facts into the page's data, ``html.render`` writes the page. Works on a finished run and on
one in progress.
"""

from __future__ import annotations

from chunkpilot.errors import OutputError
from chunkpilot.store import split_object_uri
from chunkpilot.store.base import pwrite_all
from chunkpilot.control.backends.base import Backend
from chunkpilot.control.outfile import write_atomically
from chunkpilot.control.pricing import Price
from chunkpilot.control.runs import OpenRun


def report_html(run: OpenRun, backend: Backend | None, price: Price | None = None) -> tuple[str, dict]:
    """The page and its data."""
    from chunkpilot.control.report.gather import gather
    from chunkpilot.control.report.html import render
    from chunkpilot.control.report.model import build

    data = build(gather(run, backend, price))
    return render(data), data


def write_report(html: str, output: str) -> int:
    """Write the page to a local path or ``s3://bucket/key``; returns its size in bytes."""
    body = html.encode("utf-8")
    if output.startswith("s3://"):
        store, key = split_object_uri(output)
        if not key or key.endswith("/"):
            raise OutputError(f"-o {output}: name the object to write, e.g. s3://bucket/reports/run.html")
        store.put(key, body)
        return len(body)
    return write_atomically(output, lambda fd: pwrite_all(fd, body, 0))
