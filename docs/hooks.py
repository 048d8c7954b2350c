"""MkDocs hooks: the reference pages that come from the code, rendered at build time.

A page holds a marker line ``<!-- generated: NAME -->`` and the hook replaces it with what
``GENERATORS[NAME]()`` returns, so the page cannot drift from the code:

- ``error-codes``: ``chunkpilot.error_codes.ERROR_CODES`` (meaning and what to do), each with the
  modules that emit it, found by reading the source (``scan_error_codes``);
- ``store-layout``: the run layout in ``chunkpilot/layout.py``'s docstring;
- ``template-variables``: the per-job variables the launcher sets (``chunkpilot.control.skytask``) and the
  ``envs:``/``secrets:`` of every shipped task template, with their comments;
- ``benchmark-ratios``: the main ratios of BENCHMARKS.md's summary table (``docs/gen_ratios.py``
  writes the same numbers into ``docs/assets/ratios.svg``).

The tests (tests/docs/) import this file to check the registry against the source.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)
SOURCE_PACKAGES = ("chunkpilot", "worker", "launcher")


# -- error codes ---------------------------------------------------------------------------------

def _constants(node) -> list[str]:
    """The string constants an expression can evaluate to (a constant, or either arm of ``a if c else b``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _constants(node.body) + _constants(node.orelse)
    return []


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _scope_of(path: str, how: str) -> str:
    if how == "problem":
        return "batch-file"
    if path.startswith("chunkpilot/control/serve/") and how in ("ApiError", "not_found"):
        return "api"
    return "record"


def scan_error_codes(root: Path = ROOT) -> dict[tuple[str, str], set[str]]:
    """Every error code the source can emit, as ``{(scope, code): {module paths}}``.

    Read from the AST of every module: the first argument of ``Invalid``/``_Rejected``/``problem``,
    the third of ``RecordError``, an ``error=("code", …)`` tuple, a ``code=`` keyword, a
    ``{"code": "…"}`` literal, a ``code = "…"`` (or ``NAME_CODE = "…"``) assignment, and ``not_found(what, …)`` (``<what>_not_found``).
    """
    found: dict[tuple[str, str], set[str]] = {}

    def add(scope: str, code: str, path: str) -> None:
        if re.fullmatch(r"[a-z][a-z0-9_]*", code):
            found.setdefault((scope, code), set()).add(path)

    for package in SOURCE_PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            path = file.relative_to(root).as_posix()
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = _call_name(node)
                    if name in ("Invalid", "_Rejected", "problem") and node.args:
                        for code in _constants(node.args[0]):
                            add(_scope_of(path, name), code, path)
                    if name == "RecordError" and len(node.args) >= 3:
                        for code in _constants(node.args[2]):
                            add("record", code, path)
                    if name == "not_found" and node.args:
                        for what in _constants(node.args[0]):
                            add("api", f"{what}_not_found", path)
                    for kw in node.keywords:
                        if kw.arg == "code":
                            for code in _constants(kw.value):
                                add(_scope_of(path, name), code, path)
                        if kw.arg == "error" and isinstance(kw.value, ast.Tuple) and kw.value.elts:
                            for code in _constants(kw.value.elts[0]):
                                add("record", code, path)
                elif isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values):
                        if isinstance(key, ast.Constant) and key.value == "code":
                            for code in _constants(value):
                                add("record", code, path)
                elif isinstance(node, ast.Assign):
                    if any(isinstance(t, ast.Name) and (t.id == "code" or t.id.endswith("_CODE")) for t in node.targets):
                        for code in _constants(node.value):
                            add("record", code, path)
    return found


SCOPE_TITLES = {
    "record": ("In output lines", "A record that cannot be answered becomes an output line with "
               "`\"response\": null, \"error\": {\"code\", \"message\"}` (in `collect --format records` and "
               "Parquet: `<key>_error`). The run goes on; `status` counts the codes."),
    "batch-file": ("In a Batch API input file", "`launcher serve` checks an uploaded file before it plans a "
                   "run; a file with any of these fails the batch in `validating`, listed in the batch's "
                   "`errors.data[{code, message, line, param}]`."),
    "api": ("From the Batch API server", "`launcher serve` answers a request it cannot serve with an HTTP "
            "error whose body is OpenAI's `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`."),
}


