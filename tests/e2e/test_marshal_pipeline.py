"""End to end: values of many types travel between the steps of a local run, exactly.

examples/mixed_values.ipynb passes a DataFrame, a numpy array, a scipy sparse matrix, a
lambda, a fitted scikit-learn pipeline, an xgboost Booster and DMatrix and a torch tensor
between steps. It is converted with the real CLI and run with ``--local``; what its last
step prints must equal what the notebook computes when run top to bottom.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import EXAMPLES, JUPYTER, PYTHON

EXAMPLE = EXAMPLES / "mixed_values.ipynb"
TIMEOUT = 300

#: variable -> format its artifact must have
EXPECTED_FORMATS = {
    "frame": "pandas.pkl", "weights": "npy", "counts": "scipy.npz", "to_percent": "dill", "pipe": "joblib",
    "booster": "xgboost.ubj", "dtrain": "xgboost.dmatrix", "row_totals": "torch.pt",
}


def result_line(text: str) -> dict:
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("RESULT ")]
    assert len(lines) == 1, text[-3000:]
    return json.loads(lines[0][len("RESULT "):])


def convert_and_run(notebook: Path) -> subprocess.CompletedProcess:
    converted = subprocess.run([JUPYTER, "nbconvert", "--to", "kfp", notebook.name], cwd=notebook.parent,
                               capture_output=True, text=True, timeout=TIMEOUT)
    assert converted.returncode == 0, converted.stderr
    script = notebook.with_name(notebook.stem + "_pipeline.py")
    return subprocess.run([PYTHON, str(script), "--local", "--verbose"], cwd=notebook.parent, capture_output=True, text=True,
                          timeout=TIMEOUT)


def run_top_to_bottom(notebook: Path) -> str:
    """Run every code cell in order in one namespace, as Jupyter would; return what it printed."""
    nb = nbformat.read(notebook, as_version=4)
    namespace = {"__name__": "__main__"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for cell in nb.cells:
            if cell.cell_type == "code":
                exec(compile(cell.source, "<cell>", "exec"), namespace)
    return out.getvalue()


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    for module in ("sklearn", "scipy", "xgboost", "torch"):
        pytest.importorskip(module, reason=f"{module} is not installed (`make test` installs the test extra)")
    work = tmp_path_factory.mktemp("mixed")
    notebook = work / EXAMPLE.name
    shutil.copy(EXAMPLE, notebook)
    return work, convert_and_run(notebook)


def test_mixed_values_notebook_runs_locally_and_matches_a_top_to_bottom_run(mixed_run):
    work, result = mixed_run
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    from_pipeline = result_line(result.stdout)
    from_notebook = result_line(run_top_to_bottom(work / EXAMPLE.name))
    assert from_pipeline == from_notebook
    assert from_pipeline["dtypes"]["when"].endswith(", Europe/Paris]")
    assert from_pipeline["dtypes"]["group"] == "category" and from_pipeline["categories"] == ["c", "b", "a"]
    assert from_pipeline["types"] == ["builtins.function", "numpy.ndarray", "pandas.DataFrame",
                                      "scipy.csr_matrix", "sklearn.Pipeline", "torch.Tensor", "xgboost.Booster",
                                      "xgboost.DMatrix"]


def test_each_value_is_saved_in_its_format_and_the_metadata_says_so(mixed_run):
    work, result = mixed_run
    assert result.returncode == 0, result.stderr[-4000:]
    files = {path.parent.name: path.name for path in (work / "local_outputs").rglob("value.*")}
    assert files == {f"{name}_out": f"value.{fmt}" for name, fmt in EXPECTED_FORMATS.items()}
    metadata = {}
    for output in (work / "local_outputs").rglob("executor_output.json"):
        for name, artifacts in json.loads(output.read_text()).get("artifacts", {}).items():
            for artifact in artifacts.get("artifacts", []):
                if "format" in artifact.get("metadata", {}):
                    metadata[artifact["metadata"]["variable"]] = artifact["metadata"]
    assert {name: m["format"] for name, m in metadata.items()} == EXPECTED_FORMATS
    assert metadata["pipe"]["python_type"] == "sklearn.pipeline.Pipeline"
    assert metadata["booster"]["python_type"] == "xgboost.core.Booster"
    assert metadata["to_percent"]["python_type"] == "builtins.function"


def test_a_file_handle_that_a_later_step_reads_fails_its_step_with_a_clear_message(tmp_path):
    cells = [
        (["step:write"], 'with open("data.txt", "w") as fh:\n    fh.write("1 2 3")'),
        (["step:read"], "print(fh.name)"),
    ]
    nb = new_notebook(cells=[new_code_cell(textwrap.dedent(src), metadata={"tags": tags}) for tags, src in cells])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    notebook = tmp_path / "handle.ipynb"
    nbformat.write(nb, notebook)
    result = convert_and_run(notebook)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "step 'write' cannot save variable 'fh' (_io.TextIOWrapper), which a later step reads" in output
    assert "an open file belongs to the process that opened it" in output
    assert "Recreate the value in the step that reads it" in output
