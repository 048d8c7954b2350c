"""Answers merged into the user's records, written as Parquet: ``collect -o out.parquet``.

Every input column (Parquet inputs keep their original Arrow types, nested ones included), in
input order, then the answer column ``<key>`` and ``<key>_error`` (``struct<code, message>``,
null when answered). Answers are text: a JSON answer (``--json-schema``, ``response_format``) is
its JSON text, so one schema holds every record whatever it asked for; embeddings are
``fixed_size_list<float32>``. Written streaming, row group by row group: memory holds one row
group, whatever the row count.

For Parquet inputs the answers come from the parts' answer columns (``chunkpilot.answer_columns``,
written by the workers), or from the parts' lines where a part has none; the same values either
way. Three threads share the work: this one reads the input and joins, one loads the next group
of parts' answers, one encodes and writes the last row group.

For JSON Lines inputs the columns' types are inferred by Arrow from the records themselves, in a
first pass over the input (unified across records: ints and floats widen to float, a field
missing in a record is null); a line that is no JSON object has its text in ``<key>_input``.
Records whose fields change type (a number here, a string there) cannot share one column:
``collect`` says so and suggests ``--format records`` (JSON Lines keeps them as they are).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import Any, Iterator

from chunkpilot import answer_columns, layout
from chunkpilot.answer_columns import error_type
from chunkpilot.chunks import run_chunk_ids
from chunkpilot.errors import OutputError, StoreError
from chunkpilot.formats.parquet import parquet_file
from chunkpilot.spec import ChunkManifest, RunSpec
from chunkpilot.store import Store
from chunkpilot.control.collect.copy import by_chunk, map_reads, parts_by_chunk
from chunkpilot.merge import Drop, merge_plan
from chunkpilot.control.collect.records import NOT_ANSWERED, Merged, Tally, json_value, merged_records

ROW_GROUP_ROWS = 65_536
BATCH_ROWS = 16_384  # input rows taken at a time
INFER_ROWS = 4_096  # rows per table when inferring JSON Lines types


def answer_values(answers: list[Any]) -> tuple[Any, list[Any]]:
    """(Arrow type, values) of an answer column: ``fixed_size_list<float32>`` for vectors of one
    length, else text (JSON text for anything that is not a string)."""
    import pyarrow as pa

    present = [a for a in answers if a is not None]
    if not present:
        return pa.null(), answers
    if all(isinstance(a, list) and a and all(isinstance(x, (int, float)) for x in a) for a in present):
        dims = {len(a) for a in present}
        if len(dims) == 1:
            return pa.list_(pa.float32(), dims.pop()), answers
    return pa.string(), [a if a is None or isinstance(a, str) else json.dumps(a, ensure_ascii=False) for a in answers]


class _Writer:
    """Appends tables to one Parquet file in row groups of ROW_GROUP_ROWS. The file's schema is that
    of the first row group's tables, unified (an answer column that is all null in one table takes
    the type the others give it); every later table is cast to it, or refused, saying why.

    A row group is encoded and written by a thread of its own while the caller assembles the next
    (pyarrow lets go of the GIL): at most one row group waits to be written."""

    def __init__(self, fd: int):
        self.sink = open(fd, "wb", closefd=False)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="collect-write")
        self.writing = None  # the row group being written (a future)
        self.writer = None
        self.schema = None
        self.buffered: list = []
        self.rows = 0

    def add(self, table) -> None:
        self.buffered.append(table)
        self.rows += table.num_rows
        if self.rows >= ROW_GROUP_ROWS:
            self.flush()

    def _cast(self, table):
        try:
            return table.cast(self.schema)
        except Exception as exc:  # noqa: BLE001 - arrow's cast errors
            raise OutputError(f"records do not fit one Parquet schema ({exc}); collect with --format records "
                              "to get JSON Lines, which keeps every record as it is") from None

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.buffered:
            return
        if self.writer is None:
            try:
                self.schema = pa.unify_schemas([t.schema for t in self.buffered], promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise OutputError(f"records do not fit one Parquet schema ({exc}); collect with --format records "
                                  "to get JSON Lines, which keeps every record as it is") from None
            # A small dictionary page: columns of few values keep their dictionary, mostly-distinct ones
            # (answers, prompts) fall back to plain encoding early instead of building one (BENCHMARKS §7).
            self.writer = pq.ParquetWriter(self.sink, self.schema, compression="zstd", dictionary_pagesize_limit=128 << 10)
        group = pa.concat_tables([self._cast(t) for t in self.buffered])
        self.buffered, self.rows = [], 0
        self._wait()
        self.writing = self.pool.submit(self.writer.write_table, group, row_group_size=ROW_GROUP_ROWS)

    def _wait(self) -> None:
        if self.writing is not None:
            writing, self.writing = self.writing, None
            writing.result()

    def close(self) -> None:
        try:
            self.flush()
            self._wait()
            if self.writer is not None:
                self.writer.close()
        finally:
            self.pool.shutdown(cancel_futures=True)
            self.sink.close()


def write_parquet(spec: RunSpec, run_store: Store, done: set[str], fd: int, output_key: str, tally: Tally) -> tuple[int, int]:
    """Write the merged records into the open file ``fd``; (records, error records)."""
    writer = _Writer(fd)
    try:
        if spec.input_format == "parquet":
            counts = _from_parquet(spec, run_store, done, writer, output_key, tally)
        else:
            counts = _from_records(spec, run_store, done, writer, output_key, tally)
        if writer.writer is None and not writer.buffered:  # no record at all: still a valid, empty file
            import pyarrow as pa

            writer.add(pa.table({output_key: pa.array([], pa.string()), f"{output_key}_error": pa.array([], error_type())}))
    finally:
        writer.close()
    return counts


def _with_answers(table, answers, errors, key: str):
    """The table with the answer and error columns: ``answers``/``errors`` are Arrow arrays (in bulk)
    or Python lists."""
    import pyarrow as pa

    if key in table.column_names or f"{key}_error" in table.column_names:
        clash = key if key in table.column_names else f"{key}_error"
        raise OutputError(f"the records already have a column {clash!r}: collect with another --output-key, e.g. --output-key answer")
    if not isinstance(answers, pa.Array):
        kind, values = answer_values(answers)
        answers = pa.array(values, kind)
    elif pa.types.is_list(answers.type):  # vectors: one length, a fixed-size list
        lengths = {n for n in answers.value_lengths().to_pylist() if n is not None}
        if len(lengths) == 1:
            answers = answers.cast(pa.list_(pa.float32(), lengths.pop()))
    if not isinstance(errors, pa.Array):
        errors = pa.array(errors, error_type())
    table = table.append_column(key, answers)
    return table.append_column(f"{key}_error", errors)


# What collect reads of an output line, as pyarrow.json parses it (every other field ignored).
def _line_schema():
    import pyarrow as pa

    choice = pa.struct([("text", pa.string()), ("message", pa.struct([("content", pa.string())]))])
    body = pa.struct([("choices", pa.list_(choice)), ("data", pa.list_(pa.struct([("embedding", pa.list_(pa.float32()))])))])
    return pa.schema([("id", pa.string()), ("error", error_type()), ("response", pa.struct([("body", body)]))])


PARSE_BYTES = 8 << 20  # parts parsed together, so pyarrow's per-call cost is paid once per this much


def parts_answers(store: Store, steps: list, schema, columns: frozenset[str] | set[str] = frozenset()):
    """Some parts' answers: (sources, offsets, answers, errors), each part's records before its
    step's ``after`` (another part holds them) left out. Taken from a part's answer columns when
    ``columns`` lists them (``chunkpilot.answer_columns``), else parsed from its lines in bulk by
    pyarrow's JSON reader; the same values either way. Answers are the text of a completion or chat
    (a JSON answer's text), or a vector."""
    import numpy as np

    pieces = []
    for has_columns, run in groupby(steps, key=lambda step: layout.answer_columns(step.item.key) in columns):
        run = list(run)
        piece = _from_columns(store, run) if has_columns else None
        pieces.append(piece or _from_lines(store, run, schema))
    sources = np.concatenate([p[0] for p in pieces]) if pieces else np.array([], np.int64)
    offsets = np.concatenate([p[1] for p in pieces]) if pieces else np.array([], np.int64)
    answers, errors = _concat([p[2] for p in pieces]), _concat([p[3] for p in pieces])
    afters = [_cut(step) for step in steps]
    if any(a is not None for a in afters):
        counts = [n for p in pieces for n in p[4]]
        after_source = np.repeat([a[0] if a else -1 for a in afters], counts)
        after_offset = np.repeat([a[1] if a else -1 for a in afters], counts)
        keep = (sources > after_source) | ((sources == after_source) & (offsets >= after_offset))
        sources, offsets, answers, errors = sources[keep], offsets[keep], answers.filter(keep), errors.filter(keep)
    return sources, offsets, answers, errors


def _cut(step):
    """Where a step's part starts to count (its ``after``), or None when all of it does."""
    after = getattr(step, "after", None)
    return after if after is not None and after > step.part.first else None


def _from_columns(store: Store, steps: list):
    """(sources, offsets, answers, errors, rows per part) from the parts' answer columns; None if one
    of them is not a whole answer-columns file of its part (then the lines are read instead)."""
    try:
        tables = list(map_reads(store, lambda step: answer_columns.decode_table(store.get(layout.answer_columns(step.item.key))), steps))
    except (ValueError, StoreError):
        return None
    if any(t.num_rows != step.part.records for t, step in zip(tables, steps)):
        return None
    return _assembled(tables)


def _assembled(tables: list):
    """(sources, offsets, answers, errors, rows per table) of answer-columns tables."""
    import pyarrow as pa

    kind = _answer_kind([t.column("answer") for t in tables])
    tables = [t if t.schema.field("answer").type == kind else t.set_column(2, "answer", pa.nulls(t.num_rows, kind))
              for t in tables]
    table = pa.concat_tables(tables)
    return (_int64s(table["source"]), _int64s(table["offset"]), _one_chunk(table["answer"]), _one_chunk(table["error"]),
            [t.num_rows for t in tables])


def _from_lines(store: Store, steps: list, schema):
    """(sources, offsets, answers, errors, rows per part) parsed from the parts' lines: in bulk by
    pyarrow's JSON reader, or line by line where it cannot read them (base64 vectors beside lists
    of floats)."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    blobs = list(map_reads(store, lambda step: store.get(step.item.key), steps))
    data = b"".join(blob if blob.endswith(b"\n") else blob + b"\n" for blob in blobs)
    try:
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=1 << 20),  # blocks parse in parallel
                             parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    except pa.ArrowInvalid:
        return _assembled([answer_columns.table_of(blob.splitlines()) for blob in blobs])
    rows = [step.part.end[1] - step.part.first[1] for step in steps]
    if (all(_cut(s) is None for s in steps) and all(s.part.first[0] == s.part.end[0] for s in steps)
            and rows == [s.part.records for s in steps] and sum(rows) == table.num_rows):
        # Every part holds every row of its interval, one line each: positions from the names alone.
        sources = np.repeat([s.part.first[0] for s in steps], rows)
        offsets = np.concatenate([np.arange(s.part.first[1], s.part.end[1]) for s in steps]) if steps else np.array([], int)
    else:
        ids = pc.split_pattern(pc.utf8_slice_codeunits(table["id"], len("batch_req_")), "_")
        sources = _one_chunk(pc.list_element(ids, 1).cast("int64")).to_numpy()
        offsets = _one_chunk(pc.list_element(ids, 2).cast("int64")).to_numpy()
    body = pc.struct_field(table["response"], ["body"])
    first = pc.list_element(pc.struct_field(body, ["choices"]), 0)
    answers = pc.coalesce(pc.struct_field(first, ["message", "content"]), pc.struct_field(first, ["text"]))
    vectors = pc.struct_field(pc.list_element(pc.struct_field(body, ["data"]), 0), ["embedding"])
    if vectors.null_count < len(vectors):
        answers = vectors
    counts = [blob.count(b"\n") + (not blob.endswith(b"\n") and len(blob) > 0) for blob in blobs]
    return sources, offsets, _one_chunk(answers), _one_chunk(table["error"]), counts


def _answer_kind(arrays: list):
    """The type a run's answers take: that of the arrays holding any (a part of error lines has
    text-typed answers, also in a run of vectors). Answers of two kinds (text and vectors) are
    refused: a run answers one task."""
    import pyarrow as pa

    kinds = {a.type for a in arrays if a.null_count < len(a)}
    if len(kinds) > 1:
        raise OutputError(f"the answers are of different kinds ({', '.join(sorted(map(str, kinds)))}): "
                          "collect with --format records")
    return kinds.pop() if kinds else arrays[0].type if arrays else pa.string()


def _concat(arrays: list):
    """One array of ``arrays``, those holding only nulls cast to the others' type (``_answer_kind``)."""
    import pyarrow as pa

    kind = _answer_kind(arrays)
    return pa.concat_arrays([a if a.type == kind else pa.nulls(len(a), kind) for a in arrays]) if arrays else pa.array([], kind)