def _cell(text: str) -> str:
    """Text for a Markdown table cell: ``|`` escaped, and ``<``/``>`` outside code spans (``<store>`` is
    no HTML tag)."""
    pieces = text.replace("|", "\\|").replace("\n", " ").split("`")
    for i in range(0, len(pieces), 2):
        pieces[i] = pieces[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(pieces)


def render_error_codes() -> str:
    from chunkpilot.error_codes import ERROR_CODES

    where = scan_error_codes()
    out = []
    for scope, (title, intro) in SCOPE_TITLES.items():
        out += [f"## {title}", "", intro, "", "| code | what it means | what to do | emitted in |", "|---|---|---|---|"]
        for entry in sorted((e for e in ERROR_CODES if e.scope == scope), key=lambda e: e.code):
            modules = ", ".join(f"`{m}`" for m in sorted(where.get((scope, entry.code), ())))
            out.append(f"| `{entry.code}` | {_cell(entry.meaning)} | {_cell(entry.what_to_do)} | {modules} |")
        out.append("")
    return "\n".join(out)


# -- store layout ----------------------------------------------------------------------------------

def render_store_layout() -> str:
    from chunkpilot import layout

    doc = layout.__doc__ or ""
    block = doc.split("::", 1)[1].split("\n\n", 2)[1]  # the indented listing after "One run (...)::"
    lines = [line[4:] if line.startswith("    ") else line for line in block.splitlines()]
    return "```text\n<store>/<run_id>/\n" + "\n".join("    " + line for line in lines) + "\n```"


# -- task-template variables -----------------------------------------------------------------------

_SKYTASK_ENV = re.compile(r"^ENV_[A-Z_]+ = (?:\"(CHUNKPILOT_[A-Z_]+)\"|fleet\.ENV_[A-Z_]+)\s*(?:#\s*(.*))?$", re.M)


def _template_entries(text: str, section: str) -> list[tuple[str, str, str]]:
    """``(name, value, comment)`` for each key of a top-level mapping in a template, read as text so
    the comments come along."""
    entries, inside = [], False
    for line in text.splitlines():
        if re.match(rf"^{section}:\s*$", line):
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break
        m = re.match(r"^  ([A-Z_][A-Z0-9_]*):\s*([^#]*?)\s*(?:#\s*(.*))?$", line) if inside else None
        if m:
            entries.append((m.group(1), m.group(2), m.group(3) or ""))
    return entries


def render_template_variables() -> str:
    from chunkpilot.control import skytask

    source = (ROOT / "chunkpilot" / "control" / "skytask.py").read_text(encoding="utf-8")
    comments = {}
    for line in source.splitlines():
        m = re.match(r"^ENV_[A-Z_]+ = \"(CHUNKPILOT_[A-Z_]+)\"\s*(?:#\s*(.*))?$", line)
        if m:
            comments[m.group(1)] = m.group(2) or ""
    out = ["## Set by the launcher on every job", "",
           "Reserved: `--env` refuses these names. A template declares the first four as `null` (required).", "",
           "| variable | what it holds |", "|---|---|"]
    for name in skytask.RESERVED_ENVS:
        out.append(f"| `{name}` | {_cell(comments.get(name) or _FLEET_ENVS.get(name, ''))} |")
    out += ["", "Passed on as plain envs when set on the launching machine and the run uses `s3://`: "
            + ", ".join(f"`{n}`" for n in skytask.PASS_THROUGH_ENVS) + ".", ""]
    for template in sorted((ROOT / "task_templates").glob("*.yaml")):
        text = template.read_text(encoding="utf-8")
        out += [f"## `{template.stem}`", ""]
        for section in ("envs", "secrets"):
            entries = _template_entries(text, section)
            if not entries:
                continue
            out += [f"`{section}:`", "", "| name | value in the template | note |", "|---|---|---|"]
            for name, value, comment in entries:
                out.append(f"| `{name}` | `{_cell(value)}` | {_cell(comment)} |")
            out.append("")
    return "\n".join(out)


_FLEET_ENVS = {
    "CHUNKPILOT_GPUS_PER_ENGINE": "GPUs per engine (tensor_parallel_size × pipeline_parallel_size): the machine runs one worker per group",
    "CHUNKPILOT_MEMBERS": "a several-job pool launch (`num_jobs`): the worker slots, in `SKYPILOT_JOB_RANK` order",
    "CHUNKPILOT_RUN_ID": "the run's id",
}


# -- benchmark ratios ------------------------------------------------------------------------------

def _gen_ratios():
    spec = importlib.util.spec_from_file_location("docs_gen_ratios", ROOT / "docs" / "gen_ratios.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def render_benchmark_ratios() -> str:
    from markdown.extensions.toc import slugify

    gen = _gen_ratios()
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    ratios = gen.parse_ratios(text)
    heads = {int(m.group(1)): slugify(m.group(0)[3:], "-") for m in re.finditer(r"^## (\d+)\. .*$", text, re.M)}
    out = ["| BENCHMARKS.md | what | ratio | better when |", "|---|---|---|---|"]
    for r in ratios:
        out.append(f"| [§{r.section}](#{heads[r.section]}) | {_cell(r.label)} | **{r.shown}×** | {r.better} |")
    return "\n".join(out)


GENERATORS = {
    "error-codes": render_error_codes,
    "store-layout": render_store_layout,
    "template-variables": render_template_variables,
    "benchmark-ratios": render_benchmark_ratios,
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown generated section {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
