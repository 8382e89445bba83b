"""A pipeline parameter's value: read from text as its type, and checked for a compiled KFP pipeline.

Every front end reads and checks values here: the generated script's ``-p``, the ``nbconvert-kfp``
command's ``-p`` and ``-f`` and the Jupyter server API's ``parameters``. :func:`parse_value` reads text as
a parameter type and refuses what KFP would change (an int beyond 2**53, a whole number inside a list or
dict); :func:`compiled_value` says whether a value can go into a compiled KFP pipeline (besides that, every
number, at any depth of a list or dict, finite). A local run takes non-finite numbers. Standard library only.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: The largest whole number a KFP parameter carries exactly (KFP keeps numbers as doubles).
EXACT_INT = 2 ** 53

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def type_name(kind: type | str) -> str:
    """A parameter type's name (``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, ``literal``)."""
    return kind if isinstance(kind, str) else kind.__name__


def literal_text(value: Any) -> str:
    """A Python literal that reads back as ``value`` (non-finite floats as ``float('nan')`` and so on)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, (list, tuple, set)):
        items = [literal_text(item) for item in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        if isinstance(value, tuple):
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return "{" + ", ".join(items) + "}" if items else "set()"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal_text(k)}: {literal_text(v)}" for k, v in value.items()) + "}"
    return repr(value)


def papermill_value(text: str) -> Any:
    """A command-line value typed as papermill types ``-p`` values: a Python literal when the text is one
    (``3``, ``0.5``, ``True``, ``None``, ``[1, 2]``, ``(1, 'a')``), a float for ``nan`` and ``inf``, else
    the string itself."""
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return float(text) if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity") else text
    except ValueError:
        return text


def _whole_numbers(value: Any) -> list[int]:
    """The ints (not bools) inside a list or dict value, at any depth."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [number for item in items for number in _whole_numbers(item)]


def exact_value(name: str, value: Any) -> Any:
    """``value``, a value of a parameter of type ``name``, when KFP carries it exactly; else ``ValueError``: an int
    beyond 2**53 would be rounded, and whole numbers inside a list or dict would arrive as floats."""
    if name == "int" and isinstance(value, int) and abs(value) > EXACT_INT:
        raise ValueError(f"{value} is beyond 2**53, the largest whole number a KFP parameter carries exactly")
    if name in ("list", "dict"):
        numbers = _whole_numbers(value)
        if numbers:
            raise ValueError(f"KFP turns the whole number {numbers[0]} inside a {name} parameter into "
                             f"{float(numbers[0])}: write it as {float(numbers[0])}, or give the notebook's default "
                             "a whole number so that the parameter is carried as its Python literal")
    return value


def parse_value(kind: type | str, text: str) -> Any:
    """Convert a command-line (or JSON string) value to a parameter type (``int``, ``float``, ``str``,
    ``bool``, ``list``, ``dict``, given as a type or its name, or ``literal``: any Python literal, typed as
    papermill does, passed on as its literal text); raise ``ValueError`` when it does not fit."""
    name = type_name(kind)
    if name == "str":
        return text
    if name == "literal":
        return literal_text(papermill_value(text))
    if name == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if name in ("list", "dict"):
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"expected a JSON {name}, got {text!r}") from None
        if not isinstance(value, list if name == "list" else dict):
            raise ValueError(f"expected a JSON {name}, got {text!r}")
        return exact_value(name, value)
    if name == "int":
        try:
            number = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
        return exact_value(name, number)
    if name == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    raise ValueError(f"unknown parameter type {name!r}")


def non_finite(value: Any) -> float | None:
    """The first number in ``value``, or at any depth of its lists, tuples and dicts, that is not finite."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return item
        if isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return None


def compiled_value(kind: type | str, value: Any) -> Any:
    """``value``, a value of a parameter of type ``kind``, when a compiled KFP pipeline can hold it: KFP carries
    it exactly (:func:`exact_value`) and every number in it is finite; else ``ValueError`` saying why."""
    name = type_name(kind)
    exact_value(name, value)
    number = non_finite(value)
    if number is not None:
        where = "" if isinstance(value, float) else f" inside the {name}"
        raise ValueError(f"{number}{where} cannot go into a compiled KFP pipeline (finite numbers only)")
    return value
