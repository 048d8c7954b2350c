"""The report as one self-contained HTML page: its data as JSON, Chart.js and the page's own
script inlined, so it opens anywhere with no network (a few hundred KB; Chart.js is 205 KB)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from chunkpilot import __version__

HERE = Path(__file__).resolve().parent
CHART_JS = HERE / "vendor" / "chart.umd.min.js"


def render(data: dict[str, Any]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    # Inside <script>, "</" could end the element early: JSON allows "<\/" for it.
    data_json = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return env.get_template("report.html.j2").render(run_id=data["run"]["id"], version=__version__, data_json=data_json,
                                                     chartjs=CHART_JS.read_text(encoding="utf-8"))
