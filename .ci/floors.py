"""Print pip constraints pinning each [project] dependency of pyproject.toml to its declared floor.

Usage: python .ci/floors.py [path/to/pyproject.toml] > constraints.txt
The floors live only in pyproject.toml; `make test-floors` installs against this output.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

#: A requirement: name, optional [extras], version specifiers, optional "; marker".
REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?P<specs>[^;]*?)\s*(?:;\s*(?P<marker>.+))?$"
)
#: Specifiers whose version is the lowest one allowed.
FLOOR_OPERATORS = (">=", "~=", "==")


def floor(requirement: str) -> str:
    """The constraint line ``name==floor`` for one PEP 508 requirement string."""
    match = REQUIREMENT.match(requirement)
    if not match:
        raise ValueError(f"cannot parse the requirement {requirement!r}")
    versions = []
    for spec in filter(None, (s.strip() for s in match["specs"].split(","))):
        operator = spec[:2]
        if operator in FLOOR_OPERATORS and not spec.startswith("==="):
            versions.append(spec[2:].strip())
    if len(versions) != 1 or "*" in versions[0]:
        raise ValueError(f"{requirement!r} must declare exactly one floor (>=, ~= or ==)")
    line = f"{match['name']}=={versions[0]}"
    return f"{line}; {match['marker']}" if match["marker"] else line


def constraints(pyproject: Path) -> list[str]:
    """One ``name==floor`` line per dependency in ``[project] dependencies``."""
    with pyproject.open("rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    return [floor(requirement) for requirement in dependencies]


def main(argv: list[str]) -> int:
    """Print the constraints for the pyproject.toml given (default: the repository's)."""
    pyproject = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        lines = constraints(pyproject)
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as error:
        print(f"floors.py: {pyproject}: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
