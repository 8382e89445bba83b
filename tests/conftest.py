"""Shared fixtures for the nbconvert-kfp tests."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

#: The directory of the venv's executables (python, jupyter).
VENV_BIN = Path(sys.executable).parent
#: Fixture notebooks shipped with the tests.
NOTEBOOKS = Path(__file__).parent / "notebooks"


def _build_notebook(cells, metadata=None):
    """Notebook from ``(tags, source)`` pairs; a ready-made cell node is used as is.

    ``tags`` may be a list, a single tag string, or ``None``/``[]`` for an untagged cell.
    """
    built = []
    for cell in cells:
        if isinstance(cell, nbformat.NotebookNode):
            built.append(cell)
            continue
        tags, source = cell
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        built.append(new_code_cell(source, metadata={"tags": tags} if tags else {}))
    nb = new_notebook(cells=built)
    nb.metadata.update({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    })
    nb.metadata.update(metadata or {})
    return nb


@pytest.fixture
def make_nb():
    """``make_nb([(tags, source), ...], metadata=None)`` -> a v4 notebook node."""
    return _build_notebook


@pytest.fixture
def convert():
    """``convert(nb, name="nb", **exporter_kwargs)`` -> ``(script, resources)`` via KFPExporter."""
    from nbconvert_kfp.exporter import KFPExporter

    def _convert(nb, name="nb", **kwargs):
        return KFPExporter(**kwargs).from_notebook_node(nb, {"metadata": {"name": name}})

    return _convert


@pytest.fixture
def pipeline_model(make_nb, convert):
    """``pipeline_model([(tags, source), ...])`` -> ``resources["kfp"]`` with ``steps`` keyed by name."""

    def _model(cells, **kwargs):
        _, resources = convert(make_nb(cells), **kwargs)
        model = dict(resources["kfp"])
        model["step_order"] = [step["name"] for step in model["steps"]]
        model["steps"] = {step["name"]: step for step in model["steps"]}
        return model

    return _model


@pytest.fixture
def run_nbconvert():
    """``run_nbconvert(path, *args)`` runs ``jupyter nbconvert --to kfp`` in the notebook's directory."""

    def _run(path, *args):
        path = Path(path)
        return subprocess.run(
            [str(VENV_BIN / "jupyter"), "nbconvert", "--to", "kfp", *args, path.name],
            cwd=path.parent, capture_output=True, text=True, timeout=120,
        )

    return _run


@pytest.fixture
def compile_script():
    """``compile_script(script_path)`` runs the generated script; returns the loaded IR YAML."""
    import yaml

    def _compile(script_path):
        script_path = Path(script_path)
        result = subprocess.run([sys.executable, str(script_path)], cwd=script_path.parent,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(script_path.with_suffix(".yaml").read_text(encoding="utf-8"))

    return _compile


def script_constant(script: str, name: str):
    """The literal value a generated script assigns to a module-level constant."""
    for node in ast.parse(script).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in the script")


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server the test started; kill it if it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
