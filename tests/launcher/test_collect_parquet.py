"""Reading a chunk's answers for Parquet output: positions from part names when the parts hold every
row of their intervals, from the output lines' ids when they overlap (a zombie's part); from the
parts' answer columns where the worker wrote them, with the same values as from their lines."""

from __future__ import annotations

import pytest

from chunkpilot import answer_columns, layout
from chunkpilot.layout import PartName
from chunkpilot.output import error_line, ok_line
from chunkpilot.requests import Request, Result
from chunkpilot.store.local import LocalStore
from chunkpilot.merge import Drop, merge_plan
from chunkpilot.control.collect.parquet import _line_schema, parts_answers

RUN = "r"


def write_part(store: LocalStore, first: int, end: int, attempt: int, seq: int, failing: set[int] = frozenset(),
               columns: bool = False) -> None:
    lines = []
    for row in range(first, end):
        if row in failing:
            lines.append(error_line(RUN, (0, row), str(row), "template_error", f"row {row}"))
        else:
            request = Request((0, row), str(row), "completion", {}, prompt="p")
            lines.append(ok_line(RUN, request, Result("x", text=f"answer {row} a{attempt}", finish_reason="stop"), "m", "rev"))
    part = PartName((0, first), (0, end), attempt, seq, end - first, len(failing & set(range(first, end))))
    store.put(layout.part("0000", part), b"".join(lines))
    if columns:
        store.put(layout.answer_columns(layout.part("0000", part)), answer_columns.encode(lines))


def answers_of(store: LocalStore, use_columns: bool = True):
    parts = [(layout.parse_output(o.key)[1], o) for o in store.list(layout.outputs("0000"))]
    parts = [(PartName.parse(name), info) for name, info in parts]
    steps = [s for s in merge_plan(parts, read_all=True) if not isinstance(s, Drop)]
    columns = set(store.keys(layout.ANSWER_COLUMNS)) if use_columns else set()
    sources, offsets, answers, errors = parts_answers(store, steps, _line_schema(), columns)
    return list(zip(sources.tolist(), offsets.tolist())), answers.to_pylist(), errors.to_pylist()


def test_parts_holding_every_row_in_order_give_positions_from_their_names(tmp_path):
    store = LocalStore(tmp_path)
    write_part(store, 0, 10, 1, 0, failing={3})
    write_part(store, 10, 25, 1, 1)
    positions, answers, errors = answers_of(store)
    assert positions == [(0, row) for row in range(25)]
    assert answers[:3] == ["answer 0 a1", "answer 1 a1", "answer 2 a1"] and answers[3] is None
    assert errors[3]["code"] == "template_error" and errors[3]["message"] == "row 3" and errors[4] is None


def test_a_zombies_overlapping_part_gives_each_row_once_from_the_line_ids(tmp_path):
    store = LocalStore(tmp_path)
    write_part(store, 0, 10, 1, 0)
    write_part(store, 5, 20, 2, 0)  # a later attempt redid rows 5..9 and went on
    positions, answers, _ = answers_of(store)
    assert positions == [(0, row) for row in range(20)]
    assert answers[9] == "answer 9 a1" and answers[10] == "answer 10 a2"


@pytest.mark.parametrize("with_columns", [{0, 1, 2}, {1}, {0, 2}])
def test_answer_columns_give_what_the_lines_give(tmp_path, with_columns):
    """Parts with and without answer columns, overlapping (a zombie's part): the same answers as
    from the lines alone, in order, each row once."""
    store = LocalStore(tmp_path)
    write_part(store, 0, 10, 1, 0, failing={3}, columns=0 in with_columns)
    write_part(store, 5, 20, 2, 0, failing={12}, columns=1 in with_columns)
    write_part(store, 20, 30, 2, 1, columns=2 in with_columns)
    assert len(list(store.keys(layout.ANSWER_COLUMNS))) == len(with_columns)
    from_columns, from_lines = answers_of(store), answers_of(store, use_columns=False)
    assert from_columns == from_lines
    positions, answers, errors = from_columns
    assert positions == [(0, row) for row in range(30)]
    assert answers[9] == "answer 9 a1" and answers[10] == "answer 10 a2" and answers[3] is None
    assert errors[12] == {"code": "template_error", "message": "row 12"}


@pytest.mark.parametrize("damage", ["truncated", "other rows", "not arrow"])
def test_damaged_answer_columns_are_passed_over_for_the_lines(tmp_path, damage):
    store = LocalStore(tmp_path)
    write_part(store, 0, 10, 1, 0, columns=True)
    write_part(store, 10, 20, 1, 1, columns=True)
    key = layout.answer_columns(next(o.key for o in store.list(layout.outputs("0000")) if "a1-00001" in o.key))
    body = store.get(key)
    store.put(key, {"truncated": body[: len(body) // 2], "not arrow": b"{}",
                    "other rows": answer_columns.encode([store.get(next(iter(store.keys(layout.outputs("0000")))))
                                                         .splitlines(keepends=True)[0]])}[damage])
    positions, answers, _ = answers_of(store)
    assert positions == [(0, row) for row in range(20)]
    assert answers == [f"answer {row} a1" for row in range(20)]


def test_vectors_and_json_answers_in_columns_match_the_lines(tmp_path):
    """Embeddings (floats and base64) become float32 vectors, chat answers their text, either way."""
    from chunkpilot.requests.embedding import encode

    store = LocalStore(tmp_path)
    lines = []
    for row in range(6):
        request = Request((0, row), str(row), "embedding", {"encoding_format": "base64"} if row % 2 else {}, inputs=["t"])
        lines.append(ok_line(RUN, request, Result("x", embeddings=[[row + 0.5, -1.0, 2.25]]), "m", "rev"))
    lines.append(error_line(RUN, (0, 6), "6", "empty_input", "the input is empty"))
    part = PartName((0, 0), (0, 7), 1, 0, 7, 1)
    store.put(layout.part("0000", part), b"".join(lines))
    store.put(layout.answer_columns(layout.part("0000", part)), answer_columns.encode(lines))
    assert encode([1.5, -1.0, 2.25]) in lines[1].decode()  # the odd rows are base64 on the line
    for use_columns in (True, False):
        _, answers, errors = answers_of(store, use_columns)
        assert answers == [[row + 0.5, -1.0, 2.25] for row in range(6)] + [None], use_columns
        assert errors[6]["code"] == "empty_input"
