"""Steps behave like the notebook: HTML reports, cell-accurate errors, one-step notebooks, rich metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import JUPYTER, build_notebook

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parent / "notebooks"
pytest.importorskip("matplotlib", reason="the report figure test needs matplotlib")


def _convert(path: Path, *options: str) -> Path:
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp", path.name, *options], cwd=path.parent, check=True,
                   capture_output=True, timeout=120)
    return path.with_name(path.stem + "_pipeline.py")


def _run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script.name, *args], cwd=script.parent, capture_output=True,
                          text=True, timeout=300)


def _task_outputs(root: Path, task: str) -> dict:
    [output] = root.glob(f"local_outputs/*/{task}/executor_output.json")
    return json.loads(output.read_text())


@pytest.fixture(scope="module")
def rich_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("rich")
    notebook = work / "rich_report.ipynb"
    notebook.write_bytes((FIXTURES / "rich_report.ipynb").read_bytes())
    script = _convert(notebook)
    return work, script, _run(script, "--local")


def test_report_holds_the_cells_as_written_and_their_table_figure_and_shell_output(rich_run):
    work, _, proc = rich_run
    assert proc.returncode == 0, proc.stdout[-3000:]
    pages = re.findall(r"^  \S+ +(\S+report\.html)$", proc.stdout, re.MULTILINE)
    assert len(pages) == 1 and "/plot/" in pages[0]
    page = (work / pages[0]).read_text(encoding="utf-8")  # shown relative to the run's folder
    assert "%matplotlib inline" in page and "!echo shell says hello" in page
    assert "get_ipython()" not in page
    assert "shell says hello" in page.split("!echo shell says hello", 1)[1]
    assert page.count('<table border="1" class="dataframe">') == 2  # display(df) and df.describe()
    assert '<img src="data:image/png;base64,' in page
    assert ">mean<" in page  # the describe() table is the last expression's Out[]


def test_report_is_a_kfp_html_artifact_and_a_disabled_step_has_none(rich_run):
    work, script, _ = rich_run
    assert _run(script).returncode == 0
    spec = yaml.safe_load(script.with_suffix(".yaml").read_text())
    outputs = spec["components"]
    html = {name for name, c in outputs.items()
            for a in c.get("outputDefinitions", {}).get("artifacts", {}).values()
            if a["artifactType"]["schemaTitle"] == "system.HTML"}
    assert html == {"comp-plot"}


def test_failing_cell_writes_a_report_and_names_step_cell_and_line(tmp_path):
    nb = build_notebook([(["step:ok"], "a = 1"), (["step:boom", "prev:ok"], "b = a + 1\nc = b / 0\nprint('never')")])
    notebook = tmp_path / "boom.ipynb"
    import nbformat

    nbformat.write(nb, notebook)
    proc = _run(_convert(notebook), "--local")
    assert proc.returncode == 1
    assert re.search(r"FAILED +boom in \d+\.\d s: notebook cell 2, line 2: ZeroDivisionError: division by zero",
                     proc.stdout), proc.stdout
    assert "Pipeline 'boom' failed: step 'boom' failed" in proc.stderr
    [report] = tmp_path.glob("local_outputs/*/boom/report")
    page = report.read_text(encoding="utf-8")
    assert 'class="cell failed"' in page and "ZeroDivisionError" in page and "never" not in page.split("</pre>", 2)[-1]


def test_reports_can_be_turned_off_for_the_whole_pipeline(tmp_path):
    notebook = tmp_path / "rich_report.ipynb"
    notebook.write_bytes((FIXTURES / "rich_report.ipynb").read_bytes())
    script = _convert(notebook, "--KFPExporter.step_reports=False")
    assert "Output[HTML]" not in script.read_text(encoding="utf-8")
    proc = _run(script, "--local")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Step reports" not in proc.stdout and not list(tmp_path.glob("local_outputs/*/*/report"))


def test_untagged_notebook_is_one_step_with_its_parameters(tmp_path):
    import nbformat

    nb = build_notebook([(["parameters"], "n = 3"), ([], "total = sum(range(n))"), ([], "print('TOTAL', total)")])
    notebook = tmp_path / "plain.ipynb"
    nbformat.write(nb, notebook)
    script = _convert(notebook)
    text = script.read_text(encoding="utf-8")
    assert text.count("@dsl.component(") == 2 and "\ndef notebook(" in text  # the step, and the shared code
    proc = _run(script, "--local", "--verbose", "-p", "n", "5")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "TOTAL 10" in proc.stdout


def test_dict_confusion_matrix_and_roc_metrics(tmp_path):
    import nbformat

    nb = build_notebook([
        (["imports"], "import numpy as np\nfrom sklearn.metrics import confusion_matrix, roc_curve"),
        (["step:evaluate"], "y_true = np.array([0, 0, 1, 1, 1])\ny_score = np.array([0.1, 0.6, 0.4, 0.8, 0.9])\n"
                            "scores = {'accuracy': 0.8, 'recall': 2 / 3}\n"
                            "cm = confusion_matrix(y_true, y_score > 0.5)\nroc = roc_curve(y_true, y_score)"),
        (["pipeline-metrics"], "scores\ncm\nroc"),
    ])
    notebook = tmp_path / "metrics.ipynb"
    nbformat.write(nb, notebook)
    proc = _run(_convert(notebook), "--local")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "metric accuracy = 0.8" in proc.stdout and "metric recall = 0.666" in proc.stdout
    artifacts = _task_outputs(tmp_path, "evaluate")["artifacts"]
    classification = artifacts["classification_metrics"]["artifacts"][0]["metadata"]
    matrix = classification["confusionMatrix"]
    import numpy as np
    from sklearn.metrics import confusion_matrix, roc_curve

    y_true, y_score = np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    assert [a["displayName"] for a in matrix["annotationSpecs"]] == ["0", "1"]
    assert [row["row"] for row in matrix["rows"]] == confusion_matrix(y_true, y_score > 0.5).tolist()
    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    curve = classification["confidenceMetrics"]
    assert [p["falsePositiveRate"] for p in curve] == fpr.tolist()
    assert [p["recall"] for p in curve] == tpr.tolist()
    # roc_curve's first threshold is +inf, which JSON cannot hold: it is logged as max + 1
    assert [p["confidenceThreshold"] for p in curve] == [1.9, *thresholds[1:].tolist()]


def test_pipeline_without_any_artifact_compiles_and_runs(tmp_path):
    import nbformat

    nb = build_notebook([(["step:a"], "x = 1"), (["step:b"], "y = 2")])
    notebook = tmp_path / "bare.ipynb"
    nbformat.write(nb, notebook)
    # the embedded runtime: the steps take no shared-code artifact, so the script uses no artifact type
    script = _convert(notebook, "--KFPExporter.step_reports=False", "--KFPExporter.runtime=embedded")
    assert "from kfp.dsl import" not in script.read_text(encoding="utf-8")
    assert _run(script).returncode == 0
    proc = _run(script, "--local")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
