"""Pipeline parameters: the literal assignments of a parameters cell, carried to the steps exactly.

Two conventions:

- Kale's ``pipeline-parameters`` cell holds assignments of literals (``LR = 0.1``) and statements
  that bind no name (``print("...")``, comments, ``assert``): those run as a papermill cell's code does
  (below). Any other statement, a non-literal assignment above all (``LR = 1 / 10``), is an error
  naming the cell and the statement.
- papermill's ``parameters`` cell is an ordinary cell: papermill runs all of it and injects the
  overrides after it. Its literal assignments (annotated or not, ``None`` included) become
  parameters; when it holds other statements too (``import os``, ``print(...)``), the whole cell
  runs at the start of every step, and the parameter values are set again after it.

A value travels as a KFP parameter of its own type when KFP carries it exactly: a bool, an int
of at most 2**53, a finite float, a string, or a list or dict of strings, bools, finite floats
and such lists and dicts, with string keys. Anything else a literal can be (``None``,
a tuple, a big int, ``nan``, a list holding ints (which KFP would turn into floats) or ``None`` (which kfp
cannot compile), a dict with
int keys) travels as a string parameter holding the value's Python literal, which the step reads
back exactly (``Step.literal``); such parameters have the type ``literal``.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from ..errors import ParameterError
from ..model import Parameter
from ..script.parametervalue import EXACT_INT

#: Python type of a value KFP carries exactly -> the annotation in the generated pipeline.
NATIVE_TYPES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}
#: The type of a parameter carried as a Python literal in a string.
LITERAL = "literal"
#: The deepest list/dict nesting a KFP parameter is trusted with.
MAX_DEPTH = 32


def _json_exact(value: Any, depth: int = 0) -> bool:
    """Whether a value inside a list or dict survives KFP's JSON (numbers become doubles there)."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, (bool, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if type(value) is list:
        return all(_json_exact(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(key) is str and _json_exact(item, depth + 1) for key, item in value.items())
    return False


def kfp_type(value: Any) -> str:
    """The type a parameter of this value has: a native KFP type, or ``literal``."""
    kind = type(value)
    if kind is bool or kind is str:
        return NATIVE_TYPES[kind]
    if kind is int:
        return "int" if abs(value) <= EXACT_INT else LITERAL
    if kind is float:
        return "float" if math.isfinite(value) else LITERAL
    if kind in (list, dict) and _json_exact(value):
        return NATIVE_TYPES[kind]
    return LITERAL


def _literal(name: str, node: ast.expr, cell_index: int) -> tuple[bool, Any]:
    """``(True, value)`` when ``node`` is a literal (``float('nan')`` included), else ``(False, None)``."""
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float"
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        try:
            return True, float(node.args[0].value)
        except ValueError:
            pass
    return False, None


def _assignments(statement: ast.stmt) -> list[tuple[str, ast.expr]] | None:
    """The ``(name, value)`` pairs a statement assigns, or None when it is not a plain assignment."""
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        return [(statement.target.id, statement.value)] if statement.value is not None else None
    if not isinstance(statement, ast.Assign):
        return None
    pairs: list[tuple[str, ast.expr]] = []
    for target in statement.targets:
        if isinstance(target, ast.Name):
            pairs.append((target.id, statement.value))
        elif (isinstance(target, (ast.Tuple, ast.List)) and isinstance(statement.value, (ast.Tuple, ast.List))
              and len(target.elts) == len(statement.value.elts) and all(isinstance(t, ast.Name) for t in target.elts)):
            pairs.extend((t.id, v) for t, v in zip(target.elts, statement.value.elts))
        else:
            return None
    return pairs


#: Statements a ``pipeline-parameters`` cell may hold besides its literal assignments: they bind no name.
_NON_BINDING = (ast.Expr, ast.Pass, ast.Assert)


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Pass) or (
        isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str))


def _binds(statement: ast.stmt) -> bool:
    """Whether an expression statement binds a name after all (``print(x := 3)``)."""
    return any(isinstance(node, ast.NamedExpr) for node in ast.walk(statement))


def parse_parameters(source: str, cell_index: int, strict: bool = True) -> tuple[list[Parameter], list[str]]:
    """Read a parameters cell: its parameters, and the first line of each other statement, which must run too.

    ``strict`` (Kale's ``pipeline-parameters``): besides assignments of literals, only statements
    that bind no name (``print(...)``) are allowed. Otherwise (papermill's ``parameters``) every
    other statement is code.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ParameterError(f"syntax error in parameters cell, line {err.lineno}: {err.msg}",
                             cell_index, "parameters") from None
    parameters: list[Parameter] = []
    code: list[str] = []
    for statement in tree.body:
        pairs = _assignments(statement)
        values = [(name, *_literal(name, node, cell_index)) for name, node in pairs or []]
        if pairs and all(ok for _, ok, _ in values):
            for name, _, value in values:
                parameters.append({"name": name, "type": kfp_type(value), "default": value, "cell": cell_index})
            continue
        if _is_docstring(statement):
            continue
        if strict and not (isinstance(statement, _NON_BINDING) and not _binds(statement)):
            text = ast.unparse(statement)
            if pairs:
                name, node = next((n, v) for (n, v), (_, ok, _) in zip(pairs, values) if not ok)
                raise ParameterError(
                    f"parameter {name!r} is not a literal ({ast.unparse(node)!r}); pipeline-parameters cells "
                    "may only assign literals such as 3, 0.5, 'text', True, None, [1, 2] or {'a': 1} (a papermill "
                    "'parameters' cell may hold other code)", cell_index, name)
            raise ParameterError(
                f"pipeline-parameters cells may only assign literals; found {text.splitlines()[0]!r}, and their "
                "other statements must bind no name, as print(...) does (a papermill 'parameters' cell may hold "
                "other code)", cell_index, text.splitlines()[0])
        code.append(ast.unparse(statement).splitlines()[0])
    return parameters, code
