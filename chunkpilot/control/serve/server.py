"""``launcher serve``: the API and the scheduler in one process, and how the command line builds them.

``Server`` runs uvicorn on the configured address and the scheduler in a thread beside it;
stopping it (Ctrl-C, SIGTERM, or ``stop``) stops both. Batches in flight keep their state in
the store, and their workers (separate processes or cloud jobs) keep running: the next server
on the same store picks every batch up where it is.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Mapping

from chunkpilot.engines import check_engine_options
from chunkpilot.errors import ConfigError
from chunkpilot.control.backends import check_backend_name
from chunkpilot.control.serve.config import ServeConfig, check_exposure, pin_models, read_keys
from chunkpilot.control.serve.scheduler import Scheduler
from chunkpilot.control.serve.state import ServeState

log = logging.getLogger("chunkpilot.serve")

# The SubmitOptions fields ``launcher serve`` takes as every batch's run options.
RUN_FIELDS = ("chunks", "workers", "backend", "engine", "max_tokens", "temperature", "max_attempts", "commit_seconds",
              "commit_records", "engine_options", "allow_unpinned", "price_per_hour", "on_demand_price_per_hour",
              "template", "use_spot", "backend_options")


def config_from_options(given: Mapping[str, Any], environ: Mapping[str, str]) -> ServeConfig:
    """A checked ServeConfig from ``launcher serve``'s options (named as its parameters): keys read,
    exposure checked, models pinned, run options checked as ``submit`` checks them."""
    from chunkpilot.control.submit import SubmitOptions

    given = dict(given)
    host, port = given.pop("host"), given.pop("port")
    keys = read_keys(tuple(given.pop("api_key_env") or ()), environ)
    check_exposure(host, keys)
    model_options = tuple(given.pop("models") or ())
    if not model_options:
        raise ConfigError("give at least one --model NAME=HUB_ID[@REVISION] (or NAME=echo with --engine echo)")
    store_uri = given.pop("store_uri")
    max_upload, poll = given.pop("max_upload_bytes"), given.pop("poll_seconds")
    options = SubmitOptions.from_cli((), {**given, "store_uri": store_uri})
    check_backend_name(options.backend)
    check_engine_options(options.engine, options.engine_options)
    if options.workers is not None and options.workers > options.chunks:
        raise ConfigError(f"--workers {options.workers}: give 1 to --chunks ({options.chunks})")
    models = pin_models(model_options, options.engine, options.backend, options.allow_unpinned)
    run_options = {name: getattr(options, name) for name in RUN_FIELDS}
    return ServeConfig(store_uri=store_uri, host=host, port=port, keys=keys, models=models,
                       max_upload_bytes=max_upload, poll_seconds=poll, run_options=run_options)


class Server:
    """The API on ``config.host:port`` and the scheduler, in this process."""

    def __init__(self, config: ServeConfig):
        import uvicorn

        from chunkpilot.control.serve.app import create_app

        self.config = config
        self.state = ServeState(config.store_uri)
        self.state.root.check_writable()
        self.scheduler = Scheduler(self.state, config)
        self.app = create_app(self.state, config)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._uvicorn = uvicorn.Server(uvicorn.Config(self.app, host=config.host, port=config.port, log_level="warning",
                                                      access_log=False, lifespan="off", ws="none"))

    def _start_scheduler(self) -> None:
        self._thread = threading.Thread(target=self.scheduler.run_forever, args=(self._stop,), name="serve-scheduler",
                                        daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve until interrupted (uvicorn handles SIGINT/SIGTERM), then stop the scheduler."""
        self._start_scheduler()
        try:
            self._uvicorn.run()
        finally:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=30)

    # -- for a server inside another program (tests) -------------------------------------------------
    def start(self) -> "Server":
        self._start_scheduler()
        self._http = threading.Thread(target=self._uvicorn.run, name="serve-http", daemon=True)
        self._http.start()
        return self

    @property
    def started(self) -> bool:
        return self._uvicorn.started

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._stop.set()
        self._http.join(timeout=30)
        if self._thread is not None:
            self._thread.join(timeout=60)
