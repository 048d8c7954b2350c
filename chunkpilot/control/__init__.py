"""The control plane: plan a run, launch its workers, watch and reconcile them, collect, report, serve.

What ``launcher`` used to hold, moved under the core so that every front door — the
``launcher`` command line, the Python API (``chunkpilot.api``), ``launcher serve`` — runs on
one library path and every import points down: ``launcher`` imports this package, this package
never imports ``launcher`` (nor ``worker``: the two sides meet only through the store and the
JSON documents in ``chunkpilot.spec``).

``submit`` (plan and write a run) · ``watch`` with ``reconcile`` (pure) and ``observe`` (drive it to
its end) · ``status`` · ``runs`` (open and list runs) · ``collect/`` (merge in input order) ·
``report/`` · ``pipeline/`` (multi-step runs) · ``backends/`` (how a job starts: local, sky) ·
``serve/`` (the OpenAI Batch API) · ``cost``, ``pricing``, ``estimate`` (what it costs).
"""
