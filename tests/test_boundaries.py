"""The package boundaries: ``launcher`` and ``worker`` share ``chunkpilot`` and never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"chunkpilot": {"launcher", "worker"}, "launcher": {"worker"}, "worker": {"launcher"}}


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, wherever the import statement sits (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_their_layer_may(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    offenders = {str(m.relative_to(ROOT)): sorted(imported_packages(m) & FORBIDDEN[package]) for m in modules}
    assert {m: bad for m, bad in offenders.items() if bad} == {}


def test_the_boundary_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker.run import run_chunk\n    import launcher.cli as c\n")
    assert imported_packages(module) == {"worker", "launcher"}
