"""Real-world notebooks: convert, compile and run each one locally, run it with nbclient, and compare.

Run from the repository root: ``.venv/bin/python -m bench.realworld [DIR] [--jobs N] [--timeout S]``.
DIR (default /work/realworld/notebooks) holds notebooks in group folders: DIR/<group>/.../<name>.ipynb.
For each notebook, in fresh temporary copies of its folder, it (a) converts it with
``jupyter nbconvert --to kfp``, (b) compiles the script (``python X_pipeline.py``), (c) runs it with
``--local``, (d) runs the original notebook top to bottom with nbclient, and (e) compares the two runs.
Results go to bench/results/realworld.json and the output of every command to bench/results/realworld-logs/.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
LOGS = RESULTS / "realworld-logs"
DEFAULT_DIR = Path("/work/realworld/notebooks")
#: The line the extra cell prints in the nbclient run: the notebook's metric values as JSON.
METRICS_MARKER = "@@realworld-metrics@@"
#: "  metric NAME = VALUE", printed by a generated script after a successful local run.
_METRIC_LINE = re.compile(r"^  metric (.+) = (\S+)$")
#: "  FAILED    NAME in 1.2 s: notebook cell 3, line 2: Error: message", as a local run shows a failed step
#: (cells numbered from 1, as JupyterLab shows them).
_STEP_FAILED = re.compile(r"^  FAILED +(.+?) in [0-9.]+ s: notebook cell (\d+), line (\d+): (.*)$", re.MULTILINE)
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)|KeyboardInterrupt)\b(:.*)?$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = time.perf_counter()
_PRINT_LOCK = threading.Lock()

# Substrings of an error message, and the category they put it in (first match wins).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("network", ("Name or service not known", "Temporary failure in name resolution", "NameResolutionError",
                 "URLError", "ConnectionError", "Max retries exceeded", "Failed to establish a new connection",
                 "getaddrinfo", "Could not resolve host", "Network is unreachable", "HTTP Error", "HTTPError",
                 "URL fetch failure", "urlopen error", "Errno -2", "Errno -3", "/secret/kaggle-secret")),
    ("gpu", ("CUDA", "cuda", "GPU", "nvidia", "NVIDIA")),
    ("missing library", ("ModuleNotFoundError", "No module named", "ImportError", "cannot import name")),
    ("missing data", ("FileNotFoundError", "No such file or directory", "does not exist", "not found in archive")),
]


def log(message: str) -> None:
    """Print a progress line with the time since the run started."""
    with _PRINT_LOCK:
        print(f"[realworld {time.perf_counter() - _STARTED:7.1f}s] {message}", flush=True)


@dataclass
class Phase:
    """One command of the run: did it succeed, how long it took, and why it failed."""

    ok: bool = False
    ran: bool = False
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    error: str | None = None
    cell: int | None = None
    step: str | None = None
    log: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    warnings: int = 0


@dataclass
class Outcome:
    """Everything measured for one notebook."""

    group: str
    name: str
    path: str
    source: dict[str, Any]
    metric_names: list[str] | None
    convert: Phase
    compile: Phase
    local: Phase
    nbclient: Phase
    matched: bool = False
    match_detail: str | None = None
    reason: str | None = None
    category: str | None = None
    verdict: str | None = None
    #: when the metrics differ: the metrics of a second nbclient run, and whether they equal the first run's
    nbclient_rerun: dict[str, float] | None = None
    deterministic: bool | None = None
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------- processes


def _descendants(pid: int) -> list[int]:
    """Process ids of every descendant of ``pid``, read from /proc (children before their own children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill a process started in its own session, its process group and every descendant (kernels too)."""
    pids = _descendants(process.pid)
    for pid in [process.pid, *pids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


def _environment() -> dict[str, str]:
    """The environment of every command: unbuffered, and pip cannot download (``!pip install`` cells stay offline)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("NBCONVERT_KFP_LOCAL_RUN", None)
    return env


def run_command(argv: list[str], cwd: Path, log_file: Path, timeout: float) -> Phase:
    """Run a command with its output in ``log_file``; kill it and all it started after ``timeout`` seconds."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_file.open("w") as sink:
        process = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=_environment(), start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_tree(process)
            returncode, timed_out = None, True
        else:
            # a finished command can leave processes of its session behind (a warm launcher): end them too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    phase = Phase(ok=returncode == 0, ran=True, returncode=returncode, seconds=time.perf_counter() - start,
                  timed_out=timed_out, log=str(log_file))
    if timed_out:
        phase.error = f"timed out after {timeout:g} s"
    return phase


def _read(path: Path) -> str:
    return _ANSI.sub("", path.read_text(errors="replace")) if path.exists() else ""


def last_error_line(text: str) -> str | None:
    """The last line that names an exception or an error, else the last non-empty line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line) or re.search(r"\b(error|failed)\b", line, re.IGNORECASE):
            return line
    return lines[-1] if lines else None


