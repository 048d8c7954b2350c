"""Pipelines at the launcher: plan and write one (``plan``), drive its steps (``watch``), merge its
final records (``collect``) and show a row per step (``status``). Each step is an ordinary run."""
