"""Notebooks that convert but once failed or went wrong when run: through the generated script's --local."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

from helpers import PYTHON, build_notebook, nbconvert, run, script_tasks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local runs fork (Linux)")


def _convert(tmp_path: Path, cells, name: str = "nb") -> Path:
    notebook = tmp_path / f"{name}.ipynb"
    nbformat.write(build_notebook(cells), notebook)
    result = nbconvert(["--to", "kfp", notebook.name], cwd=tmp_path, merge=True)
    assert result.returncode == 0, result.stdout
    return tmp_path / f"{name}_pipeline.py"


def _local(script: Path, *args: str):
    return run([PYTHON, script.name, "--local", *args], cwd=script.parent, timeout=300)


def test_steps_whose_names_differ_only_by_underscores_get_their_own_tasks(tmp_path):
    script = _convert(tmp_path, [(["step:a_b"], "x = 1"), (["step:a__b"], "y = x + 1"),
                                 (["step:a-b"], "z = y + 1\nassert z == 3")])
    tasks = list(script_tasks(script).values())
    assert len(set(tasks)) == 3, tasks
    result = _local(script)
    assert result.returncode == 0, result.stdout
    for task in tasks:
        assert f"/{task}/report.html" in result.stdout, result.stdout


def test_a_thousand_character_step_name_runs_locally(tmp_path):
    long_name = "l" * 1000
    script = _convert(tmp_path, [(["step:a"], "x = 1"), ([f"step:{long_name}"], "y = x + 1\nassert y == 2"),
                                 ([f"step:{long_name}x"], "z = y + 1\nassert z == 3")])
    tasks = list(script_tasks(script).values())
    assert len(set(tasks)) == 3 and all(len(task) <= 63 for task in tasks), tasks
    result = _local(script)
    assert result.returncode == 0, result.stdout
    assert "File name too long" not in result.stdout


def test_an_open_file_inside_a_list_fails_the_saving_step_naming_the_variable_and_the_path(tmp_path):
    script = _convert(tmp_path, [
        (["step:write"], 'log = open("log.txt", "w")\nlog.write("first line")\nhandles = [1, {"log": log}]'),
        (["step:read"], 'handles[1]["log"].write("second")'),
    ])
    result = _local(script)
    assert result.returncode != 0, result.stdout
    assert "step 'write' cannot save variable 'handles' (builtins.list)" in result.stdout, result.stdout
    assert "_io.TextIOWrapper at [1]['log']" in result.stdout, result.stdout
    assert "an open file belongs to the process that opened it" in result.stdout
    assert "Traceback" not in result.stdout.split("cannot save variable")[0][-2000:]


@pytest.mark.parametrize("mode", [[], ["--cold-start"]], ids=["warm", "cold"])
def test_a_step_killed_while_saving_leaves_no_scratch_folder(tmp_path, mode):
    script = _convert(tmp_path, [
        (["functions"], "import os, signal\n\nclass Bomb:\n    def __reduce__(self):\n"
                        "        os.kill(os.getpid(), signal.SIGKILL)"),
        (["step:write"], "value = Bomb()"),
        (["step:read"], "print(value)"),
    ])
    result = _local(script, *mode)
    assert result.returncode != 0, result.stdout
    outputs = tmp_path / "local_outputs"
    assert list(outputs.rglob("write")), result.stdout
    assert not list(outputs.rglob(".partial-*")), list(outputs.rglob(".partial-*"))


@pytest.mark.parametrize("mode", [[], ["--cold-start"]], ids=["warm", "cold"])
@pytest.mark.parametrize("call, words", [("sys.exit(0)", "the cell called sys.exit(0)"),
                                         ("exit()", "the cell called sys.exit()"),
                                         ("os._exit(0)", "exited (os._exit?) before the step's cells finished")])
def test_a_cell_that_exits_fails_its_step_and_the_next_step_never_starts(tmp_path, mode, call, words):
    script = _convert(tmp_path, [(["step:a"], "import os, sys\nx = 1"), ([], f"{call}\nx = 2"),
                                 (["step:b"], "print(x)")])
    result = _local(script, "--no-cache", *mode)
    assert result.returncode == 1, result.stdout
    assert "FAILED    a" in result.stdout and "notebook cell 2" in result.stdout, result.stdout
    assert words in result.stdout, result.stdout
    assert "started   b" not in result.stdout
    assert "Tried to get output" not in result.stdout and "kfp/local" not in result.stdout, result.stdout
