"""chunkpilot's launcher: plans chunks, launches one job per chunk, tracks, relaunches, collects."""

__version__ = "0.1.0"
