"""What ``launcher serve`` was started with: address, keys, served models, and every batch's run options.

Checked once at start (``ServeConfig.build``), so a server never comes up half-configured:
a non-loopback address needs a key; each ``--api-key-env`` variable must be set; each
``--model NAME=TARGET`` is pinned to exact weights now, so every batch of a name runs the same
weights however long the server lives.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from chunkpilot.engines import check_engine_name, loads_model
from chunkpilot.errors import ConfigError
from chunkpilot.model import UNPINNED, ModelPin, model_kind

ECHO_TARGET = "echo"  # ``--model tiny=echo``: a name the echo engine answers, with no weights behind it
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_MAX_UPLOAD_BYTES = 8 << 30


@dataclass(frozen=True)
class ServedModel:
    """A model name the API accepts and the weights it runs: ``target`` is what a run's ``--model``
    gets (None: the echo engine's label only), ``revision`` the pin found at start."""

    name: str
    target: str | None
    revision: str


@dataclass(frozen=True)
class ServeConfig:
    store_uri: str
    host: str = "127.0.0.1"
    port: int = 8000
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # tenant (variable name) -> key
    models: Mapping[str, ServedModel] = field(default_factory=dict)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    poll_seconds: float = 2.0
    # The SubmitOptions fields every batch's run gets (engine, backend, chunks, workers, sampling defaults...).
    run_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def engine(self) -> str:
        return self.run_options.get("engine", "vllm")

    def __repr__(self) -> str:  # never the keys, whoever prints a config
        return f"ServeConfig(store_uri={self.store_uri!r}, host={self.host!r}, port={self.port}, tenants={sorted(self.keys)})"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_keys(variables: tuple[str, ...], environ: Mapping[str, str]) -> dict[str, str]:
    """Tenant name -> key, from each named environment variable; ConfigError for a variable that is
    unset or empty, or for two variables holding one key (their tenants could not be told apart)."""
    keys: dict[str, str] = {}
    for name in variables:
        if not _ENV.match(name):
            raise ConfigError(f"--api-key-env {name!r}: give the name of an environment variable, not a key")
        value = environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"--api-key-env {name}: ${name} is not set (or empty): export the key in it first")
        if value in keys.values():
            raise ConfigError(f"--api-key-env {name}: holds the same key as another variable; give each tenant its own")
        keys[name] = value
    return keys


def check_exposure(host: str, keys: Mapping[str, str]) -> None:
    """ConfigError for a non-loopback address without a key: anyone who reaches it could read every file."""
    if not keys and not is_loopback(host):
        raise ConfigError(f"--host {host} is reachable from other machines: give --api-key-env VAR (a bearer key "
                          "clients must send), or serve on 127.0.0.1")


def parse_model_option(text: str) -> tuple[str, str]:
    """``NAME=TARGET`` -> (name, target); ConfigError if malformed."""
    name, sep, target = text.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or not target:
        raise ConfigError(f"--model {text!r}: use NAME=HUB_ID[@REVISION] (or NAME=echo with --engine echo), "
                          "e.g. --model qwen-7b=Qwen/Qwen2.5-7B-Instruct@main")
    if not _NAME.match(name):
        raise ConfigError(f"--model {text!r}: a name is letters, digits and . _ : / - (at most 128)")
    return name, target


def pin_models(options: tuple[str, ...], engine: str, backend: str, allow_unpinned: bool = False,
               pin=None) -> dict[str, ServedModel]:
    """Each ``--model`` pinned now (``chunkpilot.control.submit.pin_run_model``); ConfigError for a name given
    twice, a target the engine cannot run, or weights that cannot be found."""
    from chunkpilot.control.submit import pin_run_model

    check_engine_name(engine)
    pin = pin or (lambda target: pin_run_model(engine, target, backend, allow_unpinned))
    served: dict[str, ServedModel] = {}
    for text in options:
        name, target = parse_model_option(text)
        if name in served:
            raise ConfigError(f"--model {name} is given twice")
        if not loads_model(engine):
            served[name] = ServedModel(name, None, f"{engine}-1")  # the engine loads nothing: a label
            continue
        if target == ECHO_TARGET:
            raise ConfigError(f"--model {text}: '{ECHO_TARGET}' has no weights; it needs --engine echo")
        found: ModelPin = pin(target)
        served[name] = ServedModel(name, pinned_target(target, found), found.revision)
    return served


def pinned_target(target: str, found: ModelPin) -> str:
    """What a run's ``--model`` gets so that it loads exactly the weights pinned at start: a hub id
    at its commit; a folder or the bundled model as given (their pins are fingerprints the worker checks)."""
    if model_kind(target) == "hub" and not found.revision.startswith(UNPINNED):
        return f"{found.model}@{found.revision}"
    return target