# --------------------------------------------------------------------------------------------- notebooks


def metric_names(notebook: Path) -> list[str] | None:
    """The variables the notebook's ``pipeline-metrics`` cells list (``print(x)`` or ``x`` lines), or None."""
    import warnings

    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = nbformat.read(notebook, as_version=4)
    names: list[str] = []
    found = False
    for cell in nb.cells:
        if cell.cell_type != "code" or "pipeline-metrics" not in cell.metadata.get("tags", []):
            continue
        found = True
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for statement in tree.body:
            value = statement.value if isinstance(statement, ast.Expr) else None
            if isinstance(value, ast.Name):
                candidates = [value.id]
            elif isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print":
                candidates = [a.id for a in value.args if isinstance(a, ast.Name)]
            else:
                candidates = []
            names.extend(n for n in candidates if n not in names)
    return names if found else None


_METRICS_CELL = """\
def __realworld_metrics(names):
    import json, math
    values = {}
    for name in names:
        if name not in globals():
            continue
        value = globals()[name]
        for key, item in (value.items() if isinstance(value, dict) else [(name, value)]):
            try:
                number = float(item)
            except Exception:
                continue
            if math.isfinite(number):
                values[str(key)] = number
    print(MARKER + json.dumps(values))
__realworld_metrics(NAMES)
"""


def nbclient_child(notebook: Path, timeout: float, names: list[str] | None) -> dict[str, Any]:
    """Execute ``notebook`` top to bottom with nbclient in its folder; return status, error, failing cell, metrics."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(notebook, as_version=4)
    original_cells = len(nb.cells)
    if names:
        source = _METRICS_CELL.replace("MARKER", repr(METRICS_MARKER)).replace("NAMES", repr(names))
        nb.cells.append(nbformat.v4.new_code_cell(source))
    class Client(NotebookClient):
        """Remembers the index of the cell it executes, since some errors (a UsageError) leave no error output."""

        current: int | None = None

        async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
            self.current = cell_index
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)

    client = Client(nb, kernel_name="python3", timeout=int(timeout), allow_errors=False,
                    resources={"metadata": {"path": str(notebook.parent)}})
    result: dict[str, Any] = {"ok": False, "error": None, "cell": None, "metrics": {}}

    async def execute() -> None:
        await asyncio.wait_for(client.async_execute(), timeout)

    try:
        asyncio.run(execute())
        result["ok"] = True
    except CellExecutionError as err:
        result["error"] = f"{err.ename}: {err.evalue}".splitlines()[0] if err.ename else str(err).splitlines()[0]
    except (asyncio.TimeoutError, CellTimeoutError):
        result["error"] = f"timed out after {timeout:g} s"
    except DeadKernelError as err:
        result["error"] = f"DeadKernelError: {err}".splitlines()[0]
    except Exception as err:  # a kernel that does not start, a notebook nbclient cannot run
        result["error"] = f"{type(err).__name__}: {err}".splitlines()[0]
    if not result["ok"] and client.current is not None and client.current < original_cells:
        result["cell"] = client.current
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") if output.get("output_type") == "stream" else ""
            for line in text.splitlines():
                if line.startswith(METRICS_MARKER):
                    result["metrics"] = json.loads(line[len(METRICS_MARKER):])
    return result


def _slug(relative: Path) -> str:
    return re.sub(r"[^\w.@-]+", "_", str(relative.with_suffix("")))[:150]


def _copy_folder(notebook: Path, into: Path) -> Path:
    """Copy the notebook's folder to ``into``; return the notebook's path in the copy."""
    shutil.copytree(notebook.parent, into, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*_pipeline.py",
                                                                          "*_pipeline.yaml", "local_outputs"))
    return into / notebook.name


_CONVERT_PREFIX = re.compile(r"^\[NbConvertApp\] ERROR \| Error while converting '[^']*': ")


def conversion_error(text: str) -> tuple[str | None, int | None]:
    """The message of a failed conversion, without nbconvert's prefix, and the cell it names."""
    lines = [_CONVERT_PREFIX.sub("", line.strip()) for line in text.splitlines() if "ERROR" in line]
    message = lines[-1] if lines else last_error_line(text)
    cell = re.match(r"cell (\d+): ", message or "")  # numbered from 1, as JupyterLab shows cells
    return message, int(cell.group(1)) - 1 if cell else None


