"""The declared minimum versions work: convert, compile and run small pipelines through the real CLI.

`make test-floors` runs the tests marked ``floors`` in a venv whose dependencies are pinned to
the floors of pyproject.toml (see .ci/floors.py); they run in the main venv as well.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import EXAMPLES, build_notebook

JUPYTER = Path(sys.executable).parent / "jupyter"
METRIC_LINE = re.compile(r"^\s*metric (\S+) = (\S+)\s*$", re.MULTILINE)

#: Two steps, a parameter, data from a to b, a metric. Step a's pod options need kfp-kubernetes,
#: its `x = !cmd` line IPython's transformer (>= 8.15 on Python 3.12+), and its lambda, which calls
#: a function of the step, dill (>= 0.3.8 on Python 3.13).
CHAIN = [
    (["pipeline-parameters"], "N = 3"),
    (["step:a", "timeout:5m", "label:team:ml"],
     "values = [i * i for i in range(N)]\nfactor = 10\n\ndef times(v):\n    return v * factor\n\n"
     "scale = lambda v: times(v)\nechoed = !echo hello"),
    (["step:b", "prev:a"], "total = scale(sum(values)) + len(echoed[0])"),
    (["pipeline-metrics"], "total"),
]
#: ``prev:`` names a step that does not exist.
BAD_PREV = [(["step:a"], "x = 1"), (["step:b", "prev:nowhere"], "y = x + 1")]


def run(cmd: list, cwd: Path) -> subprocess.CompletedProcess:
    """Run a command in ``cwd``; stdout and stderr captured separately as text."""
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                          encoding="utf-8", errors="replace", env=env, timeout=300)


def convert(notebook: Path) -> subprocess.CompletedProcess:
    """``jupyter nbconvert --to kfp`` on a notebook, in its directory."""
    return run([JUPYTER, "nbconvert", "--to", "kfp", notebook.name], notebook.parent)


def metrics_of(output: str) -> dict[str, float]:
    """The ``metric NAME = VALUE`` lines a successful local run prints."""
    return {name: float(value) for name, value in METRIC_LINE.findall(output)}


def _write(directory: Path, name: str, cells: list) -> Path:
    """Write a notebook built from ``(tags, source)`` cells to ``directory/name.ipynb``."""
    directory.mkdir()
    path = directory / f"{name}.ipynb"
    nbformat.write(build_notebook(cells), path)
    return path


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The CHAIN notebook converted, compiled and run with ``--local``: the three results and the script."""
    notebook = _write(tmp_path_factory.mktemp("floors") / "chain", "chain", CHAIN)
    script = notebook.with_name("chain_pipeline.py")
    converted = convert(notebook)
    compiled = run([sys.executable, script], notebook.parent) if script.is_file() else None
    local = run([sys.executable, script, "--local"], notebook.parent) if script.is_file() else None
    return converted, compiled, local, script


def test_conversion_writes_the_script(chain):
    """`jupyter nbconvert --to kfp` exits 0 and writes <name>_pipeline.py."""
    converted, _, _, script = chain
    assert converted.returncode == 0, converted.stderr
    assert script.is_file()


def test_script_compiles_with_the_kubernetes_options(chain):
    """The script compiles to IR YAML, with the timeout and label through kfp-kubernetes."""
    _, compiled, _, script = chain
    assert compiled is not None and compiled.returncode == 0, compiled and compiled.stderr
    spec = script.with_suffix(".yaml").read_text(encoding="utf-8")
    assert "platforms:" in spec and "kubernetes:" in spec
    assert "activeDeadlineSeconds: '300'" in spec and "team: ml" in spec


def test_local_run_succeeds_with_the_metric(chain):
    """`--local` runs both steps with kfp.local and prints the pipeline metric."""
    _, _, local, _ = chain
    assert local is not None and local.returncode == 0, local and (local.stdout + local.stderr)[-5000:]
    assert metrics_of(local.stdout) == {"total": (0 + 1 + 4) * 10 + len("hello")}


def test_bad_prev_tag_is_one_clean_error_line(tmp_path):
    """A prev: tag naming no step fails with one line that names the tag, and no traceback."""
    notebook = _write(tmp_path / "bad", "bad", BAD_PREV)
    result = convert(notebook)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "prev:nowhere" in line]
    assert len(lines) == 1, result.stderr
    assert "cell 2:" in lines[0]
    assert not list(notebook.parent.glob("*_pipeline.py"))


@pytest.mark.skipif(not (importlib.util.find_spec("numpy") and importlib.util.find_spec("pandas")),
                    reason="numpy and pandas are not installed")
def test_numpy_pandas_example_runs_locally(tmp_path):
    """The numpy/pandas example converts and runs locally, with its two metrics and its CSV."""
    shutil.copy(EXAMPLES / "numpy_pandas_chain.ipynb", tmp_path)
    converted = convert(tmp_path / "numpy_pandas_chain.ipynb")
    assert converted.returncode == 0, converted.stderr
    local = run([sys.executable, tmp_path / "numpy_pandas_chain_pipeline.py", "--local"], tmp_path)
    assert local.returncode == 0, (local.stdout + local.stderr)[-5000:]
    metrics = metrics_of(local.stdout)
    assert set(metrics) == {"n_imputed", "overall_mean_y"}
    assert metrics["n_imputed"] == int(metrics["n_imputed"]) > 0
    assert (tmp_path / "outputs" / "summary.csv").is_file()