def _int64s(column):
    """An int64 column without nulls as a numpy array, sharing its memory. Not ``to_numpy``: that
    imports pandas, 0.2 s of a million-row collect."""
    import numpy as np

    array = _one_chunk(column)
    if len(array) == 0:
        return np.array([], np.int64)
    return np.frombuffer(array.buffers()[1], dtype=np.int64, count=len(array), offset=array.offset * 8)


def _one_chunk(array):
    return array.combine_chunks() if hasattr(array, "combine_chunks") else array


class RunAnswers:
    """The run's answers as Arrow arrays, in input order, loaded a group of parts at a time (the next
    group in a thread while this one is taken) and taken a batch of input rows at a time. Chunks
    that are not done (``--allow-partial``) hold what their parts hold, as in the OpenAI format.
    ``close`` when done."""

    def __init__(self, spec: RunSpec, store: Store, done: set[str], tally: Tally, schema):
        import bisect

        self.store, self.tally, self.schema, self.bisect = store, tally, schema, bisect
        tally.missing = {}
        chunks = run_chunk_ids(store, spec)  # split remainders too, in input order
        # Where each chunk starts, for telling a missing answer of a done chunk from one of an unfinished chunk.
        starts = []
        for chunk in chunks:
            manifest = ChunkManifest.from_json(store.get(layout.manifest(chunk)))
            starts += [((r.source, r.start), chunk) for r in manifest.ranges]
        starts.sort()
        self.starts, self.chunk_at = [p for p, _ in starts], [c for _, c in starts]
        self.done_chunks = done
        # Which parts have answer columns: a second listing, streamed beside that of the parts.
        columns = by_chunk(((layout.parse_output(key)[0], key) for key in store.keys(layout.ANSWER_COLUMNS)), chunks)
        self.groups = ((group, set(keys)) for (chunk, parts), (_, keys) in zip(parts_by_chunk(store, chunks), columns)
                       for group in _grouped([s for s in merge_plan(parts, read_all=True) if not isinstance(s, Drop)]))
        self.buffer: list = []  # [sources, offsets, answers, errors, next row]
        # The next group loads in a thread of its own while this one is taken.
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="collect-answers")
        self.loading = self.pool.submit(self._load)

    def _load(self):
        """The next group's answers, or None after the last."""
        group, columns = next(self.groups, (None, None))
        return None if group is None else [*parts_answers(self.store, group, self.schema, columns), 0]

    def _head(self):
        while not self.buffer or self.buffer[4] >= len(self.buffer[0]):
            self.buffer = self.loading.result()
            if self.buffer is None:
                return None
            self.loading = self.pool.submit(self._load)
        return self.buffer

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def take(self, source: int, start: int, end: int):
        """(answers, errors) of rows ``[start, end)`` of ``source``: Arrow arrays where the parts hold
        them in order (always, for done chunks), else Python lists with ``not_answered`` gaps."""
        import numpy as np
        import pyarrow as pa

        pieces, row = [], start
        while row < end:
            head = self._head()
            if head is None:
                break
            sources, offsets, answers, errors, at = head
            if sources[at] != source or offsets[at] != row:
                break
            n = min(end - row, len(sources) - at)
            if not (np.all(sources[at:at + n] == source) and np.array_equal(offsets[at:at + n], np.arange(row, row + n))):
                break
            pieces.append((answers.slice(at, n), errors.slice(at, n)))
            head[4] += n
            row += n
        if row == end:
            return (_concat([a for a, _ in pieces]),
                    pa.concat_arrays([e for _, e in pieces]).cast(error_type()) if pieces else pa.array([], error_type()))
        return self._slow(source, start, end, pieces)

    def _slow(self, source: int, start: int, end: int, pieces):
        """Rows the parts do not hold in order: by position, each gap ``not_answered``."""
        answers = [a for piece, _ in pieces for a in piece.to_pylist()]
        errors = [e for _, piece in pieces for e in piece.to_pylist()]
        for row in range(start + len(answers), end):
            head = self._head()
            while head is not None and (head[0][head[4]], head[1][head[4]]) < (source, row):
                head[4] += 1
                head = self._head()
            if head is not None and (head[0][head[4]], head[1][head[4]]) == (source, row):
                answers.append(head[2][head[4]].as_py())
                errors.append(head[3][head[4]].as_py())
                head[4] += 1
                continue
            chunk = self.chunk_at[max(0, self.bisect.bisect_right(self.starts, (source, row)) - 1)]
            answers.append(None)
            if chunk in self.done_chunks:
                errors.append({"code": "not_answered", "message": "no answer was committed for this record"})
                self.tally.missing[chunk] = self.tally.missing.get(chunk, 0) + 1
            else:
                errors.append(NOT_ANSWERED)
        return answers, errors


