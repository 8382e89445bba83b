"""The real-world bench's cluster-like phase: how its failures are sorted and reported."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from bench import realworld


def _notebook(tmp_path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def _failed(error: str, cell: int | None = None, step: str | None = "notebook") -> realworld.Phase:
    return realworld.Phase(ok=False, ran=True, returncode=1, error=error, cell=cell, step=step)


@pytest.mark.parametrize(("error", "cell", "expected"), [
    # a magic left in a step whose environment has no IPython
    ("SyntaxError: invalid syntax", 1, "IPython"),
    ("NameError: name 'get_ipython' is not defined", 0, "IPython"),
    # matplotlib is never imported: pandas needs it for .plot()
    ("ModuleNotFoundError: No module named 'matplotlib'", 2, "missing library (lazy dependency)"),
    ("ImportError: Unable to find a usable engine; tried using: 'pyarrow', 'fastparquet'.", 2,
     "missing library (lazy dependency)"),
    ("ImportError: Missing optional dependency 'openpyxl'.  Use pip or conda to install openpyxl.", 2,
     "missing library (lazy dependency)"),
    # the notebook imports pandas itself
    ("ModuleNotFoundError: No module named 'pandas'", 0, "missing library"),
    ("FileNotFoundError: [Errno 2] No such file or directory: 'data/train.csv'", 0, "missing data"),
    ("URLError: <urlopen error [Errno -3] Temporary failure in name resolution>", 0, "network"),
    ("ValueError: bad value", 0, "other (ValueError)"),
])
def test_cluster_failures_are_sorted_by_kind(tmp_path: Path, error: str, cell: int | None, expected: str) -> None:
    notebook = _notebook(tmp_path, "import pandas as pd", "%matplotlib inline\nx = 1", "pd.Series([1]).plot()")
    assert realworld.cluster_category(_failed(error, cell), notebook, "") == expected


def test_a_syntax_error_in_plain_python_is_not_blamed_on_ipython(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path, "x = (1,")
    assert realworld.cluster_category(_failed("SyntaxError: '(' was never closed", 0), notebook, "") \
        == "other (SyntaxError)"


def test_a_failed_install_is_an_install_failure(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path, "import pandas as pd")
    text = "    ERROR: No matching distribution found for pandas==99.0\n"
    phase = _failed("ERROR: No matching distribution found for pandas==99.0", step=None)
    assert realworld.cluster_category(phase, notebook, text) == "install (pip)"


def test_the_summary_has_a_cluster_column_and_lists_cluster_failures(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path, "import pandas as pd", "pd.Series([1]).plot()")
    done = realworld.Phase(ok=True, ran=True)
    outcomes = []
    for name, cluster in (("a", done), ("b", _failed("ModuleNotFoundError: No module named 'matplotlib'", 1)),
                          ("c", realworld.Phase())):
        outcome = realworld.Outcome("g", name, f"g/{name}.ipynb", {}, None, done, done, done,
                                    done if cluster.ran else _failed("ValueError: x", 0))
        outcome.cluster = cluster
        realworld.judge(outcome)
        realworld.judge_cluster(outcome, notebook)
        outcomes.append(outcome)
    text = realworld.summary(outcomes)
    header = next(line for line in text.splitlines() if line.startswith("group"))
    assert header.split()[-1] == "cluster"
    total = next(line for line in text.splitlines() if line.startswith("total"))
    assert total.split()[-1] == "1/2"  # c is not run: its nbclient run failed
    assert "missing library (lazy dependency)" in text
    assert "g/b: cluster (step notebook, cell 2): ModuleNotFoundError: No module named 'matplotlib'" in text
