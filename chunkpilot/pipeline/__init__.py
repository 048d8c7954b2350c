"""Multi-step pipelines: steps that are ordinary runs, chained chunk by chunk (docs/guides/pipelines.md)."""
