"""Local modules: the ``.py`` files and packages next to the notebook that its code imports.

A notebook often imports a helper module of its own (``import helpers`` with ``helpers.py`` in
the notebook's folder). No package index has it, so the pipeline carries it: the files travel in
the code every step shares and are importable in every step, on a cluster as in a local run.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

from .packages import distribution_of, is_standard_library

#: The most source the pipeline carries for local modules, in bytes.
LIMIT = 2 * 1024 * 1024


def _files(top: str, directory: Path) -> dict[str, Path]:
    """Archive path -> file of the module or package ``top`` in ``directory``, or nothing."""
    module, package = directory / f"{top}.py", directory / top
    if module.is_file():
        return {f"{top}.py": module}
    if (package / "__init__.py").is_file():
        return {path.relative_to(directory).as_posix(): path for path in sorted(package.rglob("*.py"))
                if "__pycache__" not in path.parts}
    return {}


def _imports(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
    return names


def local_modules(modules: Iterable[str], directory: Path | None) -> tuple[dict[str, str], dict[str, set[str]]]:
    """The local modules ``modules`` name (and those they import in turn): archive path -> source, and
    module name -> the modules its files import (so the steps that use it install what it needs).

    A module counts as local when no installed distribution provides it, it is not part of the
    standard library, and ``directory`` holds it as ``name.py`` or a package ``name/``.
    """
    if directory is None or not directory.is_dir():
        return {}, {}
    found: dict[str, str] = {}
    imports: dict[str, set[str]] = {}
    pending = sorted({m.partition(".")[0] for m in modules})
    seen: set[str] = set()
    while pending:
        top = pending.pop()
        if top in seen or is_standard_library(top) or distribution_of(top) is not None:
            continue
        seen.add(top)
        for path, file in _files(top, directory).items():
            found[path] = file.read_text(encoding="utf-8")
            imports.setdefault(top, set()).update(_imports(found[path]))
            pending.extend(_imports(found[path]) - seen)
    return found, imports
