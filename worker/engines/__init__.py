"""Loading an engine the registry (``chunkpilot.engines``) names."""

from __future__ import annotations

import importlib
from typing import Any

from chunkpilot.engines import engine_entry
from chunkpilot.errors import ConfigError
from worker.engines.base import Engine


def load_engine(name: str, model: Any, options: dict[str, Any] | None = None, task: str = "generate") -> Engine:
    """Construct engine ``name`` for ``model`` (the worker's ``ResolvedModel``, or a label for an
    engine that loads none) to run ``task`` (``generate`` or ``embed``); a missing dependency
    becomes a ConfigError naming what to install."""
    entry = engine_entry(name)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise ConfigError(f"engine {name!r} cannot be loaded ({exc}); {entry.install_hint}") from exc
    return getattr(module, entry.factory)(model, options or {}, task=task)
