"""chunkpilot's launcher: plans chunks, launches one job per chunk, tracks, relaunches, collects."""

from chunkpilot import __version__

__all__ = ["__version__"]
