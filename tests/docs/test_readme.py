"""README.md fits a screen or two and points into the docs: under 12 KB, the two set-up commands, the
quick start that BENCHMARKS.md measures, and links that resolve in the repository (as on GitHub)."""

from __future__ import annotations

import re

from markdown.extensions.toc import slugify

from .conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_under_12_kb_with_the_two_set_up_commands():
    size = len(README.encode("utf-8"))
    assert size < 12 * 1024, f"README.md is {size} bytes; move detail into docs/ (the limit is 12 KB)"
    assert "make demo" in README and "make test" in README
    setup = re.search(r"^## Quick start\n.*?```bash\n(.*?)^```", README, re.M | re.S)
    assert setup, "the quick start's set-up block is missing"
    commands = [line.split("#")[0].strip() for line in setup.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_readme_has_the_quick_start_benchmarks_measure():
    # BENCHMARKS.md §6 and §11 time "the README quick start" with exactly this command.
    assert "launcher submit examples/prompts.jsonl --chunks 4 --watch" in README
    assert "launcher submit examples/prompts.jsonl --chunks 4 --watch" in (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")


def _anchors(path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {slugify(m.group(1), "-") for m in re.finditer(r"^#{1,6} (.+?)\s*$", text, re.M)}


def test_readme_links_resolve_and_reach_every_docs_section():
    links = [link for link in LINK.findall(README) if not re.match(r"[a-z]+://", link)]
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        if not target.exists():
            broken.append(link)
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            broken.append(link)
    assert not broken, f"README.md links to what is not there: {broken}"
    linked = {link.partition("#")[0] for link in links}
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert not pages - linked, f"README.md does not link to: {sorted(pages - linked)}"
