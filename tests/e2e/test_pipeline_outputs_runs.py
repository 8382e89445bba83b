"""Pipelines compose, run: another pipeline uses the generated one as a step; a returned metric that is not a number fails the run."""

from __future__ import annotations

import json

import pytest
import yaml

from helpers import PYTHON, build_notebook, run
from composablecase import OUTER, composable  # noqa: F401 (the fixture)


def _outer(folder, how, path):
    proc = run([PYTHON, "outer.py", how, path], folder, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("@@"))
    outer = yaml.safe_load((folder / "outer.yaml").read_text(encoding="utf-8"))
    return json.loads(line[2:]), outer


@pytest.mark.parametrize("how", ["yaml", "module"])
def test_another_pipeline_uses_it_as_a_step_and_reads_its_outputs(composable, how):
    path = composable / ("composable_pipeline.yaml" if how == "yaml" else "composable_pipeline.py")
    values, outer = _outer(composable, how, path)
    # score = mean([1, 2, 3, 6]) * SCALE, with SCALE = 3.0 given by the outer pipeline
    assert values == {"doubled": 18.0, "mean": 3.0}
    inner = next(task for task in outer["root"]["dag"]["tasks"].values()
                 if outer["components"][task["componentRef"]["name"]].get("dag"))
    assert inner["inputs"]["parameters"]["SCALE"]["componentInputParameter"] == "scale"


def test_a_local_run_fails_when_a_returned_metric_is_not_a_number(tmp_path):
    import nbformat

    nb = build_notebook([
        (["functions"], "def evaluate():\n    return {'accuracy': 0.75}"),
        (["step:evaluate"], "scores = evaluate()"),
        (["pipeline-metrics"], "scores"),
    ])
    nbformat.write(nb, tmp_path / "metrics.ipynb")
    from nbconvert_kfp.exporters import KFPExporter

    text, _ = KFPExporter().from_filename(str(tmp_path / "metrics.ipynb"))
    (tmp_path / "metrics_pipeline.py").write_text(text, encoding="utf-8")
    proc = run([PYTHON, "metrics_pipeline.py", "--local"], tmp_path, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert ("OutputError: metric 'scores' is not a number (dict): the pipeline returns it as a number"
            in proc.stdout), proc.stdout[-3000:]
