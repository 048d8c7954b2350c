"""The package boundaries: every import points down.

``chunkpilot`` is the library (the contract, the control plane ``chunkpilot.control``, the Python
API) and imports neither ``launcher`` (the command line over it) nor ``worker``. ``launcher`` and
``worker`` never import each other, and ``worker`` stays off the control plane: the two sides meet
only through the store and the JSON documents.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Forbidden imports by package: a top-level package, or a dotted module and everything under it.
FORBIDDEN = {"chunkpilot": {"launcher", "worker"}, "launcher": {"worker"},
             "worker": {"launcher", "chunkpilot.control", "chunkpilot.api"}}


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the modules a module imports, wherever the import statement sits (functions too);
    ``from a.b import c`` counts as ``a.b`` and ``a.b.c`` (c may be a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports."""
    return {name.split(".")[0] for name in imported_modules(path)}


def forbidden_in(imports: set[str], forbidden: set[str]) -> list[str]:
    return sorted(name for name in imports for bad in forbidden if name == bad or name.startswith(bad + "."))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_what_their_layer_may(package):
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules found under {package}/"
    offenders = {str(m.relative_to(ROOT)): forbidden_in(imported_modules(m), FORBIDDEN[package]) for m in modules}
    assert {m: bad for m, bad in offenders.items() if bad} == {}


def test_the_control_plane_lives_in_the_core_and_launcher_is_only_the_cli():
    assert (ROOT / "chunkpilot" / "control" / "submit.py").is_file()
    assert sorted(p.name for p in (ROOT / "launcher").glob("*.py")) == [
        "__init__.py", "cli.py", "cli_pipeline.py", "cli_pool.py", "render.py"]
    assert not [p for p in (ROOT / "launcher").iterdir() if p.is_dir() and p.name != "__pycache__"]


def test_the_boundary_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker.run import run_chunk\n    import launcher.cli as c\n"
                      "    from chunkpilot import control\n")
    assert imported_packages(module) == {"worker", "launcher", "chunkpilot"}
    assert forbidden_in(imported_modules(module), {"chunkpilot.control"}) == ["chunkpilot.control"]
