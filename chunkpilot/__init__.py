"""chunkpilot's shared core: the contract between the launcher and the worker.

Run spec and manifests (``spec``), names (``names``), errors (``errors``), the store seam and
its implementations (``store``), the run layout that owns every store key (``layout``), input
formats (``formats``), request kinds (``requests``), the engine registry (``engines``) and
model identity (``model``). ``launcher`` and ``worker`` both import this package; neither
imports the other.
"""

__version__ = "0.1.0"
