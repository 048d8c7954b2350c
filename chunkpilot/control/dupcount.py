"""Count custom_ids used by more than one record, exactly, in bounded memory, in a process of its own.

Collect verifies that no two records share a custom_id from the 64-bit hashes the
worker put in each chunk's ``_SUCCESS``: one per record, several million per run.
Decoding and sorting them is CPU work that, in collect's own process, would hold the
GIL its copying thread needs between system calls; here it runs beside the copy, on
another core, and collect's process only forwards the markers' text.

``python -m chunkpilot.control.dupcount EXAMPLES`` reads frames from stdin, each a
little-endian ``(first record number, byte length)`` pair of uint64 then that many
bytes of ``encode_hashes`` text, and at end of input prints ``{"duplicates": N,
"examples": [record numbers]}``. ``CounterProcess`` is collect's side of it.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
from array import array

from chunkpilot.errors import CounterError

ID_BUDGET = 1 << 20  # custom_id hashes held in memory (8-16 bytes each) before spilling to disk
_FRAME = struct.Struct("<QQ")


class CounterProcess:
    """Collect's handle on a ``python -m chunkpilot.control.dupcount`` child.

    ``add`` may be called from several threads; a write blocks while the child is busy
    (a pipe's buffer), which bounds what waits in memory whatever the run's size.
    ``end_input`` as soon as the last hashes are sent lets the child count while the
    caller goes on; ``finish`` collects the answer. Leaving the ``with`` block first
    kills the child.
    """

    def __init__(self, examples: int):
        self._errors = tempfile.TemporaryFile()  # not a pipe: a long traceback cannot block the child
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "chunkpilot.control.dupcount", str(examples)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors, env=_child_env(),
        )
        self._lock = threading.Lock()

    def add(self, encoded: str, first: int) -> None:
        """Count the hashes in ``encoded`` (``encode_hashes`` text) as records ``first``, ``first + 1``, ..."""
        data = encoded.encode("ascii")
        try:
            with self._lock:
                self._proc.stdin.write(_FRAME.pack(first, len(data)) + data)
        except (BrokenPipeError, ValueError) as exc:  # the child ended early (ValueError: input already closed)
            raise self._failure() from exc

    def end_input(self) -> None:
        try:
            with self._lock:
                self._proc.stdin.close()
        except BrokenPipeError as exc:  # flushing into a child that had ended
            raise self._failure() from exc

    def finish(self) -> tuple[int, list[int]]:
        """(distinct custom_ids on more than one record, record numbers of the first examples)."""
        self.end_input()
        out = self._proc.stdout.read()
        if self._proc.wait() != 0:
            raise self._failure()
        result = json.loads(out)
        return result["duplicates"], result["examples"]

    def _failure(self) -> CounterError:
        self._proc.kill()
        self._proc.wait()
        self._errors.seek(0)
        last = self._errors.read().decode(errors="replace").strip().splitlines()[-1:]
        detail = f": {last[0]}" if last else ""
        return CounterError(f"the duplicate custom_id counter (python -m chunkpilot.control.dupcount) ended with code "
                            f"{self._proc.returncode}{detail}")

    def close(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._errors):
            try:
                stream.close()
            except BrokenPipeError:  # unflushed input for a child that is gone: nothing to keep
                pass

    def __enter__(self) -> "CounterProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _child_env() -> dict[str, str]:
    """This environment, with the folder this package was imported from first on the child's
    path: collect may run from a checkout that is not installed."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


class DuplicateCounter:
    """Exactly how many distinct hashes occur more than once, in memory bounded by ``budget``.

    ``add`` takes the hashes of consecutive records and the number of the first, in any
    order. Up to ``budget`` of them stay in memory. Past that they are spilled as they
    come to ``1 << SPLIT_BITS`` temporary files by the top bits of the hash; at
    ``finish`` each file is counted alone, and one still larger than the budget is split
    again on the next bits. So no total has to be known in advance: 16 bytes of temporary
    disk per record once past the budget (again per level of splitting), and no pass
    over the output. Only a single custom_id on more than ``budget`` records cannot be
    split by its hash: that file is counted whole, in memory in proportion to it.
    """

    SPILL_EVERY = 1 << 16
    SPLIT_BITS = 6
    MAX_LEVEL = 64 // SPLIT_BITS - 1  # the deepest split still has bits of the hash to go by

    def __init__(self, budget: int = ID_BUDGET):
        self.np = _numpy()
        self.budget = budget
        self.spilled = 0  # records written to temporary files (0: all counted in memory)
        self._held: list[tuple] = []
        self._held_count = 0
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._files: list = []

    def __enter__(self) -> "DuplicateCounter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def add(self, hashes, first: int) -> None:
        if len(hashes):
            self._held.append((hashes, first))
            self._held_count += len(hashes)
        if self._held_count > (self.SPILL_EVERY if self._files else self.budget):
            self._spill()

    def _pairs(self):
        """Held values as one (n, 2) uint64 array of (hash, record number) (numpy) or a flat array('Q')."""
        np = self.np
        if np is not None:
            parts = [np.column_stack((np.frombuffer(h, np.uint64), np.arange(first, first + len(h), dtype=np.uint64)))
                     for h, first in self._held]
            pairs = np.concatenate(parts) if parts else np.empty((0, 2), np.uint64)
        else:
            pairs = array("Q")
            for h, first in self._held:
                for i, x in enumerate(h, first):
                    pairs.extend((x, i))
        self._held, self._held_count = [], 0
        return pairs

    def _spill(self) -> None:
        if not self._files:
            self._tmp = tempfile.TemporaryDirectory(prefix="chunkpilot-collect-")
            self._files = _split_files(self._tmp.name, self.SPLIT_BITS)
        self.spilled += self._held_count
        _split(self._pairs(), self._files, 0, self.SPLIT_BITS, self.np)

    def finish(self, examples: int = 5) -> tuple[int, list[int]]:
        """(distinct hashes seen more than once, record numbers of the first ``examples`` of them)."""
        np = self.np
        if not self._files:
            return self._count_held(examples) if np is not None else _count_duplicates([self._pairs()], examples, None)
        self._spill()
        paths = [f.name for f in self._files]
        for f in self._files:
            f.close()
        self._files = []
        return _merge_counts((self._count_file(path, 1, examples) for path in paths), examples)

    def _count_file(self, path: str, level: int, examples: int) -> tuple[int, list[int]]:
        """Count one spilled file: in memory if it fits the budget (or cannot be split), else split it by
        the next bits of the hash, a budget's worth at a time, and count each piece."""
        np = self.np
        if os.path.getsize(path) // 16 <= self.budget or level > self.MAX_LEVEL:
            loaded = _read_pairs(path, None, np)
            os.unlink(path)
            return _count_duplicates([loaded], examples, np)
        os.mkdir(folder := f"{path}.split")
        files = _split_files(folder, self.SPLIT_BITS)
        with open(path, "rb") as f:
            while len(pairs := _read_pairs(f, self.budget, np)):
                _split(pairs, files, level, self.SPLIT_BITS, np)
        for out in files:
            out.close()
        os.unlink(path)
        return _merge_counts((self._count_file(out.name, level + 1, examples) for out in files), examples)

    def _count_held(self, examples: int) -> tuple[int, list[int]]:
        """``finish`` for what fits in memory (numpy): one sort for the count; examples are
        looked for in record order, so the search usually stops within the first chunks."""
        np = self.np
        held = sorted(((np.frombuffer(h, np.uint64), first) for h, first in self._held), key=lambda item: item[1])
        self._held, self._held_count = [], 0
        if not held:
            return 0, []
        ordered = np.sort(np.concatenate([h for h, _ in held]))
        same = ordered[1:] == ordered[:-1]
        duplicated = ordered[1:][same & np.r_[True, ~same[:-1]]]  # each value seen twice or more, once
        found: list[int] = []
        seen: set[int] = set()
        for hashes, first in held if examples and len(duplicated) else ():
            for i in np.flatnonzero(_isin_sorted(hashes, duplicated, np)).tolist():
                if (value := int(hashes[i])) not in seen:
                    seen.add(value)
                    found.append(first + i)
                    if len(found) == examples:
                        return len(duplicated), found
        return len(duplicated), found


def _split_files(folder: str, bits: int) -> list:
    return [open(os.path.join(folder, f"{i}.bin"), "wb") for i in range(1 << bits)]


def _split(pairs, files: list, level: int, bits: int, np) -> None:
    """Append each (hash, record number) pair to ``files[i]``, ``i`` the hash's bits of split ``level``."""
    shift = 64 - bits * (level + 1)
    mask = (1 << bits) - 1
    if np is not None:
        bucket = ((pairs[:, 0] >> np.uint64(shift)) & np.uint64(mask)).astype(np.uint8)
        order = np.argsort(bucket, kind="stable")  # 8-bit keys: numpy sorts them by radix, in linear time
        pairs, bounds = pairs[order], np.searchsorted(bucket[order], np.arange(len(files) + 1))
        for i, f in enumerate(files):
            pairs[bounds[i] : bounds[i + 1]].tofile(f)
        return
    split = [array("Q") for _ in files]
    for j in range(0, len(pairs), 2):
        split[(pairs[j] >> shift) & mask].extend(pairs[j : j + 2])
    for f, values in zip(files, split):
        values.tofile(f)


def _read_pairs(source, count: int | None, np):
    """Up to ``count`` pairs (all if None) from a path or an open file, as ``_pairs`` gives them."""
    if np is not None:
        return np.fromfile(source, np.uint64, -1 if count is None else 2 * count).reshape(-1, 2)
    values = array("Q")
    if count is None:
        with open(source, "rb") as f:
            values.frombytes(f.read())
    else:
        try:
            values.fromfile(source, 2 * count)
        except EOFError:  # fewer left: they were read all the same
            pass
    return values


def _merge_counts(results, examples: int) -> tuple[int, list[int]]:
    """Counts of disjoint hash ranges -> the count of their union and its first examples."""
    count, firsts = 0, []
    for n, first in results:
        count += n
        firsts = sorted(firsts + first)[:examples]
    return count, firsts


def _count_duplicates(chunks, examples: int, np) -> tuple[int, list[int]]:
    """(distinct hashes occurring more than once, smallest first-occurrence record numbers of up to ``examples``).

    ``chunks`` hold (hash, record number) pairs, in any order; ``np`` is numpy or None.
    """
    if np is not None:
        pairs = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        if len(pairs) < 2:
            return 0, []
        h = pairs[:, 0]
        ordered = np.sort(h)
        same = ordered[1:] == ordered[:-1]
        first_of_run = same & np.r_[True, ~same[:-1]]
        count = int(np.count_nonzero(first_of_run))
        if not count or not examples:
            return count, []
        duplicated = ordered[1:][first_of_run]
        hits = np.flatnonzero(_isin_sorted(h, duplicated, np))  # every record with a duplicated id
        hits = hits[np.argsort(pairs[hits, 1], kind="stable")]  # in record order: unique keeps each id's first
        _, first = np.unique(h[hits], return_index=True)
        return count, sorted(int(x) for x in pairs[hits[first], 1])[:examples]
    seen: dict[int, list[int]] = {}
    for pairs in chunks:
        for j in range(0, len(pairs), 2):
            entry = seen.setdefault(pairs[j], [pairs[j + 1], 0])
            entry[0] = min(entry[0], pairs[j + 1])
            entry[1] += 1
    dups = sorted(first for first, n in seen.values() if n > 1)
    return len(dups), dups[:examples]


def _isin_sorted(hashes, values, np):
    """Mask of ``hashes`` that are in ``values`` (sorted, distinct, non-empty).

    Hashes are uniform, so a bitmap on their top bits rules out nearly all of them first;
    only those it lets through are binary-searched (a search per record is most of the
    cost of counting a few million records otherwise).
    """
    bits = min(22, len(values).bit_length() + 8)  # about 1 in 256 get through by chance
    shift = np.uint64(64 - bits)
    table = np.zeros(1 << bits, bool)
    table[values >> shift] = True
    maybe = np.flatnonzero(table[hashes >> shift])
    at = np.minimum(np.searchsorted(values, hashes[maybe]), len(values) - 1)
    mask = np.zeros(len(hashes), bool)
    mask[maybe[values[at] == hashes[maybe]]] = True
    return mask


_NUMPY: list = []


def _numpy():
    """numpy if installed (imported on first use), else None.

    Without numpy (a launcher-only install) duplicates are counted in plain Python: slower, same results.
    """
    if not _NUMPY:
        try:
            import numpy
        except ImportError:  # pragma: no cover - exercised only without numpy
            numpy = None
        _NUMPY.append(numpy)
    return _NUMPY[0]

def main(argv: list[str] | None = None) -> int:
    from chunkpilot.spec import decode_hashes

    (examples,) = (int(a) for a in (argv if argv is not None else sys.argv[1:]))
    stream = sys.stdin.buffer
    with DuplicateCounter() as ids:
        while header := stream.read(_FRAME.size):
            if len(header) < _FRAME.size:
                raise SystemExit(f"truncated frame header ({len(header)} of {_FRAME.size} bytes)")
            first, size = _FRAME.unpack(header)
            data = stream.read(size)
            if len(data) < size:
                raise SystemExit(f"truncated frame ({len(data)} of {size} bytes)")
            ids.add(decode_hashes(data), first)
        count, found = ids.finish(examples)
    sys.stdout.write(json.dumps({"duplicates": count, "examples": found}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
