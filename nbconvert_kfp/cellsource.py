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


def analysis_source(python: str) -> str:
    """Return code to analyse: the cell plus the code that its magics run.

    ``%time x = f()`` binds ``x`` at run time; the analysis must see that, so the
    code argument of code-running magics is appended as plain statements, and the
    variable that ``%%capture name`` creates is bound.
    """
    if "get_ipython" not in python:
        return python
    try:
        tree = ast.parse(python)
    except SyntaxError:
        return python
    extra: list[str] = []
    for node in ast.walk(tree):
        match = _magic_call(node)
        if match is None:
            continue
        method, args = match
        strings = _constant_strings(args)
        if strings is None:
            continue
        if method == "run_line_magic" and len(strings) == 2 and strings[0] in _CODE_LINE_MAGICS:
            extra.append(strings[1])
        elif method == "run_cell_magic" and len(strings) == 3 and strings[0] in _CODE_CELL_MAGICS:
            extra.append(strings[2])
            name = strings[1].split()[0] if strings[0] == "capture" and strings[1].split() else ""
            if name.isidentifier():
                extra.append(f"{name} = None")
    return "\n".join([python, *extra]) if extra else python
