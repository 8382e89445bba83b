"""A parsed cell: a code cell's syntax tree, made once and shared by every analysis.

Every cell the pipeline runs is parsed once. Its tree is the code as the analysis must
see it: IPython syntax translated, and the code that ``%time``/``%%capture`` run put in
place of the magic (see :mod:`nbconvert_kfp.notebook.ipython`). The statements of
several cells form one module for scope analysis (:func:`module`); a definition's
source is a slice of its cell's lines.

Python's cyclic garbage collector is paused while a notebook is parsed and analysed: the
trees hold millions of objects and no cycles, and each collection pass would walk them
all (parsing a 10 MB cell takes four times as long with it running).
"""

from __future__ import annotations

import ast
import contextlib
import gc
import threading
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import CellSourceError
from ..model import Cell
from ..notebook.ipython import analysis_source


#: Statements with statement blocks of their own that run at the same level (not functions or classes).
_BLOCKS = tuple(getattr(ast, name) for name in ("If", "For", "AsyncFor", "While", "With", "AsyncWith", "Try",
                                                 "TryStar", "Match") if hasattr(ast, name))


def top_level_statements(body: list[ast.stmt]):
    """Statements that run at module level, in order, including those inside compound statements."""
    for node in body:
        yield node
        if not isinstance(node, _BLOCKS):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from top_level_statements(getattr(node, name, None) or [])
        for handler in getattr(node, "handlers", None) or []:
            yield from top_level_statements(handler.body)
        for case in getattr(node, "cases", None) or []:
            yield from top_level_statements(case.body)


def record_import(node: ast.stmt, imports: dict[str, str]) -> None:
    """Add what an import statement binds to ``imports``: bound name -> qualified name it imports.

    ``import numpy as np`` binds ``np`` to ``numpy``; ``from sklearn.ensemble import
    RandomForestClassifier`` binds the class's name to ``sklearn.ensemble.RandomForestClassifier``;
    ``import os.path`` binds ``os`` to ``os``.
    """
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                imports[alias.asname] = alias.name
            else:
                top = alias.name.partition(".")[0]
                imports[top] = top
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        for alias in node.names:
            if alias.name != "*":
                imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"


def imported_modules(tree: ast.AST) -> set[str]:
    """The modules that code imports anywhere (inside functions too), as imported (``sklearn.ensemble``)."""
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


@dataclass
class ParsedCell:
    """One code cell, parsed: its tree, its lines and the names its top-level imports bind."""

    cell: Cell
    tree: ast.Module
    lines: list[str]
    #: names bound by the cell's top-level imports -> what they import
    imports: dict[str, str] = field(default_factory=dict)


def parse(cell: Cell) -> ParsedCell:
    """Parse a cell of the model; a syntax error names the cell and the line."""
    text = cell["source"]
    try:
        code = analysis_source(text)
        tree = ast.parse(code)
    except SyntaxError as err:
        line = f", line {err.lineno}" if err.lineno else ""
        inside = " (in the code a magic runs)" if "get_ipython" in text else ""
        raise CellSourceError(f"syntax error{line}{inside}: {err.msg}", cell["index"], err.msg) from None
    except (RecursionError, MemoryError):
        raise CellSourceError("the cell's code is too deeply nested or too large for Python's parser",
                              cell["index"], "source") from None
    for node in top_level_statements(tree.body):
        value = getattr(node, "value", None)
        if isinstance(node, ast.Return) or isinstance(value, (ast.Yield, ast.YieldFrom)):
            word = "return" if isinstance(node, ast.Return) else "yield"
            raise CellSourceError(f"line {node.lineno}: '{word}' outside a function: a notebook cell cannot "
                                  f"{word} (Jupyter rejects it too)", cell["index"], word)
    imports: dict[str, str] = {}
    if "import" in code:
        for node in top_level_statements(tree.body):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                record_import(node, imports)
    return ParsedCell(cell, tree, code.splitlines(), imports)


class Notebook:
    """The parsed cells of a notebook; each cell is parsed once, however many steps it is in."""

    def __init__(self) -> None:
        self._cells: dict[int, ParsedCell] = {}

    def parse(self, cell: Cell) -> ParsedCell:
        """The parsed cell (parsing it the first time)."""
        found = self._cells.get(cell["index"])
        if found is None:
            found = self._cells[cell["index"]] = parse(cell)
        return found


#: Analyses in progress in this process (threads of a server convert side by side), and the collector's
#: state before the first of them.
_PAUSES = {"depth": 0, "enabled": False}
_PAUSES_LOCK = threading.Lock()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (see the module's docstring) until the last analysis in
    progress ends; then it is as it was before the first."""
    with _PAUSES_LOCK:
        if not _PAUSES["depth"]:
            _PAUSES["enabled"] = gc.isenabled()
            gc.disable()
        _PAUSES["depth"] += 1
    try:
        yield
    finally:
        with _PAUSES_LOCK:
            _PAUSES["depth"] -= 1
            if not _PAUSES["depth"] and _PAUSES["enabled"]:
                gc.enable()


def module(cells: list[ParsedCell]) -> ast.Module:
    """One module made of the statements of several cells, in order (their trees are shared, not copied)."""
    return ast.Module(body=[statement for parsed in cells for statement in parsed.tree.body], type_ignores=[])
