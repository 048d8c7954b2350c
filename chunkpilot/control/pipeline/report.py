"""``launcher report`` of a pipeline: a page with a row per step, linking to each model step's own
report (the page ``launcher report`` writes for a single run) written beside it.

The rows are ``launcher status``'s (``step_rows``): state, whether the step was reused, chunks,
records, errors, records dropped by filters and failed upstream, tokens and cost. The step pages
are ``<stem>-<step>.html`` next to ``<stem>.html``, linked by their file names, so the set can be
moved or served as one folder (or one ``s3://`` prefix).
"""

from __future__ import annotations

import html
import posixpath

from chunkpilot.control.backends import make_backend
from chunkpilot.control.pipeline.status import StepRow, step_rows
from chunkpilot.control.pricing import Price
from chunkpilot.control.report import report_html, write_report
from chunkpilot.control.runs import open_run
from chunkpilot.pipeline.documents import PipelineRun

COLUMNS = ("step", "kind", "run", "state", "chunks", "records", "errors", "dropped", "upstream failed", "tokens", "cost")


def step_page(output: str, step: str) -> str:
    """Where a model step's page goes: beside the pipeline's page, ``<stem>-<step>.html``."""
    stem = output[:-len(".html")] if output.lower().endswith(".html") else output
    return f"{stem}-{step}.html"


def pipeline_page(doc: PipelineRun, rows: list[StepRow], pages: dict[str, str]) -> str:
    """The pipeline's page (self-contained HTML): a row per step; ``pages`` maps a model step to the
    file name of its own page."""
    def cells(r: StepRow) -> list[str]:
        if r.kind == "filter":
            return [r.step, "filter", "", html.escape(r.detail), "", "", "", "", "", "", ""]
        link = f'<a href="{html.escape(pages[r.step])}">{html.escape(r.run)}</a>' if r.step in pages else html.escape(r.run)
        state = r.state + (" (reused)" if r.reused else "")
        return [html.escape(r.step), "model", link, html.escape(state), f"{r.chunks_done}/{r.chunks}", str(r.records),
                str(r.errors), str(r.passed.get("filtered_out", 0)), str(r.passed.get("upstream_error", 0)),
                str(r.prompt_tokens + r.completion_tokens), "" if r.cost is None else f"${r.cost:.4f}"]

    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join(f'<tr data-step="{html.escape(r.step)}">' + "".join(f"<td>{c}</td>" for c in cells(r)) + "</tr>"
                   for r in rows)
    title = html.escape(f"pipeline {doc.run_id}")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + title + "</title><style>"
            "body{font:14px system-ui,sans-serif;margin:2em;color:#1f2328;background:#fff}"
            "@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}a{color:#58a6ff}}"
            "table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #8884;text-align:left}"
            "</style></head><body><h1>" + title + "</h1><p>One row per step; a model step's run links to its own "
            "report.</p><table id=\"steps\"><thead><tr>" + head + "</tr></thead><tbody>" + body +
            "</tbody></table></body></html>")


def write_pipeline_report(store_uri: str, doc: PipelineRun, output: str, price: Price | None = None
                          ) -> list[tuple[str, int]]:
    """Write the pipeline's page to ``output`` and each model step's report beside it; returns
    (path, bytes) of every page written, the pipeline's first."""
    rows = step_rows(store_uri, doc)
    written, pages = [], {}
    for r in rows:
        if r.kind != "model" or not r.run:
            continue
        run = open_run(store_uri, r.run)
        path = step_page(output, r.step)
        page, _ = report_html(run, make_backend(run.spec, store_uri), price)
        written.append((path, write_report(page, path)))
        pages[r.step] = posixpath.basename(path)
    index = pipeline_page(doc, rows, pages)
    return [(output, write_report(index, output)), *written]
