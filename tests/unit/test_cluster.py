"""The cluster path: what the compiled pipeline carries into each step, KFP's cache keys, large code."""

from __future__ import annotations

import copy

import yaml

from nbconvert_kfp.exporters import KFPExporter, compile_script

from helpers import SHARED_TASK, build_notebook, step_tasks
from clustercase import chain_cells, step_executors


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




def test_two_compilations_give_identical_commands_and_inputs():
    first, second = _compiled(CELLS), _compiled(CELLS)
    assert step_executors(first) == step_executors(second)
    assert first["root"]["dag"]["tasks"] == second["root"]["dag"]["tasks"]


def test_changing_one_steps_cells_changes_that_steps_command_only():
    edited = copy.deepcopy(CELLS)
    edited[4] = (["step:square"], "squares = [scale(v) ** 3 for v in data]")
    before, after = step_executors(_compiled(CELLS)), step_executors(_compiled(edited))
    changed = {task for task in before if before[task] != after[task]}
    assert changed == {"square"}
    # KFP's cache key is image + command + inputs: the other steps (the shared code included) are
    # served from the cache, and 'total' re-runs only because its input artifact is new.


def test_editing_the_shared_cells_changes_the_shared_code_step_only():
    edited = copy.deepcopy(CELLS)
    edited[1] = (["functions"], "def scale(v):\n    return v * 3")
    before, after = step_executors(_compiled(CELLS)), step_executors(_compiled(edited))
    assert {task for task in before if before[task] != after[task]} == {SHARED_TASK}


def test_every_step_takes_the_shared_code_and_carries_no_runtime():
    spec = _compiled(CELLS)
    for name, container in step_executors(spec).items():
        assert max(len(part) for part in container["command"]) < 8 * 1024 or name == SHARED_TASK, name
    for name, task in step_tasks(spec).items():
        assert task["inputs"]["artifacts"]["bundle"]["taskOutputArtifact"]["producerTask"] == SHARED_TASK


# --- large code -----------------------------------------------------------------------------------------








# --- the size budget ------------------------------------------------------------------------------------





def test_the_estimate_from_the_script_agrees_with_the_one_from_the_compiled_spec():
    from nbconvert_kfp.analysis import workflowsize
    from nbconvert_kfp.exporters.kfp import _run_order

    script, resources = KFPExporter().from_notebook_node(build_notebook(chain_cells(30) + CELLS[:2]),
                                                         {"metadata": {"name": "agree"}})
    before = workflowsize.estimate_components(_run_order(resources["kfp"]))
    after = workflowsize.estimate_ir(yaml.safe_load(compile_script(script)))
    assert after.steps == before.steps == 31
    assert abs(before.created - after.created) < 0.1 * after.created
    for version in workflowsize.VERSIONS:
        assert abs(before.peak[version] - after.peak[version]) < 0.1 * after.peak[version], version


