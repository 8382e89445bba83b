"""Step runtime: runs a step's notebook cells inside a KFP component, as Jupyter would.

This module runs inside pipeline steps and imports only the standard library (see
:mod:`nbconvert_kfp.runtime`). The cells of a step run in one fresh ``__main__`` module,
so functions and classes they define pickle and unpickle by reference as they do in a
notebook.
"""

from __future__ import annotations

import ast
import base64
import builtins
import inspect
import json
import linecache
import lzma
import math
import os
import sys
import time
import types
import zipfile
from typing import Any, Iterable

from . import marshal
from .report import Report, Tee, mime_bundle, user_traceback

#: Source handed to ``run`` starts with this newline, which is not part of the cell.
LEADING_NEWLINE = "\n"
#: The member of the shared-code archive that holds the notebook's imports and functions cells.
PRELUDE_MEMBER = "nbconvert-kfp-prelude.json"
#: Environment variable naming the file where a local run wants the step's outcome, as JSON: ``state``,
#: ``seconds``, ``saved`` (variable names), ``imported`` (see :class:`ImportRecorder`), and for a failure
#: ``where``, ``line``, ``error`` and ``traceback`` (from the user's cell on).
STATUS_FILE_ENV = "NBCONVERT_KFP_STEP_STATUS"
#: The matplotlib backend of a step with a report (:mod:`nbconvert_kfp.runtime.figure`).
BACKEND = "module://nbconvert_kfp.runtime.figure"


class ImportRecorder:
    """Notes the top-level modules first imported while a step runs, and who imported each: the user's
    cells (``__main__``) or a library calling into another one (``pandas.plotting._core`` imports matplotlib
    when ``df.plot()`` runs). Imports a package makes while it is itself being imported are left out: they
    are its own dependencies, or optional ones it does without. A local run compares what was noted with the
    step's cluster installs (``nbconvert_kfp.script.local.undeclaredimport``)."""

    #: The most modules one step records.
    LIMIT = 200

    def __init__(self) -> None:
        self.importers: dict[str, str] = {}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        """Note a top-level import (finding nothing: the other finders import it)."""
        if "." in name or name in self.importers or len(self.importers) >= self.LIMIT or name.startswith("_"):
            return None
        if name in sys.stdlib_module_names or name in sys.builtin_module_names:
            return None
        importer = _importer()
        top = importer.partition(".")[0]
        if top == "nbconvert_kfp":
            return None  # the step runtime's own optional imports (IPython, pygments for reports)
        spec = getattr(sys.modules.get(top), "__spec__", None)
        if top != "__main__" and getattr(spec, "_initializing", False):
            return None  # imported while its importer's package is itself being imported
        self.importers[name] = importer
        return None

    def imported(self) -> dict[str, str]:
        """Module -> the module that imported it, for the modules that were imported."""
        return {name: importer for name, importer in self.importers.items() if name in sys.modules}


def _importer() -> str:
    """The module whose code runs the import being found (import machinery and importlib skipped)."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        if not (frame.f_code.co_filename.startswith("<frozen") or name.startswith("importlib") or name == __name__):
            return name
        frame = frame.f_back
    return ""


class StepExit(RuntimeError):
    """A cell called ``sys.exit()`` (or ``exit()``): the step fails instead of ending without its outputs."""


class OutputError(ValueError):
    """A value the pipeline returns is not what its output declares (a metric that is not a number)."""


def _exit_error(err: SystemExit) -> StepExit:
    """The failure for a cell that called ``sys.exit``."""
    return StepExit(f"the cell called sys.exit({'' if err.code is None else repr(err.code)}): a step cannot stop "
                    "early, as its later cells would not run and its outputs would not be saved (raise an "
                    "exception to fail the step, or skip the rest of the cell with an if)")


def _shell(step: Step):
    """IPython's shell bound to the step's namespace, its displays recorded in the step's report."""
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    if InteractiveShell.initialized():
        return InteractiveShell.instance()

    class StepShell(InteractiveShell):
        """IPython's shell without a terminal: GUI event loops have nothing to attach to."""

        def enable_gui(self, gui=None):
            """Inline figures (%matplotlib inline) need no GUI event loop."""

    class Publisher(DisplayPublisher):
        """Send display() calls to the step's report."""

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            step.display_data(data)

        def clear_output(self, wait=False):
            """Nothing to clear in a report."""

    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = StepShell.instance(config=config, user_module=step.module, user_ns=step.namespace)
    shell.display_pub = Publisher(shell=shell)
    return shell


