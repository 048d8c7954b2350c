"""Every CLI error path of issue 32's inputs ends in one line that says what to fix, never a traceback.

The real ``launcher`` in a subprocess (what a user sees on stderr), on a finished echo run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import write_jsonl


def launcher(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A finished echo run ``done`` over ``in.jsonl``, and a second copy of the input to edit."""
    root = tmp_path_factory.mktemp("errors")
    store = root / "runs"
    path = write_jsonl(root / "in.jsonl", [{"custom_id": f"r{i}", "prompt": f"record {i}", "tags": ["a", "b"]}
                                           for i in range(12)])
    done = launcher("submit", path, "--chunks", 2, "--engine", "echo", "--store", store, "--run-name", "done", "--watch")
    assert done.returncode == 0, done.stderr
    changed = write_jsonl(root / "changed.jsonl", [{"prompt": f"record {i}"} for i in range(6)])
    run = launcher("submit", changed, "--chunks", 1, "--engine", "echo", "--store", store, "--run-name", "changed", "--watch")
    assert run.returncode == 0, run.stderr
    with open(changed, "ab") as f:
        f.write(b'{"prompt": "appended"}\n')
    return {"root": root, "store": store, "input": path}


def cases(w):
    """(name, argv, what the one line must say) for each refusal."""
    store, path, root = w["store"], w["input"], w["root"]
    submit = ("submit", path, "--chunks", 1, "--engine", "echo", "--store", store, "--dry-run")
    return [
        ("unknown filter", (*submit, "--prompt-template", '{{ tags | joinn(", ") }}'), "unknown filter 'joinn'"),
        ("unknown test", (*submit, "--prompt-template", "{% if prompt is nosuchtest %}x{% endif %}"), "unknown test 'nosuchtest'"),
        ("template syntax", (*submit, "--prompt-template", "{{ prompt "), "does not parse"),
        ("collect onto its input", ("collect", "done", "--store", store, "-o", path), "is an input of run done"),
        ("collect into the run", ("collect", "done", "--store", store, "-o", store / "done" / "x.jsonl"), "inside run done's folder"),
        ("changed input", ("collect", "changed", "--store", store, "-o", root / "c.jsonl"), "changed.jsonl"),
        ("regex echo cannot follow", (*submit, "--regex", "(?=a)b"), "the echo engine cannot build an answer"),
        ("output folder under a file", ("collect", "done", "--store", store, "-o", path / "x.jsonl"), "cannot write"),
        ("changed input, partial", ("collect", "changed", "--store", store, "-o", root / "c.jsonl", "--allow-partial",
                                    "--format", "records"), "changed.jsonl"),
    ]


@pytest.mark.parametrize("index", range(9))
def test_each_refusal_is_one_line_without_a_traceback(world, index):
    name, argv, says = cases(world)[index]
    result = launcher(*argv)
    assert result.returncode != 0, name
    assert "Traceback" not in result.stderr + result.stdout, name
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and says in errors[0], (name, result.stderr)
