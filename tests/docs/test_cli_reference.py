"""The CLI reference lists every command and every option that `launcher … --help` prints."""

from __future__ import annotations

import html
import re

from click.testing import CliRunner

from launcher.cli import cli

OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def help_of(path: list[str]) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def section(text: str, title: str) -> str:
    """The lines of a --help section (``Options:``, ``Commands:``) up to the next one."""
    m = re.search(rf"^{title}:\n((?:[ \t].*\n?|\n)*)", text, re.M)
    return m.group(1) if m else ""


def commands_from_help(path: list[str]) -> list[list[str]]:
    """Every command path below ``path``, found by reading the help pages themselves."""
    out = [path]
    for line in section(help_of(path), "Commands").splitlines():
        if line.strip():
            out += commands_from_help([*path, line.split()[0]])
    return out


def options_from_help(path: list[str]) -> set[str]:
    names = set()
    for line in section(help_of(path), "Options").splitlines():
        head = line.strip().split("  ")[0]  # the option column, before its help text
        names.update(OPTION.findall(head))
    return names


def reference_sections(page) -> dict[str, str]:
    """``{"launcher pool up": text of its section}`` from the rendered page (mkdocs-click heads each
    command with an id of its words joined by '-')."""
    raw = page.read_text(encoding="utf-8")
    heads = list(re.finditer(r'<h[2-6] id="(launcher(?:-[a-z-]+)?)"', raw))
    out = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(raw)
        out[head.group(1)] = html.unescape(re.sub(r"<[^>]+>", " ", raw[head.start():end]))
    return out


def test_every_command_and_option_of_help_is_in_the_reference(site):
    sections = reference_sections(site / "reference" / "cli" / "index.html")
    paths = commands_from_help([])
    assert len(paths) >= 12, paths  # the group, its commands and pool's
    missing = []
    for path in paths:
        anchor = "-".join(["launcher", *path])
        if anchor not in sections:
            missing.append(f"command `launcher {' '.join(path)}`")
            continue
        for option in sorted(options_from_help(path)):
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", sections[anchor]):
                missing.append(f"`launcher {' '.join(path)}` option {option}")
    assert not missing, "the CLI reference lacks: " + "; ".join(missing)


def test_help_parsing_finds_options():
    # The comparison is only as good as the parse: check it on options we know.
    assert {"--chunks", "--engine", "--dry-run", "--use-spot", "--no-use-spot", "--infra", "--cloud", "-h",
            "--help"} <= options_from_help(["submit"])
    assert ["pool", "up"] in commands_from_help([])
