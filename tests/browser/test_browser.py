"""JupyterLab's File -> Save and Export Notebook As menu, in a real server and a real browser.

A real ``jupyter lab`` serves a tagged notebook on a loopback port; Debian's chromium,
driven by Playwright, opens it, picks *Kfp* and *Kfp_yaml* from the export submenu and
the downloads are checked: the script compiles to IR, the YAML names the pipeline. A
notebook with a bad tag downloads nothing; the new tab shows the server's error message.

Set ``UPDATE_DOCS_SCREENSHOT=1`` to rewrite ``docs/export-menu.png`` from this test;
otherwise the screenshot goes to the test's temporary directory only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from helpers import JUPYTER, NOTEBOOKS, REPO, free_port, step_tasks, stop_process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOT = REPO / "docs" / "export-menu.png"
NOTEBOOK = "forecast.ipynb"
PIPELINE = "forecast"
SUBMENU = "Save and Export Notebook As"
# JupyterLab 4 labels an exporter by its entry-point name, first letter upper-cased.
SCRIPT_LABEL, YAML_LABEL = "Kfp", "Kfp_yaml"
SERVER_START_TIMEOUT = 60
UI_TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is absent (make test installs Debian's chromium)")]


def _write_notebook(path: Path) -> None:
    nb = new_notebook(cells=[
        new_markdown_cell("# Sales forecast\nEach `step:` tag becomes a KFP step."),
        new_code_cell("import statistics", metadata={"tags": ["imports"]}),
        new_code_cell("WINDOW = 3", metadata={"tags": ["pipeline-parameters"]}),
        new_code_cell("sales = [12, 15, 11, 18, 21, 19]", metadata={"tags": ["step:load"]}),
        new_code_cell("forecast = statistics.mean(sales[-WINDOW:])\nprint(forecast)",
                      metadata={"tags": ["step:forecast", "prev:load"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, path)


@dataclass
class Lab:
    root: Path
    url: str
    token: str

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"


def open_notebook(page, url):
    """Open a notebook in JupyterLab; return once its cells show and the export formats are known."""
    # The export entries are added once a notebook is open and /api/nbconvert has answered.
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/api/nbconvert")):
        page.goto(url)
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A real ``jupyter lab`` on 127.0.0.1 serving a tagged notebook from a temporary root."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    _write_notebook(root / NOTEBOOK)
    # A fresh settings directory; the announcements prompt would cover part of the page.
    notification = base / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_PLATFORM_DIRS": "1"}
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [str(JUPYTER), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={base / 'settings'}",
             f"--LabApp.workspaces_dir={base / 'workspaces'}"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {SERVER_START_TIMEOUT} s:\n"
                                f"{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield Lab(root, f"http://127.0.0.1:{port}", token)
    finally:
        stop_process(server, timeout=20)


@pytest.fixture(scope="module")
def page(lab, tmp_path_factory):
    """Debian's chromium (headless, fresh profile) showing the notebook in JupyterLab."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            accept_downloads=True, viewport={"width": 1280, "height": 800},
        )
        try:
            context.set_default_timeout(UI_TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            open_notebook(page, lab.notebook_url(NOTEBOOK))
            yield page
        finally:
            context.close()
    finally:
        playwright.stop()


def close_menus(page):
    """Close open menus: Escape closes one level at a time."""
    for _ in range(5):
        if not page.locator(".lm-Menu").count():
            return
        page.keyboard.press("Escape")
    assert not page.locator(".lm-Menu").count(), "a menu stays open"


def open_export_submenu(page):
    """Open File -> Save and Export Notebook As; return the submenu's locator."""
    close_menus(page)
    page.get_by_role("menuitem", name="File", exact=True).click()
    # Lumino gives a submenu item no role; it opens on hover.
    page.locator(".lm-Menu-item[data-type='submenu']", has_text=SUBMENU).hover()
    submenu = page.locator(".lm-Menu").filter(has=page.get_by_role("menuitem", name=SCRIPT_LABEL, exact=True))
    submenu.wait_for(timeout=UI_TIMEOUT_MS)
    return submenu


def download(page, label, directory):
    """Pick the export entry ``label``; return the downloaded file, saved under its suggested name."""
    submenu = open_export_submenu(page)
    with page.expect_download(timeout=UI_TIMEOUT_MS) as info:
        submenu.get_by_role("menuitem", name=label, exact=True).click()
    done = info.value
    assert done.failure() is None, done.failure()
    path = directory / done.suggested_filename
    done.save_as(path)
    return path


def test_menu_lists_both_exporters_with_clear_labels(page, tmp_path):
    submenu = open_export_submenu(page)
    labels = [text.strip() for text in submenu.locator(".lm-Menu-itemLabel").all_inner_texts()]
    assert labels.index(YAML_LABEL) == labels.index(SCRIPT_LABEL) + 1, labels
    submenu.get_by_role("menuitem", name=SCRIPT_LABEL, exact=True).hover()
    shot = tmp_path / "export-menu.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 640, "height": 690})
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
    close_menus(page)


def test_file_menu_downloads_the_script_which_compiles_to_ir(page, tmp_path):
    script = download(page, SCRIPT_LABEL, tmp_path)
    assert script.name == f"{PIPELINE}_pipeline.py"
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    ir = yaml.safe_load(script.with_suffix(".yaml").read_text(encoding="utf-8"))
    assert ir["pipelineInfo"]["name"] == PIPELINE
    assert set(step_tasks(ir)) == {"load", "forecast"}


def test_file_menu_downloads_the_ir_yaml(page, tmp_path):
    path = download(page, YAML_LABEL, tmp_path)
    assert path.name == f"{PIPELINE}_pipeline.yaml"
    ir = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert ir["pipelineInfo"]["name"] == PIPELINE
    assert set(step_tasks(ir)) == {"load", "forecast"}
    assert ir["root"]["inputDefinitions"]["parameters"]["WINDOW"]["defaultValue"] == 3


def test_file_menu_on_a_bad_notebook_shows_the_error_and_downloads_nothing(lab, page):
    nb = new_notebook(cells=[
        new_code_cell("sales = [1, 2]", metadata={"tags": ["step:load"]}),
        new_code_cell("print(sales)", metadata={"tags": ["step:forecast", "prev:lod"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, lab.root / "broken.ipynb")
    other = page.context.new_page()
    try:
        open_notebook(other, lab.notebook_url("broken.ipynb"))
        downloads = []
        other.on("download", lambda d: downloads.append(d))
        submenu = open_export_submenu(other)
        with other.context.expect_page(timeout=UI_TIMEOUT_MS) as info:
            submenu.get_by_role("menuitem", name=YAML_LABEL, exact=True).click()
        error_tab = info.value
        error_tab.wait_for_load_state()
        text = error_tab.inner_text("body")
        assert "400" in text and "The notebook cannot become a KFP pipeline" in text
        assert "cell 2: tag 'prev:lod' names step 'lod'" in text and "Internal Server Error" not in text
        assert not downloads
        error_tab.close()
    finally:
        other.close()


# --- step reports and the DAG picture, as a browser renders them ---------------------------------------------

REPORT_SCREENSHOT = DOCS_SCREENSHOT.with_name("report.png")
DAG_SCREENSHOT = DOCS_SCREENSHOT.with_name("dag.png")
FIXTURES = NOTEBOOKS


@pytest.fixture(scope="module")
def browser_page(page):
    """A fresh tab of the same chromium (one Playwright per module), 1000 px wide."""
    tab = page.context.new_page()
    tab.set_viewport_size({"width": 1000, "height": 800})
    try:
        yield tab
    finally:
        tab.close()


@pytest.fixture(scope="module")
def tour_run(tmp_path_factory):
    """tests/notebooks/report_tour.ipynb converted and run locally: its plot step fails in its last cell."""
    work = tmp_path_factory.mktemp("tour")
    notebook = work / "report_tour.ipynb"
    notebook.write_bytes((FIXTURES / "report_tour.ipynb").read_bytes())
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp", notebook.name], cwd=work, check=True,
                   capture_output=True, timeout=120)
    script = work / "report_tour_pipeline.py"
    proc = subprocess.run([sys.executable, script.name, "--local"], cwd=work, capture_output=True, text=True,
                          timeout=300)
    return work, script, proc


def _keep(shot: Path, target: Path) -> None:
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, target)


def test_report_renders_cells_and_outputs_in_notebook_order(browser_page, tour_run, tmp_path):
    work, _, proc = tour_run
    assert proc.returncode == 1, proc.stdout[-3000:]
    [report] = work.glob("local_outputs/*/plot/report.html")
    page = browser_page
    page.goto(report.as_uri())
    assert page.locator("header span.status").inner_text() == "failed"
    # cells in notebook order, as JupyterLab numbers them; the imports cell folded away
    prompts = page.locator("body > section.cell > .prompt").all_inner_texts()
    assert prompts == ["cell 6", "cell 7", "cell 8", "cell 9"]
    assert page.locator("details.prelude").get_attribute("open") is None
    assert not page.locator("details.prelude section.cell").first.is_visible()
    assert page.locator("section.markdown h2").inner_text() == "Plot"
    # the outputs of cell 7 in the order they came: print, plt.show(), print, display(table), last expression
    outputs = page.locator("section.cell:has(> .prompt:text-is('cell 7')) .out")
    kinds = outputs.evaluate_all("nodes => nodes.map(n => n.querySelector('img') ? 'figure' "
                                 ": n.querySelector('table') ? 'table' : n.textContent.trim())")
    assert kinds == ["A: plotting 6 months", "figure", "B: plotted", "table", "numpy.ndarray"], kinds
    figure = outputs.nth(1).locator("img")
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100")  # a real PNG, decoded
    assert outputs.nth(3).locator("tbody tr").count() == 8  # describe(): count, mean, ..., max
    # the failed cell: marked, with the traceback from the cell on
    failed = page.locator("section.cell.failed")
    assert failed.locator(".prompt").inner_text() == "cell 9"
    assert failed.locator(".marker").is_visible()
    trace = failed.locator(".out.error").inner_text()
    assert trace.splitlines()[1].strip() == 'File "<cell 9>", line 2, in <module>'
    assert trace.rstrip().endswith("AssertionError: peak 21 is not under the limit 20")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    _keep(shot, REPORT_SCREENSHOT)


def test_dag_picture_renders_with_every_name_inside_its_box(browser_page, tmp_path):
    nb = new_notebook(cells=[
        new_code_cell("import statistics", metadata={"tags": ["imports"]}),
        new_code_cell("WINDOW = 3\nSEED = 7", metadata={"tags": ["pipeline-parameters"]}),
        new_code_cell("sales = [12, 15, 11, 18, 21, 19]\nprices = [3, 3, 4, 4, 5, 5]", metadata={"tags": ["step:load"]}),
        new_code_cell("clean = [s for s in sales if s > 0]", metadata={"tags": ["step:clean", "prev:load"]}),
        new_code_cell("revenue = [s * p for s, p in zip(sales, prices)]", metadata={"tags": ["step:revenue"]}),
        new_code_cell("mean = statistics.mean(clean[-WINDOW:])", metadata={"tags": ["step:forecast_mean"]}),
        new_code_cell("median = statistics.median(clean) + SEED * 0", metadata={"tags": ["step:forecast_median"]}),
        new_code_cell("best = min(mean, median)\ntotal = sum(revenue)\nprint(best, total, sales[0])",
                      metadata={"tags": ["step:compare"]}),
        new_code_cell("print('published')", metadata={"tags": ["step:publish", "prev:compare"]}),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, tmp_path / "forecast.ipynb")
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp", "forecast.ipynb"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    drawn = subprocess.run([sys.executable, "forecast_pipeline.py", "--dag", "forecast.svg"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    svg = (tmp_path / "forecast.svg").read_text(encoding="utf-8")
    page = browser_page
    page.set_content(f"<html><body style='margin:0'>{svg}</body></html>")
    steps = page.locator("g.step")
    assert steps.count() == 7
    # the rendered text of each step (its name, its parameters) stays inside its box
    overflow = steps.evaluate_all("""groups => groups.flatMap(g => {
        const box = g.querySelector('rect').getBBox();
        return [...g.querySelectorAll('text')].map(t => t.getBBox()).filter(b =>
            b.x < box.x || b.y < box.y || b.x + b.width > box.x + box.width || b.y + b.height > box.y + box.height)
            .map(() => g.dataset.step);
    })""")
    assert overflow == []
    # edge labels do not cover one another
    labels = page.locator("g.edge-label rect").evaluate_all("rs => rs.map(r => r.getBBox())"
                                                             ".map(b => [b.x, b.y, b.width, b.height])")
    for i, (ax, ay, aw, ah) in enumerate(labels):
        for bx, by, bw, bh in labels[i + 1:]:
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, labels
    assert page.locator("g.legend text").all_text_contents()[:2] == ["data edge: the variables it carries",
                                                                   "prev: edge: runs after, no data"]
    size = page.locator("svg").bounding_box()
    shot = tmp_path / "dag.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"]})
    _keep(shot, DAG_SCREENSHOT)
