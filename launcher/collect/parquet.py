"""Answers merged into the user's records, written as Parquet: ``collect -o out.parquet``.

Every input column (Parquet inputs keep their original Arrow types, nested ones included), in
input order, then the answer column ``<key>`` and ``<key>_error`` (``struct<code, message>``,
null when answered). Answers are text: a JSON answer (``--json-schema``, ``response_format``) is
its JSON text, so one schema holds every record whatever it asked for; embeddings are
``fixed_size_list<float32>``. Written streaming, row group by row group: memory holds one row
group, whatever the row count.

For JSON Lines inputs the columns' types are inferred by Arrow from the records themselves, in a
first pass over the input (unified across records: ints and floats widen to float, a field
missing in a record is null); a line that is no JSON object has its text in ``<key>_input``.
Records whose fields change type (a number here, a string there) cannot share one column:
``collect`` says so and suggests ``--format records`` (JSON Lines keeps them as they are).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from chunkpilot.errors import OutputError
from chunkpilot.formats import get_format
from chunkpilot.formats.parquet import parquet_file
from chunkpilot.spec import RunSpec
from chunkpilot.store import Store
from launcher.collect.records import Merged, Tally, chunks_with_answers, json_value, merged_records

ROW_GROUP_ROWS = 65_536
INFER_ROWS = 4_096  # rows per table when inferring JSON Lines types


def error_type():
    import pyarrow as pa

    return pa.struct([("code", pa.string()), ("message", pa.string())])


def answer_values(answers: list[Any]) -> tuple[Any, list[Any]]:
    """(Arrow type, values) of an answer column: ``fixed_size_list<float32>`` for vectors of one
    length, else text (JSON text for anything that is not a string)."""
    import pyarrow as pa

    present = [a for a in answers if a is not None]
    if present and all(isinstance(a, list) and a and all(isinstance(x, (int, float)) for x in a) for a in present):
        dims = {len(a) for a in present}
        if len(dims) == 1:
            return pa.list_(pa.float32(), dims.pop()), answers
    return pa.string(), [a if a is None or isinstance(a, str) else json.dumps(a, ensure_ascii=False) for a in answers]


class _Writer:
    """Appends row batches to one Parquet file in row groups of ROW_GROUP_ROWS; the file's schema is
    the first batch's, and every later one is cast to it (or refused, saying why)."""

    def __init__(self, fd: int):
        self.sink = open(fd, "wb", closefd=False)
        self.writer = None
        self.buffered: list = []
        self.rows = 0

    def add(self, table) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.sink, table.schema, compression="zstd")
        elif table.schema != self.schema:
            try:
                table = table.cast(self.schema)
            except Exception as exc:  # noqa: BLE001 - arrow's cast errors
                raise OutputError(f"records do not fit one Parquet schema ({exc}); collect with --format records "
                                  "to get JSON Lines, which keeps every record as it is") from None
        self.buffered.append(table)
        self.rows += table.num_rows
        if self.rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.buffered:
            self.writer.write_table(pa.concat_tables(self.buffered), row_group_size=ROW_GROUP_ROWS)
            self.buffered, self.rows = [], 0

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
        self.sink.close()


def write_parquet(spec: RunSpec, run_store: Store, done: set[str], fd: int, output_key: str, tally: Tally) -> tuple[int, int]:
    """Write the merged records into the open file ``fd``; (records, error records)."""
    writer = _Writer(fd)
    try:
        if spec.input_format == "parquet":
            counts = _from_parquet(spec, run_store, done, writer, output_key, tally)
        else:
            counts = _from_records(spec, run_store, done, writer, output_key, tally)
        if writer.writer is None:  # no record at all: still a valid, empty file
            import pyarrow as pa

            writer.add(pa.table({output_key: pa.array([], pa.string()), f"{output_key}_error": pa.array([], error_type())}))
    finally:
        writer.close()
    return counts


def _with_answers(table, answers: list[Any], errors: list[Any], key: str):
    import pyarrow as pa

    if key in table.column_names or f"{key}_error" in table.column_names:
        clash = key if key in table.column_names else f"{key}_error"
        raise OutputError(f"the records already have a column {clash!r}: collect with another --output-key, e.g. --output-key answer")
    kind, values = answer_values(answers)
    table = table.append_column(key, pa.array(values, kind))
    return table.append_column(f"{key}_error", pa.array(errors, error_type()))


def _from_parquet(spec, run_store, done, writer: _Writer, key: str, tally: Tally) -> tuple[int, int]:
    """Parquet in: each input batch as it is (cast to the inputs' unified schema) plus its answers."""
    import pyarrow as pa

    schema = pa.unify_schemas([parquet_file(pin).schema_arrow for pin in spec.inputs], promote_options="permissive")
    fmt = get_format("parquet")
    records = errors = 0
    for manifest, answers in chunks_with_answers(spec, run_store, done, tally):
        for source, start, end, batch in fmt.batches(spec.inputs, manifest):
            table = pa.Table.from_batches([batch])
            missing = [f for f in schema if f.name not in table.column_names]
            for field in missing:
                table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            table = table.select(schema.names).cast(schema)
            outcomes = [answers.take((source, row)) for row in range(start, end)]
            writer.add(_with_answers(table, [a for a, _ in outcomes], [e for _, e in outcomes], key))
            records += len(outcomes)
            errors += sum(e is not None for _, e in outcomes)
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
