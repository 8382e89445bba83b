"""Naming: turning user-written names into valid, collision-free identifiers."""

from __future__ import annotations

import hashlib
import keyword
import re
import unicodedata

_INVALID = re.compile(r"[^0-9A-Za-z_]+")
_KFP_INVALID = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")
#: The longest KFP task name: KFP and Argo put it in pod labels and local output folders.
TASK_NAME_MAX = 63
#: Hex digits of the hash that ends an identifier cut to fit ``TASK_NAME_MAX``.
HASH_DIGITS = 8


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
    # as kfp's own maybe_rename_for_k8s: runs of dashes become one ('a__b' -> 'a-b')
    name = _DASHES.sub("-", _KFP_INVALID.sub("-", folded.replace("_", "-"))).strip("-")
    return (name or fallback)[:128].rstrip("-") or fallback


class Namer:
    """Hands out identifiers that never collide with each other or with reserved names."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()):
        self._taken = {name.lower() for name in reserved}
        self._tasks = {kfp_name(name, "x") for name in reserved}

    def take(self, text: str, fallback: str = "x") -> str:
        """Return a fresh identifier derived from ``text``; case-insensitively unique."""
        base = ascii_identifier(text, fallback)
        candidate, counter = base, 2
        while candidate.lower() in self._taken:
            candidate = f"{base}_{counter}"
            counter += 1
        self._taken.add(candidate.lower())
        self._tasks.add(kfp_name(candidate, "x"))
        return candidate

    def take_task(self, text: str, fallback: str = "x") -> str:
        """A fresh identifier for a KFP component: its task name (``kfp_name``) is unique too, and at most
        ``TASK_NAME_MAX`` characters (a longer name is cut and ends with a hash of the whole text)."""
        base = ascii_identifier(text, fallback)
        room = TASK_NAME_MAX - len("_999")
        if len(base) > room:
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_DIGITS]
            base = f"{base[:room - HASH_DIGITS - 1].rstrip('_')}_{digest}"
        candidate, counter = base, 2
        while candidate.lower() in self._taken or kfp_name(candidate, "x") in self._tasks:
            candidate = f"{base}_{counter}"
            counter += 1
        self._taken.add(candidate.lower())
        self._tasks.add(kfp_name(candidate, "x"))
        return candidate
