"""The cluster path: what the compiled pipeline carries into each step, KFP's cache keys, large code."""

from __future__ import annotations

import copy
import random

import nbformat
import pytest
import yaml

from nbconvert_kfp.exporters import KFPExporter, compile_script

from helpers import JUPYTER, PYTHON, SHARED_TASK, build_notebook, run, step_tasks

#: Linux refuses a single program argument longer than this (MAX_ARG_STRLEN).
MAX_ARG_STRLEN = 128 * 1024

CELLS = [
    (["imports"], "import math"),
    (["functions"], "def scale(v):\n    return v * 2"),
    (["pipeline-parameters"], "N = 3"),
    (["step:load"], "data = list(range(N))"),
    (["step:square"], "squares = [scale(v) ** 2 for v in data]"),
    (["step:total"], "total = math.fsum(squares)"),
    (["pipeline-metrics"], "total"),
]


def _compiled(cells, **traits) -> dict:
    script, _ = KFPExporter(**traits).from_notebook_node(build_notebook(cells), {"metadata": {"name": "cache"}})
    return yaml.safe_load(compile_script(script))


def _executors(spec: dict) -> dict[str, dict]:
    """Task name -> the container its executor runs (command, args, image)."""
    tasks = spec["root"]["dag"]["tasks"]
    return {name: spec["deploymentSpec"]["executors"][spec["components"][task["componentRef"]["name"]]
                                                      ["executorLabel"]]["container"]
            for name, task in tasks.items()}


def test_two_compilations_give_identical_commands_and_inputs():
    first, second = _compiled(CELLS), _compiled(CELLS)
    assert _executors(first) == _executors(second)
    assert first["root"]["dag"]["tasks"] == second["root"]["dag"]["tasks"]


def test_changing_one_steps_cells_changes_that_steps_command_only():
    edited = copy.deepcopy(CELLS)
    edited[4] = (["step:square"], "squares = [scale(v) ** 3 for v in data]")
    before, after = _executors(_compiled(CELLS)), _executors(_compiled(edited))
    changed = {task for task in before if before[task] != after[task]}
    assert changed == {"square"}
    # KFP's cache key is image + command + inputs: the other steps (the shared code included) are
    # served from the cache, and 'total' re-runs only because its input artifact is new.


def test_editing_the_shared_cells_changes_the_shared_code_step_only():
    edited = copy.deepcopy(CELLS)
    edited[1] = (["functions"], "def scale(v):\n    return v * 3")
    before, after = _executors(_compiled(CELLS)), _executors(_compiled(edited))
    assert {task for task in before if before[task] != after[task]} == {SHARED_TASK}


def test_every_step_takes_the_shared_code_and_carries_no_runtime():
    spec = _compiled(CELLS)
    for name, container in _executors(spec).items():
        assert max(len(part) for part in container["command"]) < 8 * 1024 or name == SHARED_TASK, name
    for name, task in step_tasks(spec).items():
        assert task["inputs"]["artifacts"]["bundle"]["taskOutputArtifact"]["producerTask"] == SHARED_TASK


# --- large code -----------------------------------------------------------------------------------------


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


@pytest.mark.e2e
def test_a_300_kb_step_and_a_200_kb_functions_cell_compile_small_enough_and_run(tmp_path):
    big, acc = _code_cell(300 * 1024)
    functions = _functions_cell(2100)
    assert len(functions) > 200 * 1024
    nb = build_notebook([(["functions"], functions), (["step:big"], big + "total = acc + helper_7(1)"),
                         (["step:after"], "result = total + helper_2099(2)")])
    nb.cells.append(nbformat.v4.new_code_cell("result", metadata={"tags": ["pipeline-metrics"]}))
    path = tmp_path / "large.ipynb"
    nbformat.write(nb, path)
    converted = run([JUPYTER, "nbconvert", "--to", "kfp", path.name], cwd=tmp_path)
    assert converted.returncode == 0, converted.stdout
    script = tmp_path / "large_pipeline.py"
    assert run([PYTHON, script], cwd=tmp_path).returncode == 0
    spec = yaml.safe_load((tmp_path / "large_pipeline.yaml").read_text(encoding="utf-8"))
    for name, container in _executors(spec).items():
        assert max(len(part.encode()) for part in container["command"]) < MAX_ARG_STRLEN, name
    local = run([PYTHON, script, "--local"], cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-4000:]
    expected = acc + 7 * 8 * 1 + 7 + 2 * (2099 % 9 + 1) * 2099 + 2099 % 97
    assert f"metric result = {float(expected)}" in local.stdout


