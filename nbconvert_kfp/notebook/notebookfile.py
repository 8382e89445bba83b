"""Notebook file: the text of an .ipynb read into a v4 notebook, with one-line errors for what nbformat rejects.

``jupyter nbconvert`` reads the notebook with nbformat before any exporter code runs, and nbformat
answers a broken file with a traceback. The exporter reads the file itself through this module:
harmless problems are repaired with a warning (a cell's ``tags`` given as one string, missing
``metadata``), anything else is a one-line error naming the cell.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from typing import Any

import nbformat
from nbformat.validator import ValidationError

from ..errors import NotebookError

#: What nbformat allows as a cell id.
_CELL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
#: The cell types of a v4 notebook.
CELL_TYPES = ("code", "markdown", "raw")


def _decode(data: bytes | str) -> str:
    """The file's text; bytes that are not UTF-8 are an error naming their offset."""
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise NotebookError(f"the notebook file is not UTF-8 text: byte 0x{data[err.start]:02x} at offset "
                            f"{err.start} cannot be decoded", None, "encoding") from None


def _parse(text: str) -> dict[str, Any]:
    """The notebook's JSON object."""
    try:
        content = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookError(f"the notebook file is not valid JSON: {err.msg} at line {err.lineno}, column "
                            f"{err.colno}", None, "json") from None
    except RecursionError:
        raise NotebookError("the notebook file's JSON is nested too deeply to read", None, "json") from None
    if not isinstance(content, dict):
        raise NotebookError(f"the notebook file holds a JSON {type(content).__name__}, not a notebook object",
                            None, "json")
    return content


def _repair_cell(cell: Any, index: int, log: logging.Logger) -> None:
    """Repair a v4 cell's harmless problems in place; raise for the others."""
    where = f"cell {index + 1}"
    if not isinstance(cell, dict):
        raise NotebookError(f"the cell is a JSON {type(cell).__name__}, not an object", index, "cell")
    kind = cell.get("cell_type")
    if kind not in CELL_TYPES:
        found = "has no 'cell_type'" if kind is None else f"has the cell_type {kind!r}"
        raise NotebookError(f"the cell {found}; a notebook cell is 'code', 'markdown' or 'raw'", index,
                            "cell_type")
    source = cell.get("source")
    if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))):
        found = "has no 'source'" if source is None else f"has a {type(source).__name__} as its 'source'"
        raise NotebookError(f"the cell {found}; a cell's source is text", index, "source")
    metadata = cell.get("metadata")
    if not isinstance(metadata, dict):
        log.warning("%s: the cell has no metadata object; read as empty", where)
        metadata = cell["metadata"] = {}
    tags = metadata.get("tags")
    if isinstance(tags, str):
        log.warning("%s: the cell's tags are one string, not a list; read as the tag %r", where, tags)
        metadata["tags"] = tags = [tags]
    elif tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
        raise NotebookError("the cell's 'tags' must be a list of strings", index, "tags")
    if isinstance(tags, list) and "" in tags:
        log.warning("%s: the cell has an empty tag; ignored", where)
        metadata["tags"] = tags = [t for t in tags if t]
    if tags is not None and len(set(tags)) < len(tags):
        repeated = sorted({t for t in tags if tags.count(t) > 1})
        log.warning("%s: the tag%s %s appear%s more than once; read once", where, "s" if len(repeated) > 1 else "",
                    ", ".join(repr(t) for t in repeated), "" if len(repeated) > 1 else "s")
        metadata["tags"] = list(dict.fromkeys(tags))
    if kind == "code":
        # a pipeline does not use the notebook's outputs: broken ones do not stop the conversion
        cell["outputs"] = []
        if "execution_count" not in cell or not (cell["execution_count"] is None
                                                 or isinstance(cell["execution_count"], int)):
            cell["execution_count"] = None
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def _repair(content: dict[str, Any], log: logging.Logger) -> None:
    """Repair a v4 notebook's harmless problems in place; raise for the others."""
    if not isinstance(content.get("metadata"), dict):
        log.warning("the notebook has no metadata object; read as empty")
        content["metadata"] = {}
    cells = content.get("cells")
    if not isinstance(cells, list):
        raise NotebookError("the notebook has no list of 'cells'", None, "cells")
    minor = content.get("nbformat_minor")
    if isinstance(minor, int) and minor < 5 and any(isinstance(c, dict) and "id" in c for c in cells):
        # nbformat 5's new_code_cell gives cells ids whatever the notebook's version says; nbformat reads them
        log.warning("the notebook says nbformat 4.%d, but its cells carry ids (4.5): read as nbformat 4.5", minor)
        content["nbformat_minor"] = 5
    ids: set[str] = set()
    for index, cell in enumerate(cells):
        _repair_cell(cell, index, log)
        if "id" in cell:
            # Jupyter's cell ids do not matter to a pipeline: a missing, malformed or repeated one is replaced
            if not (isinstance(cell["id"], str) and _CELL_ID.match(cell["id"])) or cell["id"] in ids:
                cell["id"] = next(f"cell-{index + 1}{suffix}" for suffix in ("", *(f"-{n}" for n in range(2, 10**6)))
                                  if f"cell-{index + 1}{suffix}" not in ids)
            ids.add(cell["id"])