def _get_ipython_factory(step: Step):
    def get_ipython():
        """Return an IPython shell bound to the step's namespace (created on first use)."""
        try:
            return _shell(step)
        except ImportError:
            raise RuntimeError("this cell uses IPython syntax (%magic or !shell); install 'ipython' "
                               "in the step image") from None

    return get_ipython


#: Compile cells as IPython does: ``await`` may stand at a cell's top level.
_TOP_LEVEL_AWAIT = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT


def _split_last_expression(source: str, filename: str):
    """Compile a cell as Jupyter runs it: the body, then its last expression (shown as Out[])."""
    tree = ast.parse(source, filename)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr) and not source.rstrip().endswith(";"):
        body = compile(ast.Module(body=tree.body[:-1], type_ignores=[]), filename, "exec", flags=_TOP_LEVEL_AWAIT)
        return body, compile(ast.Expression(body=last.value), filename, "eval", flags=_TOP_LEVEL_AWAIT)
    return compile(tree, filename, "exec", flags=_TOP_LEVEL_AWAIT), None


def _strip_leading_newline(source: str) -> str:
    return source[len(LEADING_NEWLINE):] if source.startswith(LEADING_NEWLINE) else source


def _frames(error: BaseException):
    import traceback

    return traceback.extract_tb(error.__traceback__)