def _mask(text: str) -> str:
    """A message with its quoted names and numbers masked, so that messages of one kind group together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\b\d+\b", "N", text.split(";")[0])


def _category(text: str | None) -> str:
    if not text:
        return "other"
    for category, needles in CATEGORIES:
        if any(needle in text for needle in needles):
            return category
    return "other"


def _exception_name(text: str) -> str:
    match = re.match(r"\s*([A-Za-z_][\w.]*)\s*:", text)
    return match.group(1).rsplit(".", 1)[-1] if match else text.split()[0] if text.split() else "error"


def compare_metrics(local: dict[str, float], notebook: dict[str, float]) -> tuple[bool, str]:
    """Whether the local run logged the same metric values as the notebook has (relative tolerance 1e-6)."""
    if not notebook and not local:
        return True, "no numeric metric in either run"
    differ = []
    for name in sorted(set(local) | set(notebook)):
        a, b = local.get(name), notebook.get(name)
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12):
            differ.append(f"{name}: local {a} vs nbclient {b}")
    if differ:
        return False, "metrics differ: " + "; ".join(differ)
    return True, f"{len(local)} metrics equal"


def judge(outcome: Outcome) -> None:
    """Set matched, the first failure reason, its category, and a verdict on whose failure it is."""
    convert, compiled, local, nbc = outcome.convert, outcome.compile, outcome.local, outcome.nbclient
    if local.ok and nbc.ok:
        if outcome.metric_names:
            outcome.matched, outcome.match_detail = compare_metrics(local.metrics, nbc.metrics)
        else:
            outcome.matched, outcome.match_detail = True, "both succeeded (no pipeline-metrics cell)"
    nb_error = f"nbclient: {nbc.error}" if not nbc.ok else None
    if not convert.ok:
        outcome.reason = f"convert: {convert.error}"
        outcome.category = "timeout" if convert.timed_out else f"conversion error: {_mask(convert.error or '?')}"
        same_cell = convert.cell is not None and not nbc.ok and nbc.cell == convert.cell
        outcome.verdict = "conversion failed" + (" (nbclient fails in that cell too)" if same_cell else "")
    elif not compiled.ok:
        outcome.reason = f"compile: {compiled.error}"
        outcome.category = f"compile error ({_exception_name(compiled.error or 'error')})"
        outcome.verdict = "compile failed"
    elif not local.ok:
        outcome.reason = f"local: {local.error}"
        if local.timed_out:
            outcome.category = "timeout"
        elif "cannot save variable" in (local.error or "") or "cannot load" in (local.error or ""):
            outcome.category = "marshal (nbconvert-kfp)"
        else:
            outcome.category = _category(local.error)
        if nbc.ok:
            outcome.verdict = "local run failed, nbclient succeeded"
            if outcome.category == "other":
                outcome.category = f"local only ({_exception_name(local.error or 'error')})"
        elif local.timed_out or nbc.timed_out or (
                _exception_name(local.error or "") == _exception_name(nbc.error or "") and local.cell == nbc.cell):
            outcome.verdict = "both runs failed alike"
        else:
            outcome.verdict = "both runs failed, differently"
            outcome.reason += f" / nbclient: {nbc.error}"
    elif not nbc.ok:
        outcome.reason = nb_error
        outcome.category = "timeout" if nbc.timed_out else _category(nbc.error)
        outcome.verdict = "nbclient failed, local run succeeded"
    elif not outcome.matched:
        outcome.reason = outcome.match_detail
        if outcome.deterministic is False:
            outcome.category = "metrics differ (two nbclient runs differ too: the notebook is not deterministic)"
        else:
            outcome.category = "metrics differ"
        outcome.verdict = "metrics differ"
    else:
        outcome.verdict = "matched"
    if outcome.verdict == "both runs failed, differently" and outcome.category == "other":
        outcome.category = f"local and nbclient fail differently ({_exception_name(local.error or 'error')})"
    if outcome.category == "other" and outcome.reason:
        outcome.category = f"notebook error ({_exception_name(outcome.reason.split(': ', 1)[-1])})"


def _nbclient(notebook: Path, into: Path, names: list[str] | None, log_file: Path, timeout: float) -> Phase:
    """Run a fresh copy of the notebook's folder with nbclient, in a child process that is killed on timeout."""
    copy = _copy_folder(notebook, into)
    nbc = run_command([sys.executable, "-m", "bench.realworld", "--nbclient-child", str(copy),
                       "--timeout", str(timeout), "--metric-names", json.dumps(names)],
                      Path(__file__).resolve().parent.parent, log_file, timeout + 60)
    text = _read(log_file)
    reply = [line for line in text.splitlines() if line.startswith("{")]
    if reply and not nbc.timed_out:
        data = json.loads(reply[-1])
        nbc.ok, nbc.error, nbc.cell, nbc.metrics = data["ok"], data["error"], data["cell"], data["metrics"]
        nbc.timed_out = (data["error"] or "").startswith("timed out")
    elif not nbc.timed_out:
        nbc.ok, nbc.error = False, last_error_line(text) or f"nbclient runner exited {nbc.returncode}"
    return nbc


