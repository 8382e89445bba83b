"""Pipeline metrics: the variable names listed in a ``pipeline-metrics`` cell."""

from __future__ import annotations

import ast
from typing import Callable

from ..errors import MetricError


def _is_print(value: ast.expr) -> bool:
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print"


def _names(statement: ast.stmt, cell_index: int, ignored: Callable[[str], None]) -> list[str]:
    if isinstance(statement, ast.Expr):
        value = statement.value
        if isinstance(value, ast.Name):
            return [value.id]
        if _is_print(value) and not value.keywords and all(isinstance(a, ast.Name) for a in value.args):
            return [a.id for a in value.args]
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return []
        if _is_print(value) and all(isinstance(a, ast.Constant) for a in value.args) and all(
                isinstance(k.value, ast.Constant) for k in value.keywords):
            ignored(ast.unparse(statement))
            return []
    text = ast.unparse(statement).splitlines()[0]
    raise MetricError(
        f"pipeline-metrics cells list variables as 'print(name)' or 'name' lines; found {text!r}",
        cell_index, text)


def _tree(source: str, cell_index: int) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as err:
        raise MetricError(f"syntax error in pipeline-metrics cell, line {err.lineno}: {err.msg}",
                          cell_index, "pipeline-metrics") from None


def split_metrics(source: str, cell_index: int,
                  ignored: Callable[[str], None] = lambda line: None) -> tuple[list[str], bool]:
    """The variable names a pipeline-metrics cell lists, and whether it also holds other code (Kale's current
    examples compute their summary in that cell). A print of constants names no metric: in a cell of names
    only it is passed to ``ignored``."""
    names: list[str] = []
    skipped: list[str] = []
    code = False
    for statement in _tree(source, cell_index).body:
        try:
            found = _names(statement, cell_index, skipped.append)
        except MetricError:
            code = True
            continue
        names.extend(n for n in found if n not in names)
    if not code:
        for line in skipped:
            ignored(line)
    return names, code


def parse_metrics(source: str, cell_index: int,
                  ignored: Callable[[str], None] = lambda line: None) -> list[str]:
    """Return the variable names listed in a pipeline-metrics cell, in order; other code is a ``MetricError``.

    A print of constants names no metric; it is passed to ``ignored`` and left out.
    """
    names: list[str] = []
    for statement in _tree(source, cell_index).body:
        names.extend(n for n in _names(statement, cell_index, ignored) if n not in names)
    return names