class Step:
    """One pipeline step: a namespace, the cells that run in it, and its inputs and outputs."""

    def __init__(self, name: str, bundle: str | None = None, report: Any = None, ipython: bool = False):
        """``bundle``: the path of the shared-code archive (the notebook's imports and functions cells).

        ``report``: the HTML output artifact to write the step's report to (None: no report).
        ``ipython``: the step displays objects or uses IPython, so IPython's shell (when
        installed) is started up front to format and record what the cells display.
        """
        self.name = name
        self.bundle = bundle
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        self.module.__dict__["get_ipython"] = _get_ipython_factory(self)
        self.module.__dict__["display"] = self._display
        self.report_artifact = report
        self.report = Report(name) if report is not None else None
        self._ipython = ipython
        self._saved: dict[str, Any] = {}
        self._started = 0.0
        self._loop: Any = None
        self._saved_names: list[str] = []
        self._failure: dict[str, Any] | None = None
        self._imports: ImportRecorder | None = None

    @property
    def namespace(self) -> dict[str, Any]:
        """The step's global namespace."""
        return self.module.__dict__

    def __enter__(self) -> Step:
        self._saved = {"main": sys.modules.get("__main__"), "stdout": sys.stdout, "stderr": sys.stderr}
        sys.modules["__main__"] = self.module
        self._started = time.perf_counter()
        print(f"[nbconvert-kfp] step {self.name!r} started", flush=True)
        if os.environ.get(STATUS_FILE_ENV):
            self._imports = ImportRecorder()
            sys.meta_path.insert(0, self._imports)  # type: ignore[arg-type]
        self._write_status("running", 0.0, None)
        if self.report is not None:
            if os.environ.get("MPLBACKEND", "agg").lower() == "agg":
                os.environ["MPLBACKEND"] = BACKEND  # plt.show() puts the figure in place in the report
                if "matplotlib" in sys.modules:  # imported before the step started (a warm local run)
                    sys.modules["matplotlib"].use(BACKEND)
            sys.stdout = Tee("stdout", sys.stdout, self.report)
            sys.stderr = Tee("stderr", sys.stderr, self.report)
            if self._ipython:
                try:
                    _shell(self)
                except ImportError:
                    pass
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        sys.stdout, sys.stderr = self._saved["stdout"], self._saved["stderr"]
        if self._imports is not None and self._imports in sys.meta_path:
            sys.meta_path.remove(self._imports)  # type: ignore[arg-type]
        if self._saved["main"] is not None:
            sys.modules["__main__"] = self._saved["main"]
        elapsed = time.perf_counter() - self._started
        if self.report is not None:
            try:
                self._write_report(exc, elapsed)
            except Exception as err:  # the step's outcome stands without its report
                print(f"[nbconvert-kfp] report not written: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        state = "failed" if exc is not None else "finished"
        print(f"[nbconvert-kfp] step {self.name!r} {state} in {elapsed:.2f}s", flush=True)
        self._write_status(state, elapsed, exc)

    def _write_report(self, exc: BaseException | None, elapsed: float) -> None:
        """Write the report to its artifact; a local run gets it as ``.html`` too, the file its summary names."""
        self.report.finish(exc, elapsed)
        page = self.report.html()
        paths = [self.report_artifact.path]
        if os.environ.get(STATUS_FILE_ENV):
            paths.append(self.report_artifact.path + ".html")
        for path in paths:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(page)
        print(f"[nbconvert-kfp] report: {paths[-1]}", flush=True)

    def _write_status(self, state: str, elapsed: float, exc: BaseException | None, cell: Any = None) -> None:
        """Leave the step's outcome where a local run asked for it (see :data:`STATUS_FILE_ENV`).

        While the step runs the record says ``running`` and the cell it is in: a process that ends
        without the step finishing (``os._exit``) leaves that record behind for the run to report.
        """
        path = os.environ.get(STATUS_FILE_ENV)
        if not path:
            return
        record: dict[str, Any] = {"step": self.name, "state": state, "seconds": round(elapsed, 3),
                                  "saved": self._saved_names}
        if self._imports is not None and state != "running":
            record["imported"] = self._imports.imported()
        if cell is not None:
            record["where"] = f"notebook cell {cell}" if isinstance(cell, int) else str(cell)
        if exc is not None:
            record.update(self._failure or {"where": None, "line": None,
                                            "error": f"{type(exc).__name__}: {exc}"[:2000]})
            record["traceback"] = user_traceback(exc)
        try:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
        except OSError:
            pass

    def _display(self, *objects: Any, **kwargs: Any) -> None:
        """Jupyter's display(): record each object's richest representation in the report."""
        try:
            _shell(self)
            from IPython.display import display
        except ImportError:
            display = None
        if display is not None:
            display(*objects, **kwargs)
            return
        for obj in objects:
            self.display_data(mime_bundle(obj))

    def display_data(self, data: dict[str, Any]) -> None:
        """Record a MIME bundle in the report (or print its text where there is no report)."""
        if self.report is not None and self.report.current is not None:
            self.report.current.display(data)
        elif self.report is None:
            print(data.get("text/plain", ""), flush=True)

    @staticmethod
    def literal(text: str) -> Any:
        """The value of a parameter carried as its Python literal (``(1, 2)``, ``None``, ``float('nan')``)."""
        return _literal_value(ast.parse(text, mode="eval").body)

    def run_prelude(self) -> None:
        """Run the notebook's imports and functions cells, from the shared-code archive."""
        if self.bundle is None:
            return
        with zipfile.ZipFile(self.bundle) as archive:
            if PRELUDE_MEMBER not in archive.namelist():
                return
            cells = json.loads(archive.read(PRELUDE_MEMBER).decode("utf-8"))
        self.run(_entries(cells), prelude=True)

    def run_packed(self, payload: str, prelude: bool = False) -> None:
        """Run cells shipped packed, as a large step's are: ``[[label, source, original], ...]`` as JSON,
        xz-compressed, in base64."""
        self.run(_entries(json.loads(lzma.decompress(base64.b64decode(payload)).decode("utf-8"))), prelude)

    def files(self, places: dict[str, str]) -> None:
        """Put the data files the step reads where its cells look for them: each path (a file, a folder or a
        glob, relative to the notebook's folder) under the working directory, linked from the folder of the
        artifact that brought it. A file already there (a local run in the notebook's folder) is kept."""
        import glob

        for relative, root in places.items():
            if any(c in relative for c in "*?["):
                matches = sorted(glob.glob(relative, root_dir=root, recursive=True))
            elif os.path.isdir(os.path.join(root, relative)):
                matches = sorted(os.path.relpath(os.path.join(base, name), root)
                                 for base, _, names in os.walk(os.path.join(root, relative)) for name in names)
            else:
                matches = [relative]
            for match in matches:
                self._place(os.path.join(root, match), match)

    @staticmethod
    def _place(source: str, relative: str) -> None:
        if not os.path.exists(source):
            raise FileNotFoundError(f"the data file {relative!r} did not reach the step (expected at {source})")
        if os.path.lexists(relative):
            return
        try:
            os.makedirs(os.path.dirname(relative) or ".", exist_ok=True)
        except PermissionError:  # the image's working directory is not ours to write: work in a fresh one
            import tempfile

            os.chdir(tempfile.mkdtemp(prefix="step-"))
            print(f"working directory {os.getcwd()} (the image's is read-only)", flush=True)
            os.makedirs(os.path.dirname(relative) or ".", exist_ok=True)
        try:
            os.symlink(source, relative)
        except OSError:
            import shutil

            shutil.copy2(source, relative)

    def define(self, values: dict[str, Any]) -> None:
        """Bind pipeline parameters in the namespace."""
        self.namespace.update(values)
        if self.report is not None:
            for name, value in values.items():
                self.report.parameter(name, value)

    def markdown(self, cells: Iterable[tuple[int, str]]) -> None:
        """The step's markdown cells, ``(cell number, HTML)`` as rendered at conversion: its report shows
        them among its code cells."""
        if self.report is not None:
            for label, text in cells:
                self.report.markdown(label, _strip_leading_newline(text))

    def run(self, cells: Iterable[tuple], prelude: bool = False) -> None:
        """Run ``(cell number (1-based) or label, source[, original])`` in order, as notebook cells.

        ``original`` is the text the user wrote, when IPython syntax made it differ
        from ``source``; the report shows it. ``prelude``: the cells every step runs
        (imports, functions, parameters), which the report folds away.
        """
        for label, source, *original in cells:
            source = _strip_leading_newline(source)
            shown = _strip_leading_newline(original[0]) if original else source
            filename = f"<cell {label}>" if isinstance(label, int) else f"<{label}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            body, last = _split_last_expression(source, filename)
            record = self.report.begin(label, shown, prelude) if self.report is not None else None
            self._write_status("running", time.perf_counter() - self._started, None, label)
            try:
                self._evaluate(body)
                if last is not None:
                    value = self._evaluate(last)
                    if value is not None and isinstance(label, int):
                        self.namespace["_"] = value
                        if record is not None:
                            record.display(mime_bundle(value), result=True)
            except BaseException as caught:
                err = _exit_error(caught) if isinstance(caught, SystemExit) else caught
                where = f"notebook cell {label}" if isinstance(label, int) else label
                line = next((f.lineno for f in _frames(caught) if f.filename == filename), None)
                at = f", line {line}" if line else ""
                if record is not None:
                    record.error(err)
                self._failure = {"where": where, "line": line, "error": f"{type(err).__name__}: {err}"[:2000]}
                print(f"[nbconvert-kfp] step {self.name!r} failed in {where}{at}: "
                      f"{type(err).__name__}: {err}", file=getattr(sys.stderr, "target", sys.stderr), flush=True)
                if hasattr(err, "add_note"):
                    err.add_note(f"(in {where}{at} of step {self.name!r})")
                if err is not caught:
                    raise err.with_traceback(caught.__traceback__) from None
                raise
            finally:
                if self.report is not None:
                    self.report.end()

    def _evaluate(self, code: types.CodeType) -> Any:
        """Run compiled cell code in the namespace; code with a top-level ``await`` runs on the step's
        event loop, one loop for all its cells, as IPython keeps one."""
        if not code.co_flags & inspect.CO_COROUTINE:
            return eval(code, self.namespace)
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(eval(code, self.namespace))

    def load(self, artifacts: dict[str, Any]) -> None:
        """Load each variable from its input artifact into the namespace.

        When the artifact's metadata records a ``format``, the file must have it.
        """
        for name, artifact in artifacts.items():
            metadata = getattr(artifact, "metadata", None) or {}
            try:
                value = marshal.resource_load(artifact.path, format=metadata.get("format"))
            except Exception as err:
                raise marshal.MarshalError(_load_failure(self.name, name, metadata, err)) from err
            self.namespace[name] = value
            if self.report is not None:
                self.report.inputs[name] = f"{type(value).__module__}.{type(value).__qualname__}"

    def save(self, artifacts: dict[str, Any]) -> None:
        """Save each variable of the namespace to its output artifact; record its format and type."""
        for name, artifact in artifacts.items():
            if name not in self.namespace:
                raise marshal.MarshalError(
                    f"step {self.name!r} did not define {name!r}, which a later step reads")
            value = self.namespace[name]
            python_type = f"{type(value).__module__}.{type(value).__qualname__}"
            try:
                written = marshal.resource_save(value, artifact.path)
            except Exception as err:
                raise marshal.MarshalError(
                    f"step {self.name!r} cannot save variable {name!r} ({python_type}), which a later "
                    f"step reads: {err}. {_advice(err)}") from err
            artifact.metadata["format"] = marshal.format_of(written)
            artifact.metadata["python_type"] = python_type
            artifact.metadata["variable"] = name
            self._saved_names.append(name)
            if self.report is not None:
                self.report.outputs[name] = python_type

    def log_metrics(self, artifact: Any, names: Iterable[str], classification: Any = None) -> None:
        """Log the metrics variables: numbers as metrics, a dict as one metric per key, and a
        confusion matrix or ROC curve in ``classification`` (a KFP ClassificationMetrics artifact)."""
        for name in names:
            value = self.namespace.get(name)
            if classification is not None and _log_classification(classification, name, value):
                continue
            items = value.items() if isinstance(value, dict) else [(name, value)]
            for key, item in items:
                self._log_number(artifact, str(key), item)
        for written in (artifact, classification):
            _write_metadata_file(written)

    def numbers(self, names: Iterable[str]) -> tuple[float, ...]:
        """The values of the metrics the pipeline returns, as numbers (KFP ``float`` outputs); a value that
        is not a finite number fails the step, naming the metric."""
        values = []
        for name in names:
            value = self.namespace.get(name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
            if number is None or not math.isfinite(number):
                what = f"is {number}" if number is not None else f"is not a number ({type(value).__name__})"
                raise OutputError(f"metric {name!r} {what}: the pipeline returns it as a number (a KFP float output), "
                                  f"so step {self.name!r} must leave it a finite number; make it one, or take it "
                                  "out of the pipeline-metrics cell")
            values.append(number)
        return tuple(values)

    @staticmethod
    def _log_number(artifact: Any, name: str, value: Any) -> None:
        try:
            number = float(value)
        except (TypeError, ValueError):
            print(f"[nbconvert-kfp] metric {name!r} is not a number ({type(value).__name__}); "
                  "not logged", file=sys.stderr, flush=True)
            return
        if not math.isfinite(number):
            print(f"[nbconvert-kfp] metric {name!r} is {number}; not logged", file=sys.stderr)
            return
        artifact.log_metric(name, number)
        print(f"[nbconvert-kfp] metric {name} = {number:g}", flush=True)


def _write_metadata_file(artifact: Any) -> None:
    """Write a metrics artifact's metadata to its file too: KFP reads the metadata, and a file at the
    artifact's URI lets a local run's cache find the artifact again."""
    if artifact is None or not getattr(artifact, "path", None):
        return
    try:
        os.makedirs(os.path.dirname(artifact.path) or ".", exist_ok=True)
        with open(artifact.path, "w", encoding="utf-8") as fh:
            json.dump(artifact.metadata, fh, default=str)
    except OSError:
        pass


def _literal_value(node: ast.AST) -> Any:
    """``ast.literal_eval``, plus ``float('nan')``, ``float('inf')`` and ``float('-inf')``."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant)):
        return float(node.args[0].value)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [_literal_value(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items) if isinstance(node, ast.Tuple) else set(items)
    if isinstance(node, ast.Dict):
        return {_literal_value(k): _literal_value(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def _entries(cells: list[list]) -> list[tuple]:
    """``run``'s entries from ``[label, source, original or None]`` lists."""
    return [(label, LEADING_NEWLINE + source, *([LEADING_NEWLINE + original] if original else []))
            for label, source, original in cells]


def _as_list(value: Any) -> list | None:
    if hasattr(value, "tolist"):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else None


def _log_classification(artifact: Any, name: str, value: Any) -> bool:
    """Log a confusion matrix or ROC curve; tell whether ``value`` was one.

    Recognised: scikit-learn's ``ConfusionMatrixDisplay``; a square matrix of counts
    (``confusion_matrix(...)``); ``{"matrix": ..., "labels": [...]}``; the tuple that
    ``roc_curve(...)`` returns; ``{"fpr": ..., "tpr": ..., "thresholds": ...}``.
    """
    labels = None
    matrix = None
    if type(value).__name__ == "ConfusionMatrixDisplay":
        matrix = _as_list(value.confusion_matrix)
        labels = _as_list(value.display_labels) if value.display_labels is not None else None
    elif isinstance(value, dict) and "matrix" in value:
        matrix, labels = _as_list(value["matrix"]), _as_list(value.get("labels"))
    elif getattr(value, "ndim", 0) == 2 and getattr(value, "dtype", None) is not None and value.dtype.kind in "iu":
        matrix = _as_list(value)
    if matrix is not None and matrix and all(isinstance(row, list) and len(row) == len(matrix) for row in matrix):
        labels = [str(label) for label in (labels or range(len(matrix)))]
        artifact.log_confusion_matrix(labels, [[int(x) for x in row] for row in matrix])
        print(f"[nbconvert-kfp] metric {name}: confusion matrix over {len(labels)} classes", flush=True)
        return True
    curve = None
    if isinstance(value, dict) and {"fpr", "tpr", "thresholds"} <= set(value):
        curve = [_as_list(value[k]) for k in ("fpr", "tpr", "thresholds")]
    elif isinstance(value, tuple) and len(value) == 3 and all(getattr(v, "ndim", 0) == 1 for v in value):
        curve = [_as_list(v) for v in value]
    if curve and all(curve) and len({len(c) for c in curve}) == 1:
        fpr, tpr, thresholds = ([float(x) for x in c] for c in curve)
        # roc_curve's first threshold is +inf, which JSON cannot hold: use max + 1, as sklearn once did
        finite = [t for t in thresholds if math.isfinite(t)] or [0.0]
        thresholds = [t if math.isfinite(t) else max(finite) + 1 for t in thresholds]
        artifact.log_roc_curve(fpr, tpr, thresholds)
        print(f"[nbconvert-kfp] metric {name}: ROC curve of {len(fpr)} points", flush=True)
        return True
    return False


def _advice(err: BaseException) -> str:
    """What to do about a value that cannot be saved."""
    if isinstance(err, ImportError) and err.name:
        return f"Install {err.name!r} in the step image."
    return ("Recreate the value in the step that reads it, or create it in a `functions` cell so that "
            "every step makes its own (or register a saver for its type: see nbconvert_kfp.marshal).")


def _load_failure(step: str, name: str, metadata: dict[str, Any], err: BaseException) -> str:
    """The message for a variable that cannot be loaded."""
    saved = f" ({metadata['python_type']}, format {metadata.get('format')!r})" if "python_type" in metadata else ""
    message = f"step {step!r} cannot load variable {name!r}{saved}: {type(err).__name__}: {err}"
    if isinstance(err, ImportError) and err.name:
        return f"{message}. Install {err.name!r} in the step image."
    if isinstance(err, AttributeError) and "__main__" in str(err):
        return (f"{message}. A class or function defined in the notebook must also be defined in this "
                "step: define it in a `functions` cell.")
    return message
