"""Real-world notebooks: convert, compile and run each one locally, run it with nbclient, and compare.

Run from the repository root: ``.venv/bin/python -m bench.realworld [DIR] [--jobs N] [--timeout S]``.
DIR (default /work/realworld/notebooks) holds notebooks in group folders: DIR/<group>/.../<name>.ipynb.
For each notebook, in fresh temporary copies of its folder, it (a) converts it with
``jupyter nbconvert --to kfp``, (b) compiles the script (``python X_pipeline.py``), (c) runs it with
``--local``, (d) runs the original notebook top to bottom with nbclient, and (e) compares the two runs.
With ``--cluster``, (f) runs the pipeline of each notebook that converts and whose nbclient run succeeds the way
a KFP cluster does: the script imported (not ``--local``), each step in a fresh virtualenv that holds only what
its own command installs, from an empty folder, with the data that travels through the object store pushed to
an S3 server on 127.0.0.1.
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
#: The file collect.py writes in each notebook's folder: the folder a run copies.
COLLECTED_MARKER = ".collected-folder"
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
    #: --cluster: the converted pipeline run as a cluster runs it (only for notebooks that convert and whose
    #: nbclient run succeeds), why it failed and the kind of failure
    cluster: Phase = field(default_factory=Phase)
    cluster_reason: str | None = None
    cluster_category: str | None = None


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


def run_command(argv: list[str], cwd: Path, log_file: Path, timeout: float,
                env: dict[str, str] | None = None) -> Phase:
    """Run a command with its output in ``log_file``; kill it and all it started after ``timeout`` seconds."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_file.open("w") as sink:
        process = subprocess.Popen(argv, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env or _environment(), start_new_session=True)
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
    """Copy the notebook's folder to ``into``; return the notebook's path in the copy. A notebook that collect.py
    put below the folders its code reads from (``../data/x.csv``) is copied with the folder that holds them,
    the one with collect.py's marker file."""
    top = next((folder for folder in notebook.parents if (folder / COLLECTED_MARKER).is_file()),
               notebook.parent)
    shutil.copytree(top, into, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*_pipeline.py",
                                                             "*_pipeline.yaml", "local_outputs", COLLECTED_MARKER))
    return into / notebook.relative_to(top)


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


# --------------------------------------------------------------------------------------------- cluster-like


@dataclass
class ClusterMode:
    """How the cluster-like phase runs: its timeout and the object store that stands for the cluster's."""

    timeout: float
    store: ObjectStore | None


#: "[nbconvert-kfp] step 'NAME' failed in notebook cell 3, line 2: Error: message", as a step reports its failure
_CLUSTER_STEP_FAILED = re.compile(
    r"\[nbconvert-kfp\] step '(.+?)' failed in (?:notebook cell (\d+))?[^:]*?: (.*)$", re.MULTILINE)
_CLUSTER_METRIC = re.compile(r"\[nbconvert-kfp\] metric (\S+) = (\S+)$", re.MULTILINE)
_TASK_FAILED = re.compile(r"Task '(.+?)' finished with status FAILURE")
_PIP_ERROR = re.compile(r"^\s*ERROR: (Could not find a version|No matching distribution|Failed building|"
                        r"ResolutionImpossible|Cannot install|Could not build|Invalid requirement).*$", re.MULTILINE)
#: the end line of a successful cluster-like run
CLUSTER_OK = "@@realworld-cluster-ok@@"
#: importer URIs an object store serves, and the folder where kfp.local's artifacts find them (as a launcher does)
_STORE_MOUNTS = {"s3://": "/s3/", "minio://": "/minio/"}
#: what a library needs but does not import until a call needs it: pandas plotting, parquet, Excel, tables
_LAZY_DEPENDENCY = ("optional dependency", "required for plotting", "Unable to find a usable engine",
                    "IProgress not found", "Install openpyxl", "Install xlrd", "pip install pyarrow",
                    "pip install tabulate", "Import tabulate failed")
_IPYTHON = ("get_ipython", "No module named 'IPython'", "UsageError", "IPython")


def _download_store_artifact(uri: str, endpoint: str) -> None:
    """Copy the object, or the objects under a prefix, an importer's ``s3://`` or ``minio://`` URI names to the
    local folder kfp.local gives that URI (/s3/BUCKET/KEY, /minio/BUCKET/KEY)."""
    import boto3

    scheme = next(s for s in _STORE_MOUNTS if uri.startswith(s))
    bucket, _, key = uri[len(scheme):].partition("/")
    client = boto3.client("s3", endpoint_url=endpoint)
    prefix = key.rstrip("/")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) if o["Key"] == prefix or o["Key"].startswith(prefix + "/")]
    if not keys:
        raise FileNotFoundError(f"importer artifact {uri}: no object in the object store at {endpoint}")
    for name in keys:
        target = Path(_STORE_MOUNTS[scheme]) / bucket / name
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, name, str(target))


