"""The cluster path end to end: a large step compiles small enough and still runs."""

from __future__ import annotations

import random

import nbformat
import yaml

from clustercase import step_executors
from helpers import PYTHON, build_notebook, nbconvert, run

#: Linux refuses a single program argument longer than this (MAX_ARG_STRLEN).
MAX_ARG_STRLEN = 128 * 1024


def _code_cell(size: int, seed: int = 1) -> tuple[str, int]:
    """About ``size`` bytes of straight-line code folding values into ``acc``; returns it and its result."""
    rng = random.Random(seed)
    lines, acc, i = ["acc = 0\n"], 0, 0
    while sum(map(len, lines)) < size:
        a, b = rng.randint(1, 999), rng.randint(1, 99)
        lines.append(f"value_{i} = ({a} * {b}) if acc % {b} else acc + {a}  # step {i}: the next value\n"
                     f"acc = (acc + value_{i}) % 1000003  # fold value_{i} into the running total\n")
        acc = (acc + ((a * b) if acc % b else acc + a)) % 1000003
        i += 1
    return "".join(lines), acc


def _functions_cell(count: int) -> str:
    return "".join(f"def helper_{i}(v, scale={i % 9 + 1}):\n    '''Scale v by {i} and shift it.'''\n"
                   f"    return v * scale * {i} + {i % 97}\n\n" for i in range(count))


def test_a_300_kb_step_and_a_200_kb_functions_cell_compile_small_enough_and_run(tmp_path):
    big, acc = _code_cell(300 * 1024)
    functions = _functions_cell(2100)
    assert len(functions) > 200 * 1024
    nb = build_notebook([(["functions"], functions), (["step:big"], big + "total = acc + helper_7(1)"),
                         (["step:after"], "result = total + helper_2099(2)")])
    nb.cells.append(nbformat.v4.new_code_cell("result", metadata={"tags": ["pipeline-metrics"]}))
    path = tmp_path / "large.ipynb"
    nbformat.write(nb, path)
    converted = nbconvert(["--to", "kfp", path.name], cwd=tmp_path, merge=True)
    assert converted.returncode == 0, converted.stdout
    script = tmp_path / "large_pipeline.py"
    assert run([PYTHON, script], cwd=tmp_path).returncode == 0
    spec = yaml.safe_load((tmp_path / "large_pipeline.yaml").read_text(encoding="utf-8"))
    for name, container in step_executors(spec).items():
        assert max(len(part.encode()) for part in container["command"]) < MAX_ARG_STRLEN, name
    local = run([PYTHON, script, "--local"], cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-4000:]
    expected = acc + 7 * 8 * 1 + 7 + 2 * (2099 % 9 + 1) * 2099 + 2099 % 97
    assert f"metric result = {float(expected)}" in local.stdout
