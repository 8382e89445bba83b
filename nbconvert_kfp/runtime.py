"""Step runtime: runs a step's notebook cells inside a KFP component, as Jupyter would.

This module runs inside pipeline steps and imports only the standard library and
``nbconvert_kfp.marshal``; generated scripts carry its source. The cells of a step
run in one fresh ``__main__`` module, so functions and classes they define pickle and
unpickle by reference as they do in a notebook.
"""

from __future__ import annotations

import builtins
import linecache
import math
import sys
import time
import types
from typing import Any, Iterable

from . import marshal

#: Source handed to ``run`` starts with this newline, which is not part of the cell.
LEADING_NEWLINE = "\n"


def _get_ipython_factory(module: types.ModuleType):
    def get_ipython():
        """Return an IPython shell bound to the step's namespace (created on first use)."""
        try:
            from IPython.core.interactiveshell import InteractiveShell
        except ImportError:
            raise RuntimeError("this cell uses IPython syntax (%magic or !shell); install 'ipython' "
                               "in the step image") from None
        if not InteractiveShell.initialized():
            from traitlets.config import Config

            config = Config()
            config.HistoryManager.enabled = False
            InteractiveShell.instance(config=config, user_module=module, user_ns=module.__dict__)
        return InteractiveShell.instance()

    return get_ipython


class Step:
    """One pipeline step: a namespace, the cells that run in it, and its inputs and outputs."""

    def __init__(self, name: str):
        self.name = name
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        self.module.__dict__["get_ipython"] = _get_ipython_factory(self.module)
        self._saved_main: Any = None
        self._started = 0.0

    @property
    def namespace(self) -> dict[str, Any]:
        """The step's global namespace."""
        return self.module.__dict__

    def __enter__(self) -> Step:
        self._saved_main = sys.modules.get("__main__")
        sys.modules["__main__"] = self.module
        self._started = time.perf_counter()
        print(f"[nbconvert-kfp] step {self.name!r} started", flush=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._saved_main is not None:
            sys.modules["__main__"] = self._saved_main
        elapsed = time.perf_counter() - self._started
        state = "failed" if exc is not None else "finished"
        print(f"[nbconvert-kfp] step {self.name!r} {state} in {elapsed:.2f}s", flush=True)

    def define(self, values: dict[str, Any]) -> None:
        """Bind pipeline parameters in the namespace."""
        self.namespace.update(values)

    def run(self, cells: Iterable[tuple[int | str, str]]) -> None:
        """Run ``(cell index or label, source)`` pairs in order, as notebook cells."""
        for label, source in cells:
            if source.startswith(LEADING_NEWLINE):
                source = source[len(LEADING_NEWLINE):]
            filename = f"<cell {label}>" if isinstance(label, int) else f"<{label}>"
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            code = compile(source, filename, "exec")
            try:
                exec(code, self.namespace)
            except BaseException as err:
                if hasattr(err, "add_note"):
                    where = f"notebook cell {label}" if isinstance(label, int) else label
                    err.add_note(f"(in {where} of step {self.name!r})")
                raise

    def load(self, artifacts: dict[str, Any]) -> None:
        """Load each variable from its input artifact into the namespace."""
        for name, artifact in artifacts.items():
            self.namespace[name] = marshal.resource_load(artifact.path)

    def save(self, artifacts: dict[str, Any]) -> None:
        """Save each variable of the namespace to its output artifact."""
        for name, artifact in artifacts.items():
            if name not in self.namespace:
                raise marshal.MarshalError(
                    f"step {self.name!r} did not define {name!r}, which a later step reads")
            value = self.namespace[name]
            try:
                written = marshal.resource_save(value, artifact.path)
            except Exception as err:
                raise marshal.MarshalError(
                    f"step {self.name!r} cannot save variable {name!r} of type "
                    f"{type(value).__module__}.{type(value).__qualname__}: {err}") from err
            artifact.metadata["format"] = marshal.format_of(written)
            artifact.metadata["python_type"] = f"{type(value).__module__}.{type(value).__qualname__}"
            artifact.metadata["variable"] = name

    def log_metrics(self, artifact: Any, names: Iterable[str]) -> None:
        """Log each numeric variable as a KFP metric."""
        for name in names:
            value = self.namespace.get(name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                print(f"[nbconvert-kfp] metric {name!r} is not a number ({type(value).__name__}); "
                      "not logged", file=sys.stderr, flush=True)
                continue
            if not math.isfinite(number):
                print(f"[nbconvert-kfp] metric {name!r} is {number}; not logged", file=sys.stderr)
                continue
            artifact.log_metric(name, number)
            print(f"[nbconvert-kfp] metric {name} = {number:g}", flush=True)