def cluster_child(script: Path, pipeline_root: Path, endpoint: str | None) -> int:
    """Run the pipeline of ``script`` as a cluster does, from the current (empty) folder: the script imported
    (cluster settings and install lists), every step in a fresh virtualenv, importer artifacts fetched from the
    object store at ``endpoint``."""
    import importlib.util

    os.environ.pop("NBCONVERT_KFP_LOCAL_RUN", None)
    sys.argv = [str(script)]
    spec = importlib.util.spec_from_file_location("realworld_pipeline", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if getattr(module, "LOCAL_RUN", False):
        print("the script was imported in local mode", flush=True)
        return 1
    from kfp import local
    from kfp.local import importer_handler

    if endpoint:
        import_artifact = importer_handler.run_importer

        def import_and_download(*args: Any, **kwargs: Any) -> Any:
            outputs, status = import_artifact(*args, **kwargs)
            for artifact in outputs.values():
                if artifact.uri.startswith(tuple(_STORE_MOUNTS)):
                    _download_store_artifact(artifact.uri, endpoint)
            return outputs, status

        importer_handler.run_importer = import_and_download
    # the steps' environment comes from their own installs only: nothing of this run's Python path
    os.environ.pop("PYTHONPATH", None)
    local.init(runner=local.SubprocessRunner(use_venv=True), pipeline_root=str(pipeline_root))
    module.pipeline()
    print(CLUSTER_OK, flush=True)
    return 0


class ObjectStore:
    """An S3 server on 127.0.0.1 (moto) that stands for the cluster's object store, and the environment that
    reaches it (endpoint and dummy credentials)."""

    def __init__(self) -> None:
        import logging
        import socket

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "realworld",
                    "AWS_SECRET_ACCESS_KEY": "realworld", "AWS_DEFAULT_REGION": "us-east-1"}
        self._buckets: set[str] = set()
        self._lock = threading.Lock()

    def bucket(self, name: str) -> None:
        """Create bucket ``name`` once."""
        import boto3

        with self._lock:
            if name in self._buckets:
                return
            client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="realworld",
                                  aws_secret_access_key="realworld", region_name="us-east-1")
            client.create_bucket(Bucket=name)
            self._buckets.add(name)

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()


def _cluster_environment(store: ObjectStore | None) -> dict[str, str]:
    """The environment of a cluster-like run: steps may install from the package index, nothing of our Python
    path leaks into them, and the object store is reachable."""
    env = _environment()
    env.pop("PIP_NO_INDEX", None)
    env.pop("PYTHONPATH", None)
    env.update(store.env if store else {})
    return env


def _imported_modules(notebook: Path) -> set[str]:
    """Top-level names of the modules the notebook's code cells import (cells that do not parse left out)."""
    import nbformat

    from nbconvert_kfp.analysis.parsedcell import imported_modules

    found: set[str] = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        found.update(module.partition(".")[0] for module in imported_modules(tree))
    return found


def _cell_uses_ipython(notebook: Path, cell: int | None) -> bool:
    """Whether code cell ``cell`` (0-based nbformat index) holds IPython syntax: magics, ``!`` commands, ``?``."""
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    if cell is None or not 0 <= cell < len(cells):
        return False
    return any(line.lstrip().startswith(("%", "!")) or line.rstrip().endswith("?")
               for line in cells[cell].source.splitlines())


def cluster_category(phase: Phase, notebook: Path, text: str) -> str:
    """The kind of a cluster-like failure: IPython syntax, a lazy or a missing library, data, install, network..."""
    error = phase.error or ""
    if phase.timed_out:
        return "timeout"
    if _PIP_ERROR.search(text) and not phase.step:
        return "install (pip)"
    if "push-data" in error or "object store" in error:
        return "object store"
    if any(needle in error for needle in _IPYTHON) or (
            "SyntaxError" in error and _cell_uses_ipython(notebook, phase.cell)):
        return "IPython"
    if any(needle in error for needle in _LAZY_DEPENDENCY):
        return "missing library (lazy dependency)"
    missing = re.search(r"No module named '([\w.]+)'", error)
    if missing:
        try:
            imported = _imported_modules(notebook)
        except Exception:  # an unreadable notebook: the plain category
            imported = set()
        top = missing.group(1).split(".")[0]
        return "missing library" if top in imported or not imported else "missing library (lazy dependency)"
    category = _category(error)
    return category if category != "other" else f"other ({_exception_name(error or 'error')})"


