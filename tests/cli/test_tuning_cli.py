"""Tuning through the CLI and the script: bad searches, Katib options and values, submitting an Experiment."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from nbconvert_kfp.script.tuning import katib

from helpers import PYTHON, build_notebook, nbconvert, run, script_constant
from tuningcase import (
    CELLS,
    KATIB,
    KubernetesStandIn,
    changed,
    check_with_katib,
    convert,
    katib_trial,
    metadata,
    search_of,
    stand_in,
)


def test_a_bad_search_is_one_line_from_jupyter_nbconvert_and_writes_nothing(tmp_path):
    path = tmp_path / "bad_search.ipynb"
    path.write_text(json.dumps(build_notebook(CELLS, metadata=metadata(changed("parameters.0.name", "LRATE")))),
                    encoding="utf-8")
    result = nbconvert(["--to", "kfp", path.name], cwd=tmp_path, merge=True)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    [error] = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert error.endswith("kubeflow_notebook.katib_metadata.parameters[0].name: 'LRATE' is not a pipeline parameter "
                          "(parameters: LR, DEPTH, KIND, FLAG)")
    assert not (tmp_path / "bad_search_pipeline.py").exists()


def test_without_katib_run_a_bad_search_is_a_warning_and_tune_says_there_is_none(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        script, resources = convert(CELLS, changed("objective.objectiveMetricName", "val-loss"), run=False)
    assert resources["kfp"]["tuning"] is None and script_constant(script, "TUNING") is None
    [warning] = [r.getMessage() for r in caplog.records if "katib_metadata" in r.getMessage()]
    assert "objectiveMetricName: 'val-loss' is not a pipeline-metrics variable" in warning
    assert "no hyperparameter search (--tune)" in warning
    path = tmp_path / "x_pipeline.py"
    path.write_text(script, encoding="utf-8")
    result = run([PYTHON, path.name, "--tune"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    assert ("--tune: the notebook has no hyperparameter search; give it kubeflow_notebook.katib_metadata"
            in result.stdout)


def test_katib_values_reach_the_script_as_data_whatever_they_hold(tmp_path):
    spec = changed("parameters.2.feasibleSpace.list", ["a b", "$(touch pwned)", "it's; rm -rf x", "`id`"])
    script = stand_in(tmp_path, spec)
    search = search_of(spec)
    manifest = katib.experiment(search, "stand-in", image="example.org/tune:1", script=str(script), python=PYTHON)
    check_with_katib(manifest)
    for value in spec["parameters"][2]["feasibleSpace"]["list"]:
        (tmp_path / "argv.json").unlink(missing_ok=True)
        katib_trial(manifest, {"LR": "0.2", "DEPTH": "3", "KIND": value}, tmp_path)
        argv = json.loads((tmp_path / "argv.json").read_text())
        assert argv[argv.index("KIND") + 1] == value
    assert not (tmp_path / "pwned").exists()


def test_katib_experiment_options_come_as_a_set(tmp_path):
    script, _ = convert(CELLS, KATIB)
    path = tmp_path / "x_pipeline.py"
    path.write_text(script, encoding="utf-8")
    result = run([PYTHON, path.name, "--katib-experiment", "x.yaml"], cwd=tmp_path)
    assert result.returncode == 2 and "--katib-experiment needs --katib-image" in result.stdout
    result = run([PYTHON, path.name, "--katib-image", "x:1"], cwd=tmp_path)
    assert result.returncode == 2 and "--katib-image: only with --katib-experiment" in result.stdout
    result = run([PYTHON, path.name, "--seed", "3"], cwd=tmp_path)
    assert result.returncode == 2 and "--seed: only with --tune" in result.stdout
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("status", [201, 403])
def test_katib_submit_creates_the_experiment_in_the_context_namespace(tmp_path, status):
    script, _ = convert(CELLS, KATIB)
    path = tmp_path / "x_pipeline.py"
    path.write_text(script, encoding="utf-8")
    cluster = KubernetesStandIn(status)
    try:
        result = run([PYTHON, path.name, "--katib-experiment", "x.yaml", "--katib-image", "example.org/x:1",
                      "--katib-submit"], cwd=tmp_path, KUBECONFIG=str(cluster.kubeconfig(tmp_path)),
                     KUBERNETES_SERVICE_HOST="")
    finally:
        cluster.server.shutdown()
    [(where, body)] = cluster.created
    assert where == "/apis/kubeflow.org/v1beta1/namespaces/team-b/experiments"
    assert body == yaml.safe_load((tmp_path / "x.yaml").read_text())
    assert "not-a-real-token" not in result.stdout and "Traceback" not in result.stdout
    if status == 201:
        assert result.returncode == 0 and "Created Katib Experiment team-b/tune-nb" in result.stdout
    else:
        assert result.returncode == 1
        [line] = [line for line in result.stdout.splitlines() if "failed" in line]
        assert line.startswith("--katib-experiment: creating Katib Experiment team-b/tune-nb failed: HTTP 403: ")
        assert "admission webhook denied the request" in line
