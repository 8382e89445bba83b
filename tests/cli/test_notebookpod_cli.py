"""Inside a Kubeflow notebook server, through the CLI: compiled steps take the server's image and workspace; uploads go to its namespace."""

from __future__ import annotations

import json
import os
import subprocess

import nbformat

import fakekfp

from compiledir import IR, compile_all
from fakekube import CLAIM, DIGEST, IMAGE, NAMESPACE, POD, fake_kube  # noqa: F401 (fake_kube: the fixture)
from helpers import JUPYTER, PYTHON, VENV_BIN, build_notebook
from notebookservercase import CELLS, PINNED
from notebookservercase import notebook_server, workspace  # noqa: F401 (the fixtures)

fake_kfp = fakekfp.fake_kfp  # the fixture

COMMAND = [str(VENV_BIN / "nbconvert-kfp")] if (VENV_BIN / "nbconvert-kfp").exists() else [
    PYTHON, "-m", "nbconvert_kfp.command"]


def _clean_environment(**extra) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES") and k != "KUBECONFIG"}
    environment.update(extra)
    return environment


def test_jupyter_nbconvert_in_a_notebook_server_compiles_steps_with_its_image_and_workspace(notebook_server,
                                                                                             workspace):
    nbformat.write(build_notebook(CELLS), workspace / "analysis.ipynb")
    result = subprocess.run([JUPYTER, "nbconvert", "--to", "kfp", "--KFPExporter.mount_workspace=True",
                             "analysis.ipynb"], cwd=workspace, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (f"inside Kubeflow notebook server {NAMESPACE}/{POD}: steps use its image {PINNED}; --run and --upload "
            f"default to its namespace {NAMESPACE}; its workspace volume {CLAIM} is mounted at {workspace} in every "
            "step") in result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert f"workspace volume {CLAIM} is ReadWriteOnce: steps scheduled on another node" in warning

    compiled, docs = compile_all(workspace / "analysis_pipeline.py")
    assert compiled.returncode == 0, compiled.stderr
    ir = IR(docs)
    images = {task: container["image"] for task, container in ir.containers().items()}
    assert images == {"load": PINNED, "train": PINNED, "count": "python:3.12-slim"}  # the image: tag wins
    for task in ir.tasks:
        assert ir.mounts(task) == {str(workspace): ("pvc", CLAIM)}


def test_uploads_and_runs_from_a_notebook_server_go_to_its_namespace_unless_one_is_given(notebook_server, workspace,
                                                                                          fake_kfp):
    nbformat.write(build_notebook(CELLS), workspace / "analysis.ipynb")
    environment = _clean_environment(HOME=str(workspace))
    uploaded = subprocess.run([*COMMAND, "run", "analysis.ipynb", "--host", fake_kfp.url, "--no-wait"],
                              cwd=workspace, capture_output=True, text=True, timeout=180, env=environment)
    assert uploaded.returncode == 0, uploaded.stderr
    assert f"Namespace {NAMESPACE}: this Kubeflow notebook server's (--namespace chooses another)" in uploaded.stdout
    assert (f"nbconvert-kfp: inside Kubeflow notebook server {NAMESPACE}/{POD}: steps use its image {PINNED}"
            in uploaded.stderr)
    [pipeline] = fake_kfp.pipelines.values()
    [experiment] = fake_kfp.experiments.values()
    assert pipeline["namespace"] == experiment["namespace"] == NAMESPACE

    # The generated script's --upload; an explicit --namespace wins.
    script = workspace / "analysis_pipeline.py"
    given = subprocess.run([PYTHON, str(script), "--upload", "--host", fake_kfp.url, "--namespace", "team-b"],
                           cwd=workspace, capture_output=True, text=True, timeout=180, env=environment)
    assert given.returncode == 0, given.stderr
    assert "Namespace" not in given.stdout
    # A namespace set in kfp's context file wins too: kfp applies it to runs, we add none.
    context = workspace / ".config" / "kfp" / "context.json"
    context.parent.mkdir(parents=True)
    context.write_text(json.dumps({"namespace": "team-c"}))
    chosen = subprocess.run([PYTHON, str(script), "--upload", "--host", fake_kfp.url], cwd=workspace,
                            capture_output=True, text=True, timeout=180, env=environment)
    assert chosen.returncode == 0, chosen.stderr
    assert "Namespace" not in chosen.stdout
    lookups = [call.query.get("namespace") for call in fake_kfp.calls("GET", "/pipelines")]
    assert lookups == [NAMESPACE, "team-b", None]
