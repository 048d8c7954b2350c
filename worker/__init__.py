"""chunkpilot's worker: runs one chunk inside a job, resumably. ``python -m worker --chunk URI``."""
