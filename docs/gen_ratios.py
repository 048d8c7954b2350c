"""Write docs/assets/ratios.svg: BENCHMARKS.md's main ratios as a bar chart.

The numbers are parsed from the summary table at the top of BENCHMARKS.md (one row per section,
``| # | what | target | result | met? |``), so the plot says what that table says;
tests/docs/test_ratios.py checks that the committed SVG still does. Run it after editing
BENCHMARKS.md::

    .venv/bin/python docs/gen_ratios.py
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SVG = ROOT / "docs" / "assets" / "ratios.svg"


@dataclass(frozen=True)
class Ratio:
    section: int
    label: str
    value: float
    better: str  # "higher" or "lower"
    shown: str  # as BENCHMARKS.md writes it ("0.70")


# (section, label, pattern in that row's result cell whose first group is the ratio, better)
WANTED = (
    (1, "worker tok/s vs vllm run-batch (vLLM CPU)", r"\*\*([\d.]+)× run-batch\*\*", "higher"),
    (4, "collect speed vs cat, 1M records", r"\*\*([\d.]+)× / [\d.]+× / [\d.]+× `cat`\*\*", "higher"),
    (4, "collect speed vs cat, 8M records", r"\*\*[\d.]+× / [\d.]+× / ([\d.]+)× `cat`\*\*", "higher"),
    (7, "Parquet collect vs pyarrow read+write, 1M rows", r"collect \*\*([\d.]+)× / [\d.]+×\*\*", "higher"),
    (8, "embeddings texts/s vs vllm run-batch", r"\*\*([\d.]+)×\*\* run-batch", "higher"),
    (11, "quick-start wall time vs vllm run-batch", r"quick start \*\*([\d.]+)×\*\* run-batch", "lower"),
    (11, "16 chunks vs 2 chunks on 2 workers, wall time", r"16 chunks \*\*([\d.]+)×\*\* 2 chunks", "lower"),
    (13, "tail: one worker 5× slower, wall time vs none slow", r"^\*\*([\d.]+)×\*\*", "lower"),
    (13, "the same without splits", r"without splits ([\d.]+)×", "lower"),
)


def summary_rows(text: str) -> dict[int, str]:
    """``{section: result cell}`` from the summary table (the first table whose header starts ``| # |``)."""
    rows: dict[int, str] = {}
    start = text.index("| # | what |")
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0].isdigit() and len(cells) >= 4:
            rows[int(cells[0])] = cells[3]
    return rows


def parse_ratios(text: str) -> list[Ratio]:
    rows = summary_rows(text)
    out = []
    for section, label, pattern, better in WANTED:
        cell = rows.get(section)
        m = re.search(pattern, cell or "")
        if not m:
            raise ValueError(f"BENCHMARKS.md §{section}: no {pattern!r} in the summary row's result {cell!r}; "
                             "update docs/gen_ratios.py's WANTED")
        out.append(Ratio(section, label, float(m.group(1)), better, m.group(1)))
    return out


def render_svg(ratios: list[Ratio]) -> str:
    width, left, bar_h, gap, top = 760, 330, 22, 10, 40
    scale = (width - left - 70) / max(4.0, max(r.value for r in ratios))
    height = top + len(ratios) * (bar_h + gap) + 30
    one = left + scale * 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           "<style>.label{fill:#444}.value{fill:#222;font-weight:bold}.higher{fill:#3b82f6}.lower{fill:#f59e0b}"
           "@media (prefers-color-scheme: dark){.label{fill:#ccc}.value{fill:#eee}}</style>",
           f'<text x="10" y="20" class="label">ratio (1× = the thing it is compared with) — '
           f'<tspan class="higher">■</tspan> higher is better, <tspan class="lower">■</tspan> lower is better</text>']
    for i, r in enumerate(ratios):
        y = top + i * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" class="label">'
                   f'§{r.section} {escape(r.label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{scale * r.value:.1f}" height="{bar_h}" class="{r.better}"/>')
        out.append(f'<text x="{left + scale * r.value + 6:.1f}" y="{y + 16}" class="value" '
                   f'data-section="{r.section}">{r.shown}×</text>')
    out.append(f'<line x1="{one:.1f}" y1="{top - 6}" x2="{one:.1f}" y2="{height - 24}" stroke="#888" '
               f'stroke-dasharray="4 3"/>')
    out.append(f'<text x="{one:.1f}" y="{height - 8}" text-anchor="middle" class="label">1×</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> int:
    ratios = parse_ratios((ROOT / "BENCHMARKS.md").read_text(encoding="utf-8"))
    SVG.parent.mkdir(parents=True, exist_ok=True)
    SVG.write_text(render_svg(ratios), encoding="utf-8")
    print(f"wrote {SVG.relative_to(ROOT)}: {len(ratios)} ratios")
    return 0


if __name__ == "__main__":
    sys.exit(main())