def run_notebook(notebook: Path, root: Path, timeout: float, manifest: dict[str, dict[str, Any]],
                 keep: bool) -> Outcome:
    """Convert, compile, run locally and with nbclient one notebook, each in a fresh copy of its folder."""
    relative = notebook.relative_to(root)
    group = relative.parts[0] if len(relative.parts) > 1 else "."
    name = str(Path(*relative.parts[1:])) if len(relative.parts) > 1 else relative.name
    if len(relative.parts) == 3 and relative.parts[1].split("@")[0].endswith(notebook.stem):
        name = relative.parts[1]  # a notebook alone in a folder named after it (collect.py's layout)
    logs = LOGS / _slug(relative)
    if logs.exists():
        shutil.rmtree(logs)
    logs.mkdir(parents=True)
    python = sys.executable
    jupyter = str(Path(python).parent / "jupyter")
    names = None
    try:
        names = metric_names(notebook)
    except Exception as err:  # an unreadable notebook: conversion will say why
        log(f"  cannot read {relative}: {err}")
    outcome = Outcome(group, name, str(relative), manifest.get(str(relative), {}), names,
                      Phase(), Phase(), Phase(), Phase())
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="realworld-"))
    try:
        # (a)-(c): the pipeline, in one copy
        copy = _copy_folder(notebook, tmp / "pipeline")
        convert = run_command([jupyter, "nbconvert", "--to", "kfp", copy.name], copy.parent,
                              logs / "convert.log", timeout)
        text = _read(logs / "convert.log")
        convert.warnings = len(re.findall(r"\] WARNING \|", text))
        if not convert.ok and not convert.timed_out:
            convert.error, convert.cell = conversion_error(text)
        outcome.convert = convert
        script = copy.with_name(copy.stem + "_pipeline.py")
        if convert.ok and not script.exists():
            convert.ok, convert.error = False, f"nbconvert wrote no {script.name}"
        if convert.ok:
            compiled = run_command([python, script.name], copy.parent, logs / "compile.log", timeout)
            if not compiled.ok and not compiled.timed_out:
                compiled.error = last_error_line(_read(logs / "compile.log"))
            outcome.compile = compiled
        if outcome.compile.ok:
            local = run_command([python, script.name, "--local"], copy.parent, logs / "local.log", timeout)
            text = _read(logs / "local.log")
            for line in text.splitlines():
                match = _METRIC_LINE.match(line)
                if match:
                    try:
                        local.metrics[match.group(1)] = float(match.group(2))
                    except ValueError:
                        pass
            failed = _STEP_FAILED.search(text)
            if failed:
                local.step, local.cell = failed.group(1), int(failed.group(2)) - 1  # nbformat's 0-based index
            if not local.ok and not local.timed_out:
                local.error = failed.group(4).strip() if failed else last_error_line(text)
            outcome.local = local
        # (d): the original notebook, in another copy
        outcome.nbclient = _nbclient(notebook, tmp / "nbclient", names, logs / "nbclient.log", timeout)
        # (e) is judge(); when the metrics differ, a second nbclient run tells whether the notebook is deterministic
        if outcome.local.ok and outcome.nbclient.ok and names:
            same, _ = compare_metrics(outcome.local.metrics, outcome.nbclient.metrics)
            if not same:
                again = _nbclient(notebook, tmp / "nbclient-2", names, logs / "nbclient-2.log", timeout)
                if again.ok:
                    outcome.nbclient_rerun = again.metrics
                    outcome.deterministic = compare_metrics(again.metrics, outcome.nbclient.metrics)[0]
    finally:
        if keep:
            log(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    outcome.seconds = time.perf_counter() - start
    judge(outcome)
    return outcome


# --------------------------------------------------------------------------------------------- report


def _mark(phase: Phase) -> str:
    return "-" if not phase.ran else ("ok" if phase.ok else ("TIME" if phase.timed_out else "FAIL"))


def line_for(outcome: Outcome) -> str:
    """One line for a notebook: group, name, the five results, and the first line of the failure reason."""
    matched = "-" if not (outcome.local.ok and outcome.nbclient.ok) else ("ok" if outcome.matched else "DIFF")
    marks = (f"convert {_mark(outcome.convert):4s} compile {_mark(outcome.compile):4s} "
             f"ran {_mark(outcome.local):4s} nbclient {_mark(outcome.nbclient):4s} matched {matched:4s}")
    reason = f"  {outcome.reason.splitlines()[0][:160]}" if outcome.reason else ""
    name = outcome.name if len(outcome.name) <= 70 else "…" + outcome.name[-69:]
    return f"{outcome.group:10s} {name:70s} {marks}{reason}"


def summary(outcomes: list[Outcome]) -> str:
    """Per-group and total counts, failure categories, distinct failure reasons, and verdicts."""
    groups = sorted({o.group for o in outcomes})
    rows = [["group", "notebooks", "converted", "compiled", "ran", "nbclient", "matched"]]
    for group in [*groups, "total"]:
        chosen = [o for o in outcomes if group == "total" or o.group == group]
        rows.append([group, str(len(chosen)),
                     *(str(sum(1 for o in chosen if test(o))) for test in (
                         lambda o: o.convert.ok, lambda o: o.compile.ok, lambda o: o.local.ok,
                         lambda o: o.nbclient.ok, lambda o: o.matched))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(-1, lines[1])
    out = ["", "Summary", *lines, ""]
    out.append("Verdicts:")
    for verdict, count in Counter(o.verdict for o in outcomes).most_common():
        out.append(f"  {count:3d}  {verdict}")
    out.append("")
    out.append("Failure categories (first failing phase of each notebook):")
    for category, count in Counter(o.category for o in outcomes if o.category).most_common():
        example = next(o for o in outcomes if o.category == category)
        out.append(f"  {count:3d}  {category}   e.g. {example.group}/{example.name}")
    out.append("")
    out.append("Distinct failure reasons:")
    for reason, count in Counter(o.reason.splitlines()[0][:150] for o in outcomes if o.reason).most_common():
        out.append(f"  {count:3d}  {reason}")
    return "\n".join(out)


REPO = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def snapshot(revision: str, into: Path) -> str:
    """Export the package (nbconvert_kfp/) at a git revision into ``into`` and put it first on PYTHONPATH for
    every command of the run, so that edits to the work tree during the run do not change what is measured;
    return the commit id."""
    import io
    import tarfile

    commit = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, "nbconvert_kfp"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(into), os.environ.get("PYTHONPATH")]))
    return commit