def _grouped(steps: list) -> list[list]:
    """Consecutive merge steps in groups of about PARSE_BYTES (by their parts' listed sizes)."""
    groups, current, size = [], [], 0
    for step in steps:
        current.append(step)
        size += step.item.size
        if size >= PARSE_BYTES:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def _from_parquet(spec, run_store, done, writer: _Writer, key: str, tally: Tally) -> tuple[int, int]:
    """Parquet in: every input file read once, in order, batch by batch with all its columns (cast
    to the inputs' unified schema), each batch with its answers taken in order from the parts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pa.unify_schemas([parquet_file(pin).schema_arrow for pin in spec.inputs], promote_options="permissive")
    answers = RunAnswers(spec, run_store, done, tally, _line_schema())
    records = errors = 0
    try:
        for source, pin in enumerate(spec.inputs):
            row = 0
            for batch in parquet_file(pin).iter_batches(batch_size=BATCH_ROWS):
                table = pa.Table.from_batches([batch])
                for field in schema:
                    if field.name not in table.column_names:
                        table = table.append_column(field, pa.nulls(table.num_rows, field.type))
                table = table.select(schema.names).cast(schema)
                values, faults = answers.take(source, row, row + batch.num_rows)
                writer.add(_with_answers(table, values, faults, key))
                records += batch.num_rows
                errors += (batch.num_rows - pc.sum(pc.is_null(faults)).as_py() if isinstance(faults, pa.Array)
                           else sum(e is not None for e in faults))
                row += batch.num_rows
    finally:
        answers.close()
    return records, errors


def _from_records(spec, run_store, done, writer: _Writer, key: str, tally: Tally) -> tuple[int, int]:
    """JSON Lines in: a first pass infers one schema for the records' fields, a second writes them."""
    import pyarrow as pa

    raw_key = f"{key}_input"
    schemas = []
    for rows in _batched(merged_records(spec, run_store, done, Tally())):
        try:  # an array of dicts infers one struct over every record's keys (from_pylist would take the first's)
            schemas.append(pa.Table.from_struct_array(pa.array([_plain(r, raw_key) for r in rows])).schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise OutputError(f"the records' fields do not fit one Parquet schema ({exc}); collect with --format "
                              "records to get JSON Lines, which keeps every record as it is") from None
    try:
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise OutputError(f"the records' fields do not fit one Parquet schema ({exc}); collect with --format records "
                          "to get JSON Lines, which keeps every record as it is") from None
    records = errors = 0
    for rows in _batched(merged_records(spec, run_store, done, tally)):
        table = pa.Table.from_struct_array(pa.array([_plain(r, raw_key) for r in rows], pa.struct(schema)))
        writer.add(_with_answers(table, [r.answer for r in rows], [r.error for r in rows], key))
        records += len(rows)
        errors += sum(r.error is not None for r in rows)
    return records, errors


def _plain(row: Merged, raw_key: str) -> dict[str, Any]:
    if row.fields is None:
        return {raw_key: (row.raw or b"").decode("utf-8", "replace").rstrip("\r\n")}
    return row.fields


def _batched(rows: Iterator[Merged], size: int = INFER_ROWS) -> Iterator[list[Merged]]:
    batch: list[Merged] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = ["write_parquet", "answer_values", "json_value"]
