"""Shared by the docs tests: the repository root, docs/hooks.py loaded as a module, and one strict
build of the site per session."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def load_docs_module(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tool_env() -> dict[str, str]:
    """The environment the docs' commands run in: this checkout's code and the venv's programs first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHUNKPILOT_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["NO_MKDOCS_2_WARNING"] = "1"
    return env


@pytest.fixture(scope="session")
def hooks():
    return load_docs_module("hooks")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` of this checkout, once per session."""
    if shutil.which("mkdocs", path=str(BIN)) is None:
        pytest.fail("mkdocs is not installed in this venv: pip install -e '.[test]' (or make test)")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out
