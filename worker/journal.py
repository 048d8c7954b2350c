"""This worker process's history object (``chunkpilot.history``): claimed at start, rewritten
whole after each commit, at heartbeats when something changed, and at the end. A failed write is logged, never
fatal: the history informs reports, the parts are the truth.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Callable

from chunkpilot import layout
from chunkpilot.errors import StoreError
from chunkpilot.history import History, parse_key, resources_from_env
from chunkpilot.store import Store

log = logging.getLogger("chunkpilot.worker")


class Journal:
    def __init__(self, store: Store, slot: str, attempt: int, clock: Callable[[], float] = time.time):
        """The history of launch ``attempt`` of worker ``slot`` (its id, ``w3``)."""
        self.store = store
        self.slot = slot
        self.attempt = attempt
        self.clock = clock
        self.history = History()
        self.key: str | None = None  # None until claimed (or when the store refused)
        self._dirty = False  # events added since the last write

    def start(self, resources: dict[str, Any] | None = None) -> None:
        """Claim this life's object (the next free life number of the attempt) with its start event."""
        facts = resources_from_env(os.environ) if resources is None else resources
        self.history.add("start", self.clock(), host=socket.gethostname(), pid=os.getpid(), resources=facts)
        try:
            lives = [parsed[2] for k in self.store.keys(layout.history_folder(self.slot))
                     if (parsed := parse_key(k)) and parsed[1] == self.attempt]
            life = max(lives, default=-1) + 1
            body = self.history.to_bytes()
            while not self.store.put_if_absent(layout.history(self.slot, self.attempt, life), body):
                life += 1
            self.key = layout.history(self.slot, self.attempt, life)
        except StoreError as exc:
            log.warning("history not started: %s", exc)

    def event(self, event: str, **facts: Any) -> None:
        self.history.add(event, self.clock(), **facts)
        self._dirty = True

    def commit(self, records: int, errors: int, prompt_tokens: int, completion_tokens: int, end: tuple[int, int],
               since: float) -> None:
        self.history.commit(self.clock(), since, records, errors, prompt_tokens, completion_tokens, end)
        self.flush()  # right after the parts: the history's commits match them but for a kill in between

    def beat(self, answered: int, committed: int, held: int) -> None:
        """Note how far this life has come — records answered, of them in parts, of them in the held
        object — and write the history if anything changed since the last write."""
        last = self.history.events[-1] if self.history.events else {}
        if not self._dirty and (last.get("answered"), last.get("committed"), last.get("held")) == (answered, committed, held):
            return
        self.history.add("beat", self.clock(), answered=answered, committed=committed, held=held)
        self.flush()

    def end(self, outcome: str, exit_code: int, reason: str = "") -> None:
        self.history.add("end", self.clock(), outcome=outcome, exit_code=exit_code, reason=reason[:500])
        self.flush()

    def flush(self) -> None:
        if self.key is None:
            return
        try:
            self.store.put(self.key, self.history.to_bytes())
            self._dirty = False
        except StoreError as exc:  # like a missed heartbeat: not worth stopping for
            log.warning("history not written: %s", exc)
