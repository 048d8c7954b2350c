"""chunkpilot's command line: ``launcher submit|status|watch|collect|…``, thin over the library.

Each command parses options, calls ``chunkpilot`` (the Python API and the control plane,
``chunkpilot.control``), and renders (``render``). Nothing here is imported by ``chunkpilot``.
"""

from chunkpilot import __version__

__all__ = ["__version__"]
