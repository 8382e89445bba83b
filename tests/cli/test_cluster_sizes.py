"""The cluster path through the CLI: pipelines too large for a step or for Argo are errors or warnings with figures; a 200-step chain keeps its margin."""

from __future__ import annotations

import random

import nbformat
import pytest
import yaml

from nbconvert_kfp.exporters import KFPExporter, compile_script

from clustercase import chain_cells
from helpers import build_notebook, nbconvert


def test_a_step_too_large_even_compressed_is_a_clear_error(tmp_path):
    rng = random.Random(0)
    data = "".join(f"row_{i} = {[rng.randint(0, 10**9) for _ in range(8)]}\n" for i in range(5000))
    nb = build_notebook([(["step:a"], "x = 1"), (["step:huge"], data)])
    nbformat.write(nb, tmp_path / "huge.ipynb")
    result = nbconvert(["--to", "kfp", "huge.ipynb"], cwd=tmp_path, merge=True)
    assert result.returncode == 1
    error = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert len(error) == 1 and "cell 2:" in error[0] and "128 KiB" in error[0] and "'huge'" in error[0]
    assert "Traceback" not in result.stdout and not (tmp_path / "huge_pipeline.py").exists()


@pytest.mark.parametrize("runtime, warned", [("embedded", True), ("artifact", False)])
def test_a_pipeline_too_big_for_a_cluster_is_warned_about_with_figures(tmp_path, runtime, warned):
    nbformat.write(build_notebook(chain_cells(50)), tmp_path / "chain.ipynb")
    result = nbconvert(["--to", "kfp", "chain.ipynb", f"--KFPExporter.runtime={runtime}"], cwd=tmp_path,
                       merge=True)
    assert result.returncode == 0, result.stdout
    warning = [line for line in result.stdout.splitlines() if "Argo refuses a Workflow over 1 MiB" in line]
    assert bool(warning) is warned, result.stdout
    if warned:
        assert "would not complete" in warning[0] and "50 steps" in warning[0] and "KiB per step" in warning[0]
        assert "keep the default runtime 'artifact'" in warning[0]


def test_a_200_step_chain_keeps_its_margin_under_argos_limit():
    """Every step's command is copied into the run's Argo Workflow: a 200-step chain must leave room.

    The estimate runs about 5% below an emulation of KFP's backend (987,771 B emulated for 939,500 B
    estimated on KFP 2.14-2.16), so 90% here keeps the run under 95% of Argo's 1 MiB. KFP 2.17 stores
    every node twice: the chain must get through at least 150 steps there.
    """
    from nbconvert_kfp.analysis import workflowsize

    script, _ = KFPExporter().from_notebook_node(build_notebook([(["imports"], "import math"), *chain_cells(200)]),
                                                 {"metadata": {"name": "chain"}})
    estimate = workflowsize.estimate_ir(yaml.safe_load(compile_script(script)))
    assert estimate.steps == 201 and estimate.created < 0.75 * workflowsize.ARGO_LIMIT, estimate.describe()
    assert estimate.fails_after["KFP 2.14-2.16"] is None, estimate.describe()
    assert estimate.stored["KFP 2.14-2.16"][-1] <= 0.90 * workflowsize.ARGO_LIMIT, estimate.describe()
    assert (estimate.fails_after["KFP 2.17"] or 999) > 150, estimate.describe()