def package_state(snapshot_commit: str | None) -> dict[str, Any]:
    """Which nbconvert-kfp the run measures: a snapshot of a commit, or the work tree (HEAD and whether it was edited)."""
    try:
        head = _git("rev-parse", "HEAD")
        edited = [line[3:] for line in _git("status", "--porcelain", "--", "nbconvert_kfp").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        head, edited = None, []
    if snapshot_commit:
        return {"measured": f"snapshot of {snapshot_commit}", "head": head}
    return {"measured": "work tree", "head": head, "edited_files": edited}


def _load_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """Source facts (repo, commit, path) per notebook from DIR/../manifest.json, keyed by path relative to DIR."""
    path = root.parent / "manifest.json"
    if not path.exists():
        return {}
    entries = json.loads(path.read_text())
    by_file = {}
    for entry in entries:
        local = root.parent / entry["local_file"]
        try:
            key = str(local.relative_to(root))
        except ValueError:
            continue
        by_file[key] = {k: entry[k] for k in ("repo", "commit", "path") if k in entry}
    return by_file


def find_notebooks(root: Path, only: list[str]) -> list[Path]:
    """Every notebook under ``root`` (checkpoints left out), filtered by substrings of their paths."""
    found = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())
    if only:
        found = [p for p in found if any(s in str(p.relative_to(root)) for s in only)]
    return found


