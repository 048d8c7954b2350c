"""The generated pieces stay true: every error code the source emits is in the registry (and only
those), the ratios plot says what BENCHMARKS.md says, and the troubleshooting messages are ones the
tool prints."""

from __future__ import annotations

import ast
import re

from chunkpilot.error_codes import ERROR_CODES

from .conftest import ROOT, load_docs_module


def test_registry_matches_the_codes_the_source_emits(hooks):
    emitted = hooks.scan_error_codes()
    listed = {(e.scope, e.code) for e in ERROR_CODES}
    assert len(listed) == len(ERROR_CODES), "a code is listed twice in its scope"
    unlisted = sorted(set(emitted) - listed)
    assert not unlisted, (f"emitted but not in chunkpilot/error_codes.py (add what it means and what to do): "
                          f"{unlisted} — in {[sorted(emitted[k]) for k in unlisted]}")
    stale = sorted(listed - set(emitted))
    assert not stale, f"listed in chunkpilot/error_codes.py but emitted nowhere: {stale}"


def test_scanner_sees_each_way_a_code_is_raised(hooks):
    emitted = hooks.scan_error_codes()
    for key in [("record", "invalid_json"),  # error=("…", …)
                ("record", "template_error"),  # RecordError(…, …, "…")
                ("record", "missing_input"),  # code = "…" if … else "…"
                ("record", "not_answered"),  # {"code": "…"}
                ("record", "prompt_too_long"),  # _Rejected("…")
                ("batch-file", "duplicate_custom_id"),  # problem("…")
                ("api", "batch_not_found"),  # not_found("batch", …)
                ("api", "unknown_url")]:  # code="…" if … else None
        assert key in emitted, key


def test_ratio_plot_matches_benchmarks():
    gen = load_docs_module("gen_ratios")
    ratios = gen.parse_ratios((ROOT / "BENCHMARKS.md").read_text(encoding="utf-8"))
    svg = gen.SVG.read_text(encoding="utf-8")
    shown = re.findall(r'data-section="(\d+)">([\d.]+)×<', svg)
    assert shown == [(str(r.section), r.shown) for r in ratios]
    assert svg == gen.render_svg(ratios), "docs/assets/ratios.svg is stale: run python docs/gen_ratios.py"
    # Spot checks against the summary table, read independently.
    assert [r.value for r in ratios if r.section in (1, 13)] == [1.74, 1.34, 3.62]


def _strings_in_source() -> list[str]:
    """Every string literal and f-string of the code, f-string fields as '…'."""
    out = []
    for package in ("chunkpilot", "launcher", "worker"):
        for file in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    out.append(node.value)
                elif isinstance(node, ast.JoinedStr):
                    out.append("".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values))
    return out


def _printed(message: str, strings: list[str]) -> bool:
    pieces = [p for p in message.split("…") if p]
    pattern = ".*?".join(re.escape(p) for p in pieces)
    return any(re.search(pattern, s, re.S) for s in strings)


def test_troubleshooting_quotes_real_messages():
    page = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
    messages = [m for line in re.findall(r"^\*\*Message:\*\* (.*)$", page, re.M) for m in re.findall(r"`([^`]+)`", line)]
    assert len(messages) >= 15
    strings = _strings_in_source()
    missing = [m for m in messages if not _printed(m, strings)]
    assert not missing, f"docs/troubleshooting.md quotes messages the code no longer prints: {missing}"
    assert not _printed("this message is printed nowhere", strings)
