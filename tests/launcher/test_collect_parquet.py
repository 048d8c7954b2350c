"""Reading a chunk's answers for Parquet output: positions from part names when the parts hold every
row of their intervals, from the output lines' ids when they overlap (a zombie's part)."""

from __future__ import annotations

from chunkpilot import layout
from chunkpilot.layout import PartName
from chunkpilot.output import error_line, ok_line
from chunkpilot.requests import Request, Result
from chunkpilot.store.local import LocalStore
from launcher.collect.merge import Drop, merge_plan
from launcher.collect.parquet import _line_schema, parts_answers

RUN = "r"


def write_part(store: LocalStore, first: int, end: int, attempt: int, seq: int, failing: set[int] = frozenset()) -> None:
    lines = []
    for row in range(first, end):
        if row in failing:
            lines.append(error_line(RUN, (0, row), str(row), "template_error", f"row {row}"))
        else:
            request = Request((0, row), str(row), "completion", {}, prompt="p")
            lines.append(ok_line(RUN, request, Result("x", text=f"answer {row} a{attempt}", finish_reason="stop"), "m", "rev"))
    part = PartName((0, first), (0, end), attempt, seq, end - first, len(failing & set(range(first, end))))
    store.put(layout.part("0000", part), b"".join(lines))


def answers_of(store: LocalStore):
    parts = [(layout.parse_output(o.key)[1], o) for o in store.list(layout.outputs("0000"))]
    parts = [(PartName.parse(name), info) for name, info in parts]
    steps = [s for s in merge_plan(parts, read_all=True) if not isinstance(s, Drop)]
    sources, offsets, answers, errors = parts_answers(store, steps, _line_schema())
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
