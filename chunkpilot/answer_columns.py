"""A part's answers in columns, for ``collect -o out.parquet`` to take without parsing JSON lines.

Beside each part of a Parquet run (``layout.answer_columns``) the worker writes an Arrow IPC file
with one row per line of the part, in the part's order:

* ``source``, ``offset`` (int64): the record's position;
* ``answer``: the text of a completion or chat (a JSON answer's text, as the model wrote it), or
  for embeddings the first vector (``list<float32>``; base64 vectors decoded); null for an error;
* ``error``: ``struct<code, message>``, null when answered.

These are the values ``chunkpilot.control.collect.parquet`` reads from the part's lines when a part has no
such file, so the output is the same either way. The file is an optional copy, never the record
of what is committed: it is written after its part and only by the writer of that part (the one
whose ``put_if_absent`` took the name, or found its own identical bytes there), so it can only be
missing (a kill in between, parts written before these files existed), never stale. Pure but for
pyarrow: bytes in, bytes out.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from chunkpilot.output import position_of_id
from chunkpilot.requests.embedding import decode


def error_type():
    import pyarrow as pa

    return pa.struct([("code", pa.string()), ("message", pa.string())])


def line_answer(obj: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """(answer, error) of a parsed output line as the columns hold them (see the module's contract)."""
    error = obj.get("error")
    if error is not None:
        if not isinstance(error, dict):
            return None, {"code": "error", "message": str(error)}
        return None, {"code": _text(error.get("code")), "message": _text(error.get("message"))}
    body = (obj.get("response") or {}).get("body") or {}
    if body.get("data"):
        return decode(body["data"][0].get("embedding")), None
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    return _text(text if text is not None else choice.get("text")), None


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def table_of(lines: Iterable[bytes]):
    """The answer columns of a part's output lines, as an Arrow table."""
    import pyarrow as pa

    sources, offsets, answers, errors = [], [], [], []
    for line in lines:
        obj = json.loads(line)
        source, offset = position_of_id(obj.get("id"))
        answer, error = line_answer(obj)
        sources.append(source)
        offsets.append(offset)
        answers.append(answer)
        errors.append(error)
    vectors = any(isinstance(a, list) for a in answers)
    return pa.table({
        "source": pa.array(sources, pa.int64()),
        "offset": pa.array(offsets, pa.int64()),
        "answer": pa.array(answers, pa.list_(pa.float32()) if vectors else pa.string()),
        "error": pa.array(errors, error_type()),
    })


def encode(lines: Iterable[bytes]) -> bytes:
    """The Arrow IPC file of a part's output lines."""
    import pyarrow as pa

    table = table_of(lines)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def decode_table(data: bytes):
    """The table ``encode`` wrote; ValueError if ``data`` is not one."""
    import pyarrow as pa

    try:
        table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"not an answer-columns file: {exc}") from None
    if table.column_names != ["source", "offset", "answer", "error"]:
        raise ValueError(f"not an answer-columns file: columns {table.column_names}")
    return table
