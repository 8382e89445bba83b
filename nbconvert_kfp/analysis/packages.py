"""Packages: the distributions a step's imports need, pinned to the versions installed here."""

from __future__ import annotations

import sys
from functools import lru_cache
from importlib import metadata
from typing import Iterable

#: Modules the step image gets another way: kfp itself (see the component builder), and nbconvert-kfp's
#: runtime.
PROVIDED = frozenset({"kfp", "nbconvert_kfp", "__future__"})


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return {top: list(dict.fromkeys(names)) for top, names in metadata.packages_distributions().items()}


def is_standard_library(module: str) -> bool:
    """Tell whether a module (``os.path`` or ``os``) ships with Python."""
    top = module.partition(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names


@lru_cache(maxsize=256)
def _package_paths(distribution: str) -> frozenset[str]:
    """The package folders and module files a distribution installs, as ``google/cloud/storage``."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return frozenset()
    paths: set[str] = set()
    for file in files:
        parts = file.parts
        if parts and not parts[0].endswith((".dist-info", ".egg-info", ".data")) and parts[0] != "..":
            stem = parts[:-1] + ((parts[-1][:-3],) if parts[-1].endswith(".py") else ())
            paths.update("/".join(stem[:depth]) for depth in range(1, len(stem) + 1))
    return frozenset(paths)


@lru_cache(maxsize=1024)
def distribution_of(module: str) -> str | None:
    """The installed distribution that provides ``module`` (``sklearn.ensemble`` -> ``scikit-learn``).

    A namespace package (``google``) is shared by several distributions; the one that
    installs the deepest package of the import wins (``google.cloud.storage`` ->
    ``google-cloud-storage``, not ``googleapis-common-protos``).
    """
    parts = module.split(".")
    candidates = _distributions().get(parts[0])
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    for depth in range(len(parts), 1, -1):
        path = "/".join(parts[:depth])
        owners = [name for name in candidates if path in _package_paths(name)]
        if len(owners) == 1:
            return owners[0]
        if owners:
            candidates = owners
    return sorted(candidates, key=str.lower)[0]


def installed_version(distribution: str) -> str | None:
    """The version of an installed distribution, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1024)
def requirement(module: str) -> str | None:
    """``sklearn`` -> ``scikit-learn==1.9.1``; ``None`` for the standard library and unknown modules."""
    if is_standard_library(module) or module.partition(".")[0] in PROVIDED:
        return None
    name = distribution_of(module)
    if name is None:
        return None
    version = installed_version(name)
    return f"{name}=={version}" if version else name


def requirements(modules: Iterable[str]) -> tuple[list[str], list[str]]:
    """Pinned requirements for ``modules``, and the top-level modules no installed distribution provides."""
    pinned: dict[str, str] = {}
    unknown: list[str] = []
    for module in sorted(set(modules)):
        if is_standard_library(module) or module.partition(".")[0] in PROVIDED:
            continue
        found = requirement(module)
        if found is None:
            top = module.partition(".")[0]
            if top not in unknown:
                unknown.append(top)
        else:
            pinned.setdefault(found.partition("==")[0].lower(), found)
    return sorted(pinned.values(), key=str.lower), unknown