def _cluster(notebook: Path, script: Path, tmp: Path, logs: Path, timeout: float,
             store: ObjectStore | None) -> Phase:
    """Run the converted pipeline as a cluster does: push its object-store data, then run every step in a fresh
    virtualenv from an empty folder, with the script alone in another folder."""
    env = _cluster_environment(store)
    source = _copy_folder(notebook, tmp / "cluster-source").parent
    shutil.copy2(script, source / script.name)
    text = script.read_text(errors="replace")
    if store and re.search(r'"via": "store"', text):
        root = re.search(r'^DATA_ROOT = "(\w+)://([^/"]+)', text, re.MULTILINE)
        if root:
            store.bucket(root.group(2))
        pushed = run_command([sys.executable, script.name, "--push-data"], source, logs / "cluster-push.log",
                             timeout, env)
        if not pushed.ok:
            pushed.error = "push-data: " + (pushed.error or last_error_line(_read(logs / "cluster-push.log")) or "?")
            return pushed
    alone = tmp / "cluster-script"
    alone.mkdir()
    shutil.copy2(script, alone / script.name)
    pod = tmp / "cluster-pod"
    pod.mkdir()
    argv = [sys.executable, str(Path(__file__).resolve()), "--cluster-child", str(alone / script.name),
            "--pipeline-root", str(tmp / "cluster-root")]
    if store:
        argv += ["--s3-endpoint", store.endpoint]
    phase = run_command(argv, pod, logs / "cluster.log", timeout, env)
    text = _read(logs / "cluster.log")
    phase.ok = phase.ok and CLUSTER_OK in text
    for match in _CLUSTER_METRIC.finditer(text):
        try:
            phase.metrics[match.group(1)] = float(match.group(2))
        except ValueError:
            pass
    failed_task = _TASK_FAILED.search(text)
    failed = _CLUSTER_STEP_FAILED.search(text)
    if failed:
        phase.step = failed.group(1)
        phase.cell = int(failed.group(2)) - 1 if failed.group(2) else None
    elif failed_task:
        phase.step = failed_task.group(1)
    if not phase.ok and not phase.timed_out:
        pip = _PIP_ERROR.search(text)
        if failed:
            phase.error = failed.group(3).strip()
        elif pip:
            phase.error = pip.group(0).strip()
        else:
            phase.error = last_error_line(text.split("Traceback", 1)[0] if failed_task else text) \
                or f"exited {phase.returncode}"
            # the last exception line of the step's output, when kfp.local's own traceback follows it
            lines = [line.strip() for line in text.splitlines() if _EXCEPTION_LINE.match(line.strip())]
            useful = [line for line in lines if not line.startswith("RuntimeError: Pipeline")]
            if useful:
                phase.error = useful[-1]
    return phase


def judge_cluster(outcome: Outcome, notebook: Path | None) -> None:
    """Set the cluster failure reason and its category."""
    phase = outcome.cluster
    outcome.cluster_reason = outcome.cluster_category = None
    if not phase.ran or phase.ok:
        return
    where = f" (step {phase.step}" + (f", cell {phase.cell + 1})" if phase.cell is not None else ")") \
        if phase.step else ""
    outcome.cluster_reason = f"cluster{where}: {phase.error}"
    if notebook is not None:
        outcome.cluster_category = cluster_category(phase, notebook, _read(Path(phase.log)) if phase.log else "")


def run_notebook(notebook: Path, root: Path, timeout: float, manifest: dict[str, dict[str, Any]],
                 keep: bool, cluster: ClusterMode | None = None, logs_root: Path = LOGS) -> Outcome:
    """Convert, compile, run locally and with nbclient one notebook, each in a fresh copy of its folder, and
    with ``cluster``, run the pipeline as a cluster does when it converts and its nbclient run succeeds."""
    relative = notebook.relative_to(root)
    group = relative.parts[0] if len(relative.parts) > 1 else "."
    name = str(Path(*relative.parts[1:])) if len(relative.parts) > 1 else relative.name
    if len(relative.parts) == 3 and relative.parts[1].split("@")[0].endswith(notebook.stem):
        name = relative.parts[1]  # a notebook alone in a folder named after it (collect.py's layout)
    logs = logs_root / _slug(relative)
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
        # (f) with --cluster: the pipeline as a cluster runs it
        if cluster and outcome.convert.ok and outcome.nbclient.ok:
            outcome.cluster = _cluster(notebook, script, tmp, logs, cluster.timeout, cluster.store)
            judge_cluster(outcome, notebook)
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
    if outcome.cluster.ran:
        marks += f" cluster {_mark(outcome.cluster):4s}"
    reasons = [r.splitlines()[0][:160] for r in (outcome.reason, outcome.cluster_reason) if r]
    reason = "  " + " | ".join(reasons) if reasons else ""
    name = outcome.name if len(outcome.name) <= 70 else "…" + outcome.name[-69:]
    return f"{outcome.group:10s} {name:70s} {marks}{reason}"