@pytest.mark.slow
def test_a_step_too_large_even_compressed_is_a_clear_error(tmp_path):
    rng = random.Random(0)
    data = "".join(f"row_{i} = {[rng.randint(0, 10**9) for _ in range(8)]}\n" for i in range(5000))
    nb = build_notebook([(["step:a"], "x = 1"), (["step:huge"], data)])
    nbformat.write(nb, tmp_path / "huge.ipynb")
    result = run([JUPYTER, "nbconvert", "--to", "kfp", "huge.ipynb"], cwd=tmp_path)
    assert result.returncode == 1
    error = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(error) == 1 and "cell 2:" in error[0] and "128 KiB" in error[0] and "'huge'" in error[0]
    assert "Traceback" not in result.stdout and not (tmp_path / "huge_pipeline.py").exists()


# --- the size budget ------------------------------------------------------------------------------------


def _chain(steps: int) -> list:
    return [(["step:s0"], "x0 = 1"), *((([f"step:s{i}"], f"x{i} = x{i - 1} + 1")) for i in range(1, steps))]


@pytest.mark.slow
@pytest.mark.parametrize("runtime, warned", [("embedded", True), ("artifact", False)])
def test_a_pipeline_too_big_for_a_cluster_is_warned_about_with_figures(tmp_path, runtime, warned):
    nbformat.write(build_notebook(_chain(50)), tmp_path / "chain.ipynb")
    result = run([JUPYTER, "nbconvert", "--to", "kfp", "chain.ipynb", f"--KFPExporter.runtime={runtime}"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    warning = [line for line in result.stdout.splitlines() if "Argo refuses a Workflow over 1 MiB" in line]
    assert bool(warning) is warned, result.stdout
    if warned:
        assert "would not complete" in warning[0] and "50 steps" in warning[0] and "KiB per step" in warning[0]
        assert "keep the default runtime 'artifact'" in warning[0]


def test_the_estimate_from_the_script_agrees_with_the_one_from_the_compiled_spec():
    from nbconvert_kfp.analysis import workflowsize
    from nbconvert_kfp.exporters.kfp import _run_order

    script, resources = KFPExporter().from_notebook_node(build_notebook(_chain(30) + CELLS[:2]),
                                                         {"metadata": {"name": "agree"}})
    before = workflowsize.estimate_components(_run_order(resources["kfp"]))
    after = workflowsize.estimate_ir(yaml.safe_load(compile_script(script)))
    assert after.steps == before.steps == 31
    assert abs(before.created - after.created) < 0.1 * after.created
    for version in workflowsize.VERSIONS:
        assert abs(before.peak[version] - after.peak[version]) < 0.1 * after.peak[version], version


@pytest.mark.slow
def test_a_200_step_chain_keeps_its_margin_under_argos_limit():
    """Every step's command is copied into the run's Argo Workflow: a 200-step chain must leave room.

    The estimate runs about 5% below an emulation of KFP's backend (987,771 B emulated for 939,500 B
    estimated on KFP 2.14-2.16), so 90% here keeps the run under 95% of Argo's 1 MiB. KFP 2.17 stores
    every node twice: the chain must get through at least 150 steps there.
    """
    from nbconvert_kfp.analysis import workflowsize

    script, _ = KFPExporter().from_notebook_node(build_notebook([(["imports"], "import math"), *_chain(200)]),
                                                 {"metadata": {"name": "chain"}})
    estimate = workflowsize.estimate_ir(yaml.safe_load(compile_script(script)))
    assert estimate.steps == 201 and estimate.created < 0.75 * workflowsize.ARGO_LIMIT, estimate.describe()
    assert estimate.fails_after["KFP 2.14-2.16"] is None, estimate.describe()
    assert estimate.stored["KFP 2.14-2.16"][-1] <= 0.90 * workflowsize.ARGO_LIMIT, estimate.describe()
    assert (estimate.fails_after["KFP 2.17"] or 999) > 150, estimate.describe()
