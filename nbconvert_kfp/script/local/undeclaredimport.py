"""Undeclared imports: the modules a step of a local run imported that its cluster installs lack.

A local run is the ground truth of what a step needs: the step runtime notes the top-level modules
first imported while the step ran, and by whom (``df.plot()`` makes pandas import matplotlib; see
``nbconvert_kfp.runtime.step.ImportRecorder``). Here each is mapped to the distribution that provides
it in this environment, and the ones that neither the step's install list nor the dependencies of what
it installs bring are reported, with the ``package:`` tag that adds them. Uses the standard library only.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Iterable, Mapping

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class UndeclaredImport:
    """A module a step imported whose distribution its cluster installs lack."""

    step: str
    module: str
    importer: str
    distribution: str
    version: str | None

    @property
    def tag(self) -> str:
        """The ``package:`` tag that installs it (pinned to the version here)."""
        return f"package:{self.distribution}" + (f"=={self.version.partition('+')[0]}" if self.version else "")

    def line(self) -> str:
        """One line saying what is missing and how to add it."""
        by = "the step's code" if self.importer in ("__main__", "") else self.importer
        return (f"step {self.step!r} imported {self.module} (distribution {self.distribution}, through {by}), which "
                f"its cluster installs lack: tag a cell of the step '{self.tag}'")


def canonical(name: str) -> str:
    """A distribution name as indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str | None:
    match = _NAME.match(requirement)
    return canonical(match.group(1)) if match else None


@lru_cache(maxsize=1)
def _providers() -> dict[str, list[str]]:
    return metadata.packages_distributions()


@lru_cache(maxsize=512)
def _dependencies(distribution: str) -> tuple[str, ...]:
    """The distributions a distribution requires (not those of its extras), by canonical name."""
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return ()
    names = []
    for requirement in requires:
        marker = requirement.partition(";")[2]
        if "extra" in marker:
            continue
        name = _requirement_name(requirement)
        if name:
            names.append(name)
    return tuple(names)


def closure(requirements: Iterable[str]) -> set[str]:
    """The distributions that installing ``requirements`` brings, dependencies included (canonical names)."""
    found: set[str] = set()
    pending = [name for name in map(_requirement_name, requirements) if name]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(_dependencies(name))
    return found


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def undeclared(step: str, imported: Mapping[str, str], installs: Iterable[str]) -> list[UndeclaredImport]:
    """Of the modules ``imported`` by a step (module -> importer), those whose distribution its ``installs``
    (its cluster install list) do not bring; modules no distribution provides (the notebook's own) are left out."""
    brought = closure(installs)
    found: dict[str, UndeclaredImport] = {}
    for module in sorted(imported):
        if module in sys.stdlib_module_names or module in ("kfp", "nbconvert_kfp"):
            continue
        distributions = _providers().get(module) or []
        if not distributions or any(canonical(d) in brought for d in distributions):
            continue
        distribution = sorted(distributions, key=str.lower)[0]
        if canonical(distribution) not in found:
            found[canonical(distribution)] = UndeclaredImport(step, module, str(imported[module]), distribution,
                                                              _version(distribution))
    return list(found.values())