def _validation_error(err: Exception) -> NotebookError:
    """A one-line error for nbformat's schema error, naming the cell when the problem is in one."""
    path = list(getattr(err, "absolute_path", None) or getattr(err, "path", None) or [])
    message = str(getattr(err, "message", err)).splitlines()[0]
    if getattr(err, "validator", None) == "pattern" and "tags" in path and isinstance(err.instance, str):
        message = f"the tag {err.instance!r} holds a comma, which a notebook tag may not (Jupyter splits tags at commas)"
    if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
        inside = ".".join(str(p) for p in path[2:])
        return NotebookError(f"the cell is not a valid notebook cell{f' ({inside})' if inside else ''}: "
                             f"{message}", path[1], inside or "cell")
    inside = ".".join(str(p) for p in path)
    return NotebookError(f"the notebook is not valid{f' ({inside})' if inside else ''}: {message}", None,
                         inside or "notebook")


def checked_notebook(nb: Any, log: logging.Logger) -> nbformat.NotebookNode:
    """A copy of a notebook node with harmless problems repaired; one the exporter cannot take is a
    one-line ``NotebookError`` (nbconvert would fail with a traceback when it validates the notebook)."""
    nb = copy.deepcopy(nb)
    if not isinstance(nb, dict):
        raise NotebookError(f"the notebook is a {type(nb).__name__}, not a notebook", None, "notebook")
    if nb.get("nbformat") == 4:
        _repair(nb, log)
    try:
        nbformat.validate(nb)
    except ValidationError as err:
        raise _validation_error(err) from None
    return nbformat.from_dict(nb)


def read_notebook(data: bytes | str, log: logging.Logger) -> nbformat.NotebookNode:
    """Read a notebook file's content as a v4 notebook; a broken file is a one-line ``NotebookError``."""
    content = _parse(_decode(data))
    major = content.get("nbformat")
    if not isinstance(major, int):
        raise NotebookError("the notebook file has no 'nbformat' version: is it a Jupyter notebook?", None,
                            "nbformat")
    if major == 4:
        _repair(content, log)
    try:
        nb = nbformat.reader.reads(json.dumps(content))
        nb = nbformat.convert(nb, 4)
        nbformat.validate(nb)
    except ValidationError as err:
        raise _validation_error(err) from None
    except nbformat.NBFormatError as err:
        raise NotebookError(f"the notebook cannot be read: {str(err).splitlines()[0]}", None,
                            "nbformat") from None
    except (AttributeError, KeyError, TypeError) as err:
        raise NotebookError(f"the notebook (nbformat {major}) is missing what its format requires: {err}",
                            None, "nbformat") from None
    return nb
