"""Which chunks a run has now: the planned ones (run.json) plus the remainders split off them since.

run.json stays immutable; a split (``chunkpilot.splits``) writes the remainder's manifest
``chunks/<parent>_NN.json`` and then names it in its parent's manifest (``children``), whose
ranges it cuts. A child is live only once its parent names it: a holder that died between the
two writes leaves an orphan manifest that nothing reads. Child ids sort in input order
(``chunkpilot.names.child_chunk_id``), so ``sorted(ids, key=lambda c: c + "/")`` — the order a
listing of ``out/`` gives chunks — is input order here too.

One listing of ``chunks/``; manifests are read only for chunks that were split and their children.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from chunkpilot import layout
from chunkpilot.errors import NotFoundError
from chunkpilot.names import parent_chunk_id
from chunkpilot.spec import ChunkManifest, ChunkSummary, Position, RunSpec
from chunkpilot.store import Store


def chunk_order(chunk: str) -> str:
    """Sort key: input order, as a listing of ``out/`` gives chunks (``'/'`` sorts before ``'_'``)."""
    return chunk + "/"


def run_chunks(run_store: Store, spec: RunSpec) -> list[ChunkSummary]:
    """Every chunk of the run now, in input order, each with its size now (in the run's unit): a
    split chunk's is its cut size, so the sizes still add up to the run's."""
    planned = {c.id: c.size for c in spec.chunks}
    children = [c for key in run_store.keys(layout.CHUNKS) if (c := layout.parse_manifest(key)) and c not in planned]
    if not children:
        return list(spec.chunks)
    manifests = read_manifests(run_store, sorted(set(children) | {p for c in children if (p := parent_chunk_id(c))}))
    live, todo = [], list(planned)
    while todo:
        chunk = todo.pop()
        live.append(chunk)
        if chunk in manifests:
            todo.extend(c for c in manifests[chunk].children if c in manifests)
    return [ChunkSummary(c, manifests[c].size if c in manifests else planned[c]) for c in sorted(live, key=chunk_order)]


def run_chunk_ids(run_store: Store, spec: RunSpec) -> list[str]:
    """``run_chunks``' ids, in input order."""
    return [c.id for c in run_chunks(run_store, spec)]


def split_ends(run_store: Store, chunks: list[str]) -> dict[str, Position]:
    """Where each of ``chunks`` that was split ends now (the position its last child starts at):
    reads the manifests of those with a child among ``chunks`` only."""
    ids = set(chunks)
    parents = sorted({p for c in chunks if (p := parent_chunk_id(c)) in ids})
    ends = {}
    for chunk, m in read_manifests(run_store, parents).items():
        if m.ranges:
            ends[chunk] = (m.ranges[-1].source, m.ranges[-1].end)
    return ends


def read_manifests(run_store: Store, chunks: list[str]) -> dict[str, ChunkManifest]:
    """The manifests of ``chunks`` that exist, read side by side."""
    def read(chunk: str) -> ChunkManifest | None:
        try:
            return ChunkManifest.from_json(run_store.get(layout.manifest(chunk)))
        except NotFoundError:
            return None

    if not chunks:
        return {}
    with ThreadPoolExecutor(min(len(chunks), max(1, run_store.parallel_reads)), thread_name_prefix="manifests") as pool:
        return {c: m for c, m in zip(chunks, pool.map(read, chunks)) if m is not None}
