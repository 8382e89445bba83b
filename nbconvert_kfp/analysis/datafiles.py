"""Data files: the files next to the notebook that its steps read by a path written in the code.

A step's code names a file by a string it can compute without running: a literal
(``pd.read_csv("data/train.csv")``), a name bound to one (``path = "data/"``), and what
``+``, f-strings, ``os.path.join``, ``Path(...)``, ``/`` and ``joinpath`` make of those
(``path + "test.csv"``). Each such string that names a file, a folder or (with ``*``, ``?``,
``[``) files matching a glob, relative to the notebook's folder and inside it, is an input of
the step, unless the pipeline writes that path itself first (``df.to_csv("out.csv")`` in the
same or an earlier step). A folder is an input only where the step names no file inside it.

The analysis reads syntax trees (:mod:`ast`), dispatching on node type; nothing runs.
"""

from __future__ import annotations

import ast
import hashlib
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .parsedcell import ParsedCell, top_level_statements
from .scope import FILE_WRITERS, PATH_WRITERS

#: Characters that make a string a glob pattern.
GLOB_CHARACTERS = frozenset("*?[")
#: Strings longer than this are not paths a notebook names.
LONGEST_PATH = 1024
#: A folder or glob holding more files than this is not shipped (say what to do instead).
MOST_FILES = 2000
#: Names never shipped from inside a folder: caches and hidden files.
SKIPPED_NAMES = frozenset({"__pycache__", ".ipynb_checkpoints"})
#: Calls that build a path from their arguments: ``os.path.join``, ``Path(...)`` and friends.
PATH_BUILDERS = frozenset({"join", "Path", "PurePath", "PosixPath", "PurePosixPath", "joinpath"})
#: Calls that pass a path through unchanged.
PATH_PASSERS = frozenset({"str", "fspath", "abspath", "normpath", "expanduser", "resolve"})


@dataclass
class PathUse:
    """The paths one block of code names: each string it can compute -> the first cell naming it, and the
    paths it writes -> the first cell writing it."""

    named: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)


def _join(parts: list[str]) -> str:
    return posixpath.join(*parts) if parts else ""


class _Evaluator:
    """Compute the string an expression stands for, where the code alone decides it."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def value(self, node: ast.AST | None) -> str | None:
        """The string ``node`` evaluates to, or None when it cannot be known without running the code."""
        handler = _VALUES.get(type(node))
        return handler(self, node) if handler is not None else None

    def _constant(self, node: ast.Constant) -> str | None:
        return node.value if isinstance(node.value, str) else None

    def _name(self, node: ast.Name) -> str | None:
        return self.names.get(node.id)

    def _binop(self, node: ast.BinOp) -> str | None:
        left, right = self.value(node.left), self.value(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Div):  # two strings cannot be divided: the left one is a Path
            return _join([left, right])
        return None

    def _joined(self, node: ast.JoinedStr) -> str | None:
        parts = []
        for part in node.values:
            if isinstance(part, ast.FormattedValue):
                if part.format_spec is not None or part.conversion not in (-1, ord("s")):
                    return None
                text = self.value(part.value)
            else:
                text = self.value(part)
            if text is None:
                return None
            parts.append(text)
        return "".join(parts)

    def _call(self, node: ast.Call) -> str | None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            return None
        if name in PATH_PASSERS and len(node.args) == 1:
            return self.value(node.args[0])
        if name not in PATH_BUILDERS:
            return None
        parts = [self.value(a) for a in node.args]
        if name == "joinpath" and isinstance(func, ast.Attribute):
            parts.insert(0, self.value(func.value))
        if name == "join" and isinstance(func, ast.Attribute) and _dotted(func.value) not in ("os.path", "posixpath"):
            return None  # str.join and friends
        if None in parts or (name != "join" and not parts):
            return None if None in parts else "."
        return _join(parts)  # type: ignore[arg-type]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


#: How each kind of expression node evaluates to a string.
_VALUES: dict[type, Callable[[_Evaluator, ast.AST], str | None]] = {
    ast.Constant: _Evaluator._constant,  # type: ignore[dict-item]
    ast.Name: _Evaluator._name,  # type: ignore[dict-item]
    ast.BinOp: _Evaluator._binop,  # type: ignore[dict-item]
    ast.JoinedStr: _Evaluator._joined,  # type: ignore[dict-item]
    ast.Call: _Evaluator._call,  # type: ignore[dict-item]
}


def _written_path(evaluate: _Evaluator, node: ast.Call) -> str | None:
    """The path a call writes, when it writes one the code names."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name == "open":
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
        text = evaluate.value(mode) if mode is not None else "r"
        return evaluate.value(node.args[0]) if node.args and text and set(text) & set("wax+") else None
    if name in FILE_WRITERS:
        position, keyword = FILE_WRITERS[name]
        found = [k.value for k in node.keywords if k.arg in (keyword, "path", "fname", "file")]
        target = found[0] if found else node.args[position] if len(node.args) > position else None
        return evaluate.value(target) if target is not None else None
    if name in PATH_WRITERS and isinstance(func, ast.Attribute):
        return evaluate.value(func.value)
    if name in ("mkdir", "makedirs"):
        target = func.value if name == "mkdir" and isinstance(func, ast.Attribute) and not node.args else (
            node.args[0] if node.args else None)
        return evaluate.value(target) if target is not None else None
    return None


