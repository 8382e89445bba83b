"""Packages: the distributions a step's imports need, pinned to the versions installed here."""

from __future__ import annotations

import ast
import sys
from functools import lru_cache
from importlib import metadata
from typing import Iterable

#: Modules the step image gets another way: kfp itself, and nbconvert-kfp's embedded runtime.
PROVIDED = frozenset({"kfp", "nbconvert_kfp", "__future__"})


def imported_modules(sources: Iterable[str]) -> set[str]:
    """Top-level names of the modules that code imports anywhere (functions included)."""
    modules: set[str] = set()
    for source in sources:
        if "import" not in source:
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.partition(".")[0])
    return modules


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def is_standard_library(module: str) -> bool:
    """Tell whether a top-level module ships with Python."""
    return module in sys.stdlib_module_names or module in sys.builtin_module_names


@lru_cache(maxsize=1024)
def requirement(module: str) -> str | None:
    """``sklearn`` -> ``scikit-learn==1.9.1``; ``None`` for the standard library and unknown modules."""
    if is_standard_library(module) or module in PROVIDED:
        return None
    distributions = _distributions().get(module)
    if not distributions:
        return None
    name = distributions[0]
    try:
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return name


def requirements(modules: Iterable[str]) -> tuple[list[str], list[str]]:
    """Pinned requirements for ``modules``, and the modules no installed distribution provides."""
    pinned: dict[str, str] = {}
    unknown: list[str] = []
    for module in sorted(set(modules)):
        if is_standard_library(module) or module in PROVIDED:
            continue
        found = requirement(module)
        if found is None:
            unknown.append(module)
        else:
            pinned.setdefault(found.partition("==")[0].lower(), found)
    return sorted(pinned.values(), key=str.lower), unknown
