"""Job backends by name; a backend's module is imported only when it is used."""

from __future__ import annotations

from chunkpilot.errors import ConfigError
from chunkpilot.spec import RunSpec
from chunkpilot.control.backends.base import Backend, JobState, JobStatus, LaunchRequest

BACKENDS = ("local", "sky")


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    return name


def make_backend(spec: RunSpec, store_uri: str) -> Backend:
    """The backend that runs ``spec``'s jobs; ``spec.backend_options`` configure it."""
    check_backend_name(spec.backend)
    if spec.backend == "local":
        from chunkpilot.control.backends.local import LocalBackend, default_jobs_dir

        return LocalBackend(default_jobs_dir(store_uri, spec.run_id), workers=spec.workers)
    from chunkpilot.control.backends.sky import SkyBackend

    return SkyBackend.for_run(spec, store_uri)


__all__ = ["Backend", "JobState", "JobStatus", "LaunchRequest", "make_backend", "check_backend_name", "BACKENDS"]
