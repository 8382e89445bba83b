"""Steps behave like the notebook: HTML reports, cell-accurate errors, one-step notebooks, rich metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import JUPYTER, NOTEBOOKS, build_notebook

FIXTURES = NOTEBOOKS
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
    text = _text(page)  # the code is highlighted
    assert "%matplotlib inline" in text and "!echo shell says hello" in text
    assert "get_ipython()" not in text
    assert "shell says hello" in text.split("!echo shell says hello", 1)[1]
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
    assert 'class="cell code failed"' in page and "ZeroDivisionError" in page
    assert "never" not in page.split('class="cell code failed"', 1)[1].split("</pre>", 1)[1]


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


# --- the report of a step, as the notebook shows it ------------------------------------------------------


def _report_of(work: Path, proc: subprocess.CompletedProcess, step: str) -> str:
    """The report page the run's summary names for ``step``; the step's own log names the same file."""
    [page] = re.findall(rf"^  {step} +(\S+report\.html)$", proc.stdout, re.MULTILINE)
    path = (work / page).resolve()
    [log] = work.glob(f"local_outputs/*/{step}/step.log")
    assert f"[nbconvert-kfp] report: {path}\n" in log.read_text(encoding="utf-8")
    return path.read_text(encoding="utf-8")


def _cell(page: str, number: int) -> str:
    """The HTML of the section of notebook cell ``number``."""
    match = re.search(rf'<section class="cell [^"]*"><div class="prompt">cell {number}</div>.*?</section>', page,
                      re.DOTALL)
    assert match, f"no cell {number} in the report"
    return match.group(0)


def _text(fragment: str) -> str:
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    """tests/notebooks/report_tour.ipynb run locally twice: with LIMIT 50 (succeeds) and its default (fails)."""
    runs = {}
    for name, args in (("passed", ("-p", "LIMIT", "50")), ("failed", ())):
        work = tmp_path_factory.mktemp(f"tour-{name}")
        notebook = work / "report_tour.ipynb"
        notebook.write_bytes((FIXTURES / "report_tour.ipynb").read_bytes())
        runs[name] = (work, _run(_convert(notebook), "--local", *args))
    return runs


def test_report_shows_outputs_in_the_order_they_came(tour):
    work, proc = tour["passed"]
    assert proc.returncode == 0, proc.stdout[-3000:]
    cell = _cell(_report_of(work, proc, "plot"), 7)
    # print("A"); plt.show(); print("B"); display(table); last expression
    kinds = re.findall(r'<(?:pre|div) class="out (\w+)', cell)
    assert kinds == ["stdout", "display", "stdout", "display", "result"], kinds
    outputs = re.findall(r'<(?:pre|div) class="out [^"]*">(.*?)</(?:pre|div)>', cell, re.DOTALL)
    assert _text(outputs[0]) == "A: plotting 6 months\n"
    assert outputs[1].startswith('<img src="data:image/png;base64,')
    assert _text(outputs[2]) == "B: plotted\n"
    assert '<table border="1" class="dataframe">' in cell.split("B: plotted", 1)[1]
    # IPython's formatter, as Jupyter shows a type: not <class 'numpy.ndarray'>
    assert cell.removesuffix("</div></section>").endswith('<pre class="out result">numpy.ndarray</pre>')


def test_report_has_a_header_markdown_cells_numbered_cells_and_a_folded_prelude(tour):
    work, proc = tour["passed"]
    page = _report_of(work, proc, "plot")
    header = page.split("<header>", 1)[1].split("</header>", 1)[0]
    assert '<span class="status succeeded">succeeded</span>' in header
    assert re.search(r"<th>duration</th><td>\d+\.\d\d s</td>", header)
    assert "<code>LIMIT</code> 50" in header and "<code>sales</code> pandas.DataFrame" in header
    load_header = _report_of(work, proc, "load").split("</header>", 1)[0]
    assert '<tr class="outputs"><th>outputs</th><td><code>sales</code> pandas.DataFrame' in load_header
    # the markdown cells just before the step's cells, rendered, in notebook order
    numbers = [int(n) for n in re.findall(r'<div class="prompt">cell (\d+)</div>', page.split("</details>", 1)[1])]
    assert numbers == [6, 7, 8, 9]
    assert "<h2>Plot</h2>" in _cell(page, 6) and "<strong>last expression</strong>" in _cell(page, 6)
    assert "<li><code>print</code> output stays in order</li>" in _cell(page, 6)
    assert "<h3>Check</h3>" in _cell(page, 8) and "Monthly sales" not in page  # cell 1 precedes the imports
    assert "[7]" not in page
    # the imports cell every step runs is folded away, highlighted code is not
    prelude = page.split('<details class="prelude">', 1)[1].split("</details>", 1)[0]
    assert '<div class="prompt">cell 2</div>' in prelude and "import" in _text(prelude)
    assert '<span class="nb">print</span>' in _cell(page, 7)  # pygments' classes


def test_report_of_a_failed_step_marks_the_cell_and_shows_the_traceback_from_it(tour):
    work, proc = tour["failed"]
    assert proc.returncode == 1
    page = _report_of(work, proc, "plot")
    assert '<span class="status failed">failed</span>' in page
    failed = re.findall(r'<section class="cell code failed"><div class="prompt">cell (\d+)', page)
    assert failed == ["9"]
    trace = _text(re.search(r'<pre class="out error">(.*?)</pre>', _cell(page, 9), re.DOTALL).group(1))
    assert trace.startswith('Traceback (most recent call last):\n  File "<cell 9>", line 2, in <module>\n')
    assert trace.endswith("AssertionError: peak 21 is not under the limit 20\n")
    assert "nbconvert_kfp" not in trace and "kfp/dsl" not in trace
    assert "out stdout" not in _cell(page, 9)  # nothing after the failed line ran


HOSTILE = "</pre></section><script>alert(1)</script><img src=x onerror=alert(2)>"


def test_report_escapes_hostile_names_sources_markdown_outputs_and_values(tmp_path):
    import nbformat
    from html.parser import HTMLParser

    nb = build_notebook([
        (["parameters"], f"NOTE = {HOSTILE!r}"),
        (None, f"# Title {HOSTILE}\n[click](javascript:alert(3)) and *{HOSTILE}*\n\n```\n{HOSTILE}\n```"),
        ([f"step:{HOSTILE}"], f"print({HOSTILE!r})\nclass Evil:\n    def __repr__(self):\n        return {HOSTILE!r}\n"
                              "Evil()"),
        (None, f"- {HOSTILE}"),
        ([f"step:{HOSTILE}"], f"raise ValueError(NOTE)  # {HOSTILE}"),
    ], markdown=True)
    notebook = tmp_path / "hostile.ipynb"
    nbformat.write(nb, notebook)
    proc = _run(_convert(notebook), "--local")
    assert proc.returncode == 1, proc.stdout[-3000:]
    [report] = tmp_path.glob("local_outputs/*/*/report.html")
    page = report.read_text(encoding="utf-8")

    class Elements(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found = []

        def handle_starttag(self, tag, attrs):
            self.found.append((tag, dict(attrs)))

    parser = Elements()
    parser.feed(page)
    tags = [tag for tag, _ in parser.found]
    assert "script" not in tags and tags.count("img") == 0
    assert not [a for _, attrs in parser.found for a in attrs if a.startswith("on")]
    assert not [attrs for tag, attrs in parser.found if tag == "a" and "javascript" in (attrs.get("href") or "")]
    assert tags.count("section") == 4  # cells 2-5: no section forged
    text = _text(page)
    # the text is all there, as text: in the title, the source, the outputs, the markdown, the header
    assert text.count("<script>alert(1)</script>") >= 8, text
