"""Cell source: a code cell's text as plain Python, with IPython syntax translated."""

from __future__ import annotations

import ast
import re
from functools import lru_cache

_IPYTHON_SYNTAX = re.compile(r"^\s*(%|!)|=\s*!|\?\s*$", re.MULTILINE)

#: Magics whose argument is Python code run in the user namespace.
_CODE_LINE_MAGICS = {"time", "timeit", "prun"}
_CODE_CELL_MAGICS = {"time", "timeit", "prun", "capture"}


@lru_cache(maxsize=1)
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def has_ipython_syntax(source: str) -> bool:
    """Tell whether the source may hold ``%magic``, ``!shell`` or ``?`` help lines."""
    return bool(_IPYTHON_SYNTAX.search(source))


def python_source(source: str) -> str:
    """Translate IPython syntax into the ``get_ipython()`` calls IPython itself runs."""
    if not has_ipython_syntax(source):
        return source
    return _transformer().transform_cell(source)


def _magic_call(node: ast.AST) -> tuple[str, list[ast.expr]] | None:
    """Match ``get_ipython().<method>(...)`` and return the method and its arguments."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    target = node.func.value
    if (
        isinstance(target, ast.Call)
        and isinstance(target.func, ast.Name)
        and target.func.id == "get_ipython"
    ):
        return node.func.attr, node.args
    return None


def _constant_strings(args: list[ast.expr]) -> list[str] | None:
    values = [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return values if len(values) == len(args) else None


def _replacement(node: ast.stmt) -> str | None:
    """The code a magic statement runs, or ``None`` when it is not a code-running magic."""
    call = node.value if isinstance(node, (ast.Expr, ast.Assign)) else None
    match = _magic_call(call) if call is not None else None
    strings = _constant_strings(match[1]) if match else None
    if match is None or strings is None:
        return None
    method = match[0]
    # IPython runs the magic's code as a cell: its own magics, stacked ones included (``%%capture`` over
    # ``%%sh``), are IPython syntax too
    if method == "run_line_magic" and len(strings) == 2 and strings[0] in _CODE_LINE_MAGICS:
        return analysis_source(python_source(strings[1]))
    if method == "run_cell_magic" and len(strings) == 3 and strings[0] in _CODE_CELL_MAGICS:
        words = strings[1].split()
        binding = f"\n{words[0]} = None" if strings[0] == "capture" and words and words[0].isidentifier() else ""
        return analysis_source(python_source(strings[2])).rstrip("\n") + binding
    return None


def analysis_source(python: str) -> str:
    """Return code to analyse: the cell with each code-running magic replaced by its code.

    ``%time x = f()`` binds ``x`` at run time and ``%%capture out`` binds ``out``;
    the analysis must see those bindings where they happen.
    """
    if "get_ipython" not in python:
        return python
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return python
    lines = python.splitlines()
    statements = [n for n in ast.walk(tree) if isinstance(n, (ast.Expr, ast.Assign))]
    for node in sorted(statements, key=lambda n: n.lineno, reverse=True):
        code = _replacement(node)
        if code is None:
            continue
        indent = " " * node.col_offset
        lines[node.lineno - 1:node.end_lineno] = [indent + line for line in code.splitlines() or ["pass"]]
    return "\n".join(lines) + "\n"
