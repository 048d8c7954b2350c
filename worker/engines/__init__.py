"""Engines by name: the built-in ones are registered the way a new one would be."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from launcher.errors import ConfigError
from worker.engines.base import Engine


@dataclass(frozen=True)
class EngineEntry:
    module: str
    factory: str
    install_hint: str


_REGISTRY: dict[str, EngineEntry] = {}


def register_engine(name: str, module: str, factory: str, install_hint: str) -> None:
    """Make ``name`` available to ``--engine``; the module is imported only when used."""
    _REGISTRY[name] = EngineEntry(module, factory, install_hint)


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def check_engine_name(name: str) -> str:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(engine_names())}")
    return name


def load_engine(name: str, model: str | None, options: dict[str, Any] | None = None) -> Engine:
    """Construct engine ``name``; a missing dependency becomes a ConfigError naming what to install."""
    entry = _REGISTRY[check_engine_name(name)]
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise ConfigError(f"engine {name!r} cannot be loaded ({exc}); {entry.install_hint}") from exc
    return getattr(module, entry.factory)(model, options or {})


register_engine("echo", "worker.engines.echo", "EchoEngine", "it has no dependencies")
register_engine(
    "vllm",
    "worker.engines.vllm",
    "VllmEngine",
    "install vLLM: `pip install vllm` on a GPU machine, or `make .venv` here for the CPU build",
)
