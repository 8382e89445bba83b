"""Spelling: the defined names closest to a misspelled one, by the rule Python's own "Did you mean" uses."""

from __future__ import annotations

from typing import Iterable

#: The cost of inserting, deleting or replacing a character; a change of case alone costs 1.
_MOVE = 2
_CASE = 1


def _distance(a: str, b: str, limit: int) -> int:
    """The weighted edit distance of ``a`` and ``b``, or more than ``limit`` once it is known to exceed it."""
    if a == b:
        return 0
    previous = [i * _MOVE for i in range(len(b) + 1)]
    for i, ca in enumerate(a, 1):
        current = [i * _MOVE]
        for j, cb in enumerate(b, 1):
            change = 0 if ca == cb else _CASE if ca.lower() == cb.lower() else _MOVE
            current.append(min(previous[j] + _MOVE, current[j - 1] + _MOVE, previous[j - 1] + change))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def close_names(name: str, candidates: Iterable[str], most: int = 3) -> list[str]:
    """Up to ``most`` candidates within Python's suggestion distance of ``name`` (about a third of the
    letters changed), the closest first: ``svn`` finds ``svm``, ``modle`` finds ``model``."""
    scored = []
    for candidate in set(candidates):
        if candidate == name:
            continue
        limit = (len(name) + len(candidate) + 3) * _MOVE // 6
        distance = _distance(name, candidate, limit)
        if distance <= limit:
            scored.append((distance, candidate))
    return [candidate for _, candidate in sorted(scored)[:most]]
