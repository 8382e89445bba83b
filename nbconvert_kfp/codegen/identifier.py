"""Naming: turning user-written names into valid, collision-free identifiers."""

from __future__ import annotations

import keyword
import re
import unicodedata

_INVALID = re.compile(r"[^0-9A-Za-z_]+")
_KFP_INVALID = re.compile(r"[^a-z0-9-]+")


def ascii_identifier(text: str, fallback: str = "x") -> str:
    """Map any text to an ASCII Python identifier (``kid-1`` -> ``kid_1``)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    ident = _INVALID.sub("_", folded).strip("_") or fallback
    if ident[0].isdigit():
        ident = f"{fallback}_{ident}"
    if keyword.iskeyword(ident) or keyword.issoftkeyword(ident):
        ident += "_"
    return ident


def kfp_name(text: str, fallback: str = "pipeline") -> str:
    """Map any text to a KFP pipeline name matching ``^[a-z0-9][a-z0-9-]{0,127}$``."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    name = _KFP_INVALID.sub("-", folded.replace("_", "-")).strip("-")
    return (name or fallback)[:128].rstrip("-") or fallback


class Namer:
    """Hands out identifiers that never collide with each other or with reserved names."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()):
        self._taken = {name.lower() for name in reserved}

    def take(self, text: str, fallback: str = "x") -> str:
        """Return a fresh identifier derived from ``text``; case-insensitively unique."""
        base = ascii_identifier(text, fallback)
        candidate, counter = base, 2
        while candidate.lower() in self._taken:
            candidate = f"{base}_{counter}"
            counter += 1
        self._taken.add(candidate.lower())
        return candidate
