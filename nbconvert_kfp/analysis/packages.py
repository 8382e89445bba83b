"""Packages: the distributions a step's imports need, pinned to the versions installed here.

A pin must be installable from a package index: a local version label (``torch 2.13.0+cpu``,
a build no public index serves) is dropped from it, and :func:`local_builds` says which pins
lost one, so the user can point the steps at the index the build came from.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from importlib import metadata
from typing import Iterable

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

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


@lru_cache(maxsize=1024)
def installed_version(distribution: str) -> str | None:
    """The version of an installed distribution, or None (read once: each reading parses its metadata)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def public_version(version: str) -> str:
    """The version without its local label: ``2.13.0+cpu`` -> ``2.13.0``."""
    return version.partition("+")[0]


def pin(distribution: str) -> str:
    """``distribution==<installed version>``, without a local version label; the bare name if not installed."""
    version = installed_version(distribution)
    return f"{distribution}=={public_version(version)}" if version else distribution


def local_builds(requirements: Iterable[str]) -> dict[str, str]:
    """Of the pins given, those whose installed version has a local label: name -> installed version."""
    found = {}
    for requirement_ in requirements:
        name = requirement_.partition("==")[0]
        version = installed_version(name)
        if version and "+" in version:
            found[name] = version
    return found


@lru_cache(maxsize=1024)
def module_requirement(module: str) -> str | None:
    """The pinned requirement of the distribution that provides a *module*: ``sklearn`` ->
    ``scikit-learn==1.9.1``; ``None`` for the standard library, provided and unknown modules.

    The argument is an import name, never a distribution name: ``module_requirement("ipython")``
    finds nothing (the module is ``IPython``). Ask :func:`distribution_requirement` for a
    distribution you know by name.
    """
    if is_standard_library(module) or module.partition(".")[0] in PROVIDED:
        return None
    name = distribution_of(module)
    return pin(name) if name is not None else None


def distribution_requirement(distribution: str) -> str:
    """The requirement of a *distribution* known by name (``ipython`` -> ``ipython==9.1.0``): pinned to
    the installed version, the bare name when it is not installed here; never nothing."""
    if not distribution or not _DISTRIBUTION_NAME.fullmatch(distribution):
        raise ValueError(f"{distribution!r} is not a distribution name")
    return pin(distribution)


def canonical_name(distribution: str) -> str:
    """A distribution's name as indexes compare them (PEP 503): ``Huggingface_Hub`` -> ``huggingface-hub``."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def is_installed(distribution: str) -> bool:
    """Tell whether a distribution (by name) is installed here."""
    return installed_version(distribution) is not None


#: A distribution name as PEP 508 spells one.
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_IMAGE_PYTHON = re.compile(r"(?:^|/)python:(\d+)\.(\d+)")


def image_python(image: str) -> str | None:
    """The Python version of an official-style ``python:X.Y...`` image reference, or None."""
    match = _IMAGE_PYTHON.search(image)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def unsupported_on(python: str, requirements: Iterable[str]) -> list[str]:
    """The pins whose installed distribution declares a ``Requires-Python`` that ``python`` (``3.9``) fails."""
    failing = []
    for requirement_ in requirements:
        name = requirement_.partition("==")[0]
        try:
            declared = metadata.metadata(name).get("Requires-Python")
        except metadata.PackageNotFoundError:
            continue
        try:
            if declared and not SpecifierSet(declared).contains(Version(f"{python}.0"), prereleases=True):
                failing.append(f"{requirement_} (requires Python {declared})")
        except (InvalidSpecifier, InvalidVersion):
            continue
    return failing


def requirements(modules: Iterable[str]) -> tuple[list[str], list[str]]:
    """Pinned requirements for ``modules``, and the top-level modules no installed distribution provides."""
    pinned: dict[str, str] = {}
    unknown: list[str] = []
    for module in sorted(set(modules)):
        if is_standard_library(module) or module.partition(".")[0] in PROVIDED:
            continue
        found = module_requirement(module)
        if found is None:
            top = module.partition(".")[0]
            if top not in unknown:
                unknown.append(top)
        else:
            pinned.setdefault(found.partition("==")[0].lower(), found)
    return sorted(pinned.values(), key=str.lower), unknown
