"""Pipeline parameters: typed literals read from a ``parameters`` cell."""

from __future__ import annotations

import ast
from typing import Any

from ..errors import ParameterError

#: Python type of a literal -> the annotation used in the generated pipeline.
PARAMETER_TYPES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str",
                                    list: "list", dict: "dict"}


def _parameter_type(name: str, value: Any, cell_index: int) -> str:
    # bool before int: True is an int too
    for python_type, annotation in PARAMETER_TYPES.items():
        if type(value) is python_type:
            return annotation
    raise ParameterError(
        f"parameter {name!r} is {value!r} ({type(value).__name__}); a pipeline parameter "
        "must be an int, float, str, bool, list or dict literal",
        cell_index, name,
    )


def _literal(name: str, node: ast.expr, cell_index: int) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ParameterError(
            f"parameter {name!r} is not a literal ({ast.unparse(node)!r}); parameters cells "
            "may only assign literals such as 3, 0.5, 'text', True, [1, 2] or {'a': 1}",
            cell_index, name,
        ) from None
    return list(value) if isinstance(value, tuple) else value


def _assignments(statement: ast.stmt, cell_index: int):
    if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
        if statement.value is None:
            raise ParameterError(f"parameter {statement.target.id!r} has no value",
                                 cell_index, statement.target.id)
        yield statement.target.id, statement.value
        return
    if isinstance(statement, ast.Assign):
        for target in statement.targets:
            if isinstance(target, ast.Name):
                yield target.id, statement.value
            elif (isinstance(target, (ast.Tuple, ast.List)) and isinstance(statement.value, (ast.Tuple, ast.List))
                  and len(target.elts) == len(statement.value.elts)
                  and all(isinstance(t, ast.Name) for t in target.elts)):
                yield from ((t.id, v) for t, v in zip(target.elts, statement.value.elts))
            else:
                raise ParameterError(
                    f"cannot read a parameter from {ast.unparse(statement)!r}; assign each "
                    "parameter to a plain name", cell_index, ast.unparse(target))
        return
    if isinstance(statement, ast.Pass) or (
        isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    ):
        return
    raise ParameterError(
        f"parameters cells may only assign literals; found {ast.unparse(statement)!r}",
        cell_index, ast.unparse(statement).splitlines()[0])


def parse_parameters(source: str, cell_index: int) -> list[dict[str, Any]]:
    """Read ``NAME = literal`` lines into parameter records (name, type, default, cell)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ParameterError(f"syntax error in parameters cell, line {err.lineno}: {err.msg}",
                             cell_index, "parameters") from None
    parameters = []
    for statement in tree.body:
        for name, node in _assignments(statement, cell_index):
            value = _literal(name, node, cell_index)
            parameters.append({"name": name, "type": _parameter_type(name, value, cell_index),
                               "default": value, "cell": cell_index})
    return parameters