def summary(outcomes: list[Outcome]) -> str:
    """Per-group and total counts, failure categories, distinct failure reasons, and verdicts."""
    groups = sorted({o.group for o in outcomes})
    clustered = any(o.cluster.ran for o in outcomes)
    rows = [["group", "notebooks", "converted", "compiled", "ran", "nbclient", "matched"]
            + (["cluster"] if clustered else [])]
    for group in [*groups, "total"]:
        chosen = [o for o in outcomes if group == "total" or o.group == group]
        rows.append([group, str(len(chosen)),
                     *(str(sum(1 for o in chosen if test(o))) for test in (
                         lambda o: o.convert.ok, lambda o: o.compile.ok, lambda o: o.local.ok,
                         lambda o: o.nbclient.ok, lambda o: o.matched))])
        if clustered:  # succeeded / ran (the notebooks that convert and whose nbclient run succeeds)
            rows[-1].append(f"{sum(1 for o in chosen if o.cluster.ok)}/{sum(1 for o in chosen if o.cluster.ran)}")
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
    if clustered:
        out.append("")
        out.append("Cluster-like failures (of the notebooks that convert and whose nbclient run succeeds):")
        for category, count in Counter(o.cluster_category for o in outcomes if o.cluster_category).most_common():
            out.append(f"  {count:3d}  {category}")
            for o in outcomes:
                if o.cluster_category == category:
                    out.append(f"         {o.group}/{o.name}: {(o.cluster_reason or '').splitlines()[0][:150]}")
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
    phases = {key: Phase(**entry[key]) for key in ("convert", "compile", "local", "nbclient", "cluster")
              if key in entry}
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
    parser.add_argument("--logs", type=Path, default=LOGS,
                        help="where the output of every command goes (default: bench/results/realworld-logs)")
    parser.add_argument("--keep", action="store_true", help="keep each notebook's temporary folders")
    parser.add_argument("--snapshot", metavar="REV",
                        help="measure nbconvert_kfp as committed at git revision REV (e.g. HEAD) instead of the "
                        "work tree, which may change while the run goes on")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="run nothing: judge and print again the results a previous run wrote to PATH")
    parser.add_argument("--cluster", action="store_true",
                        help="also run each pipeline as a KFP cluster does (when the notebook converts and its nbclient "
                        "run succeeds): the script imported, each step in a fresh virtualenv holding only what it "
                        "installs, from an empty folder, data through an S3 server on 127.0.0.1 (slow: minutes per "
                        "notebook)")
    parser.add_argument("--cluster-timeout", type=float, default=1800,
                        help="seconds allowed to each cluster-like run (default: 1800)")
    parser.add_argument("--nbclient-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cluster-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--s3-endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--metric-names", default="null", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.nbclient_child:
        print(json.dumps(nbclient_child(args.nbclient_child, args.timeout, json.loads(args.metric_names))),
              flush=True)
        return 0
    if args.cluster_child:
        return cluster_child(args.cluster_child, args.pipeline_root, args.s3_endpoint)

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
        f"logs in {args.logs}")
    cluster = ClusterMode(args.cluster_timeout, ObjectStore()) if args.cluster else None
    if cluster:
        log(f"cluster-like runs: fresh virtualenv per step, object store at {cluster.store.endpoint}, "
            f"{args.cluster_timeout:g} s per run")
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_notebook, nb, root, args.timeout, manifest, args.keep, cluster, args.logs): nb
                   for nb in notebooks}
        for future in as_completed(futures):
            try:
                outcome = future.result()
            except Exception as err:  # a bug of this script: report it and go on
                log(f"  {futures[future]}: the benchmark itself failed: {type(err).__name__}: {err}")
                continue
            outcomes.append(outcome)
            log(f"[{len(outcomes)}/{len(notebooks)}] {outcome.seconds:6.1f}s {line_for(outcome)}")
    elapsed = time.perf_counter() - started
    if cluster and cluster.store:
        cluster.store.stop()
    if snapshot_dir:
        shutil.rmtree(snapshot_dir, ignore_errors=True)
    outcomes.sort(key=lambda o: (o.group, o.name))
    report(outcomes, elapsed, args.jobs)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "dir": str(root), "jobs": args.jobs, "timeout": args.timeout, "seconds": elapsed,
        "cluster": {"timeout": args.cluster_timeout} if args.cluster else None,
        "python": sys.executable, "package": package, "notebooks": [asdict(o) for o in outcomes],
    }, indent=2) + "\n")
    print(f"Results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