def load_outcome(entry: dict[str, Any]) -> Outcome:
    """An Outcome from its JSON form (as ``asdict`` wrote it)."""
    phases = {key: Phase(**entry[key]) for key in ("convert", "compile", "local", "nbclient")}
    return Outcome(**{**entry, **phases})


def report(outcomes: list[Outcome], seconds: float, jobs: int) -> None:
    """Print one line per notebook, then the summary."""
    print("\nPer notebook:")
    for outcome in outcomes:
        print(line_for(outcome))
    print(summary(outcomes))
    print(f"\n{len(outcomes)} notebooks in {seconds / 60:.1f} min ({jobs} at a time)")


def main(argv: list[str] | None = None) -> int:
    """Run the real-world benchmark, or (``--nbclient-child``) one nbclient execution for it."""
    parser = argparse.ArgumentParser(prog="python -m bench.realworld", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR,
                        help=f"the notebooks, in group folders (default: {DEFAULT_DIR})")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks processed at once (default: 1)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds allowed to each command: conversion, compilation, local run, nbclient "
                        "(default: 600)")
    parser.add_argument("--only", action="append", default=[], metavar="TEXT",
                        help="only notebooks whose path under DIR contains TEXT (repeatable)")
    parser.add_argument("--output", type=Path, default=RESULTS / "realworld.json",
                        help="where to write the results (default: bench/results/realworld.json)")
    parser.add_argument("--keep", action="store_true", help="keep each notebook's temporary folders")
    parser.add_argument("--snapshot", metavar="REV",
                        help="measure nbconvert_kfp as committed at git revision REV (e.g. HEAD) instead of the "
                        "work tree, which may change while the run goes on")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="run nothing: judge and print again the results a previous run wrote to PATH")
    parser.add_argument("--nbclient-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--metric-names", default="null", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.nbclient_child:
        print(json.dumps(nbclient_child(args.nbclient_child, args.timeout, json.loads(args.metric_names))),
              flush=True)
        return 0

    if args.from_json:
        data = json.loads(args.from_json.read_text())
        outcomes = [load_outcome(entry) for entry in data["notebooks"]]
        for outcome in outcomes:
            judge(outcome)
        report(outcomes, data["seconds"], data["jobs"])
        return 0

    root = args.dir.resolve()
    if not root.is_dir():
        parser.error(f"{args.dir} is not a directory: put the notebooks there, in group folders "
                     "(DIR/<group>/.../<name>.ipynb), or pass another DIR")
    notebooks = find_notebooks(root, args.only)
    if not notebooks:
        parser.error(f"no notebooks under {root}" + (f" matching {args.only}" if args.only else ""))
    manifest = _load_manifest(root)
    snapshot_dir = Path(tempfile.mkdtemp(prefix="realworld-package-")) if args.snapshot else None
    package = package_state(snapshot(args.snapshot, snapshot_dir) if snapshot_dir else None)
    log(f"measuring nbconvert-kfp: {package['measured']}"
        + (f" (HEAD {package['head'][:10]}, edited: {', '.join(package['edited_files']) or 'nothing'})"
           if package["measured"] == "work tree" and package["head"] else ""))
    log(f"{len(notebooks)} notebooks under {root}; {args.jobs} at a time, {args.timeout:g} s per command; "
        f"logs in {LOGS}")
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_notebook, nb, root, args.timeout, manifest, args.keep): nb for nb in notebooks}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as err:  # a bug of this script: report it and go on
                log(f"  {futures[future]}: the benchmark itself failed: {type(err).__name__}: {err}")
                continue
            outcomes.append(outcome)
            log(f"[{len(outcomes)}/{len(notebooks)}] {outcome.seconds:6.1f}s {line_for(outcome)}")
    elapsed = time.perf_counter() - started
    if snapshot_dir:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    outcomes.sort(key=lambda o: (o.group, o.name))
    report(outcomes, elapsed, args.jobs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "dir": str(root), "jobs": args.jobs, "timeout": args.timeout, "seconds": elapsed,
        "python": sys.executable, "package": package, "notebooks": [asdict(o) for o in outcomes],
    }, indent=2) + "\n")
    print(f"Results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
