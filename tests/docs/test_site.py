"""The site builds with --strict (no broken link, no page missing from the nav), and its generated
pages say what the code says."""

from __future__ import annotations

import html
import re

from chunkpilot.error_codes import ERROR_CODES
from chunkpilot.control import skytask

from .conftest import ROOT


def text_of(page) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))


def test_strict_build_has_every_page(site):
    for md in (ROOT / "docs").rglob("*.md"):
        rel = md.relative_to(ROOT / "docs").with_suffix("")
        page = site / ("index.html" if rel.name == "index" else rel / "index.html")
        assert page.is_file(), f"{md} was not built"


def test_report_screenshots_and_ratio_plot_are_shown(site):
    report = (site / "guides" / "cost-and-report" / "index.html").read_text(encoding="utf-8")
    assert 'src="../../report-light.png"' in report and 'src="../../report-dark.png"' in report
    assert (site / "report-light.png").stat().st_size > 10_000
    for page in ("guides/scale", "reference/benchmarks"):
        assert "assets/ratios.svg" in (site / page / "index.html").read_text(encoding="utf-8")
    assert (site / "assets" / "ratios.svg").is_file()


def test_error_code_page_lists_every_code_with_what_to_do(site):
    text = text_of(site / "reference" / "error-codes" / "index.html")
    for entry in ERROR_CODES:
        assert entry.code in text
        assert entry.what_to_do and entry.meaning, entry


def test_template_variables_page_lists_what_the_launcher_sets(site):
    text = text_of(site / "reference" / "template-variables" / "index.html")
    for name in skytask.RESERVED_ENVS + skytask.PASS_THROUGH_ENVS:
        assert name in text
    for template in (ROOT / "task_templates").glob("*.yaml"):
        assert template.stem in text
    assert "<store>/<run>" in text  # a comment's placeholder survives as text


def test_store_layout_page_is_layout_docstring(site):
    text = text_of(site / "reference" / "store-layout" / "index.html")
    for key in ("run.json", "chunks/<chunk>.json", "out/<chunk>/_SUCCESS", "claims/<chunk>.json", "lease.json"):
        assert key in text