def path_use(cells: Iterable[ParsedCell], names: dict[str, str]) -> PathUse:
    """The strings and written paths of ``cells``; ``names`` holds the names bound to strings so far (those of
    earlier code) and is updated with the bindings these cells make."""
    use = PathUse()
    evaluate = _Evaluator(names)
    for parsed in cells:
        index = parsed.cell["index"]
        for statement in top_level_statements(parsed.tree.body):
            if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
                targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                text = evaluate.value(statement.value)
                for target in targets:
                    if isinstance(target, ast.Name):
                        if text is None:
                            names.pop(target.id, None)
                        else:
                            names[target.id] = text
        for node in ast.walk(parsed.tree):
            if isinstance(node, ast.Call):
                written = _written_path(evaluate, node)
                if written:
                    use.written.setdefault(_normal(written) or written, index)
            if type(node) in _VALUES and not isinstance(node, ast.Name):
                text = evaluate.value(node)
                if text and len(text) <= LONGEST_PATH:
                    use.named.setdefault(text, index)
    return use


def _normal(text: str) -> str | None:
    """``text`` as a normalised relative path inside the notebook's folder, or None when it is not one."""
    if not text or len(text) > LONGEST_PATH or any(ord(c) < 32 for c in text) or "://" in text:
        return None
    text = text.replace("\\", "/") if os.sep == "\\" else text
    if text.startswith(("/", "~")) or (len(text) > 1 and text[1] == ":"):
        return None
    normal = posixpath.normpath(text)
    if normal in (".", "..") or normal.startswith("../"):
        return None
    return normal


@dataclass
class FoundData:
    """A path the code names that exists next to the notebook: its files (relative paths) and the first cell."""

    path: str
    files: list[str]
    cell: int
    kind: str  # "file", "folder" or "glob"
    too_many: bool = False


def _folder_files(folder: Path, relative: str) -> tuple[list[str], bool]:
    found: list[str] = []
    for root, directories, files in os.walk(folder / relative):
        directories[:] = sorted(d for d in directories if d not in SKIPPED_NAMES and not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and not os.path.islink(os.path.join(root, name)):
                found.append(Path(root, name).relative_to(folder).as_posix())
                if len(found) > MOST_FILES:
                    return found, True
    return found, False


def _inside(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def existing(folder: Path, use: PathUse, written_before: set[str], skip: set[str]) -> list[FoundData]:
    """The paths ``use`` names that exist in ``folder`` and are not written by the pipeline before (in
    ``written_before`` or by the same code), leaving out ``skip`` (files the pipeline carries already)."""
    found: list[FoundData] = []
    written = written_before | set(use.written)
    for text, cell in use.named.items():
        normal = _normal(text)
        if normal is None or normal in written or normal in skip:
            continue
        if GLOB_CHARACTERS & set(normal):
            try:
                matches = sorted(p for p in folder.glob(normal) if p.is_file() and _inside(folder, p))
            except (ValueError, OSError, NotImplementedError):
                continue
            files = [p.relative_to(folder).as_posix() for p in matches
                     if not any(part in SKIPPED_NAMES for part in p.relative_to(folder).parts)]
            files = [f for f in files if f not in written and f not in skip]
            if files:
                found.append(FoundData(normal, files[:MOST_FILES + 1], cell, "glob", len(files) > MOST_FILES))
            continue
        try:
            target = folder / normal
            is_file, is_dir = target.is_file(), target.is_dir()
        except (OSError, ValueError):
            continue
        if not (is_file or is_dir) or not _inside(folder, target):
            continue
        if is_file:
            found.append(FoundData(normal, [normal], cell, "file"))
        else:
            files, too_many = _folder_files(folder, normal)
            files = [f for f in files if f not in written and f not in skip]
            if files:
                found.append(FoundData(normal, files, cell, "folder", too_many))
    # a folder the code also names files in is only where those files are (path = "data/"; path + "x.csv")
    named_files = {f for item in found if item.kind == "file" for f in item.files}
    return [item for item in found
            if item.kind != "folder" or not any(f.startswith(item.path + "/") for f in named_files)]


def item_digest(files: dict[str, str]) -> str:
    """One digest for a set of files: their relative paths and the digests of their contents."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()
