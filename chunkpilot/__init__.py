"""chunkpilot: offline LLM inference over millions of records on cheap, preemptible machines.

The Python API (``chunkpilot.api``, re-exported here): ``submit`` a run, then ``Run.status``,
``Run.wait``, ``Run.collect``; ``open_run`` and ``runs`` find runs already in a store.

The package is the library every front door stands on, its imports pointing down:

* the contract between the control plane and the worker — run spec and manifests (``spec``),
  names (``names``), errors (``errors``), the store seam and its implementations (``store``),
  the run layout that owns every store key (``layout``), input formats (``formats``), request
  kinds (``requests``), the engine registry (``engines``) and model identity (``model``);
* the control plane (``control``): plan, launch, watch, collect, report, serve;
* the Python API (``api``).

``launcher`` (the command line, thin over ``api`` and ``control``) and ``worker`` import this
package; it imports neither, and ``worker`` does not import ``control``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from chunkpilot.api import Run, Status, open_run, runs, submit

__all__ = ["__version__", "Run", "Status", "submit", "open_run", "runs"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str):
    # The API is imported on first use: the worker imports this package too, and needs none of it.
    if name in _API:
        from chunkpilot import api

        return getattr(api, name)
    raise AttributeError(f"module 'chunkpilot' has no attribute {name!r}")

