"""Ancestry: which steps of the pipeline's DAG run before which, as bit sets over a topological order.

Every question the dependency analysis asks of a step ("which upstream step last wrote this name",
"which classes can its inputs hold") is about its upstream steps. Walking the graph for each step costs
time proportional to the pipeline for every step, so a long chain of steps took time growing with the
square (or the cube) of its length. Here each step's upstream steps are one integer, a bit per step,
built once in topological order: a test is one shift, and a union one ``|``.
"""

from __future__ import annotations

from typing import Iterable

import networkx as nx


class Ancestry:
    """The upstream steps of every step of a DAG, as bit sets over a topological order of it."""

    def __init__(self, graph: nx.DiGraph, order: list[str]):
        self.order = order
        #: step name -> its index in ``order``
        self.position = {name: index for index, name in enumerate(order)}
        self._bits: dict[str, int] = {}
        for name in order:
            bits = 0
            for parent in graph.predecessors(name):
                bits |= self._bits[parent] | 1 << self.position[parent]
            self._bits[name] = bits

    def precedes(self, upstream: str, name: str) -> bool:
        """Whether ``upstream`` is an upstream step of ``name`` (a path leads from it to ``name``)."""
        return bool(self._bits[name] >> self.position[upstream] & 1)

    def scope(self, names: Iterable[str]) -> int:
        """The steps given and all their upstream steps, as a bit set."""
        bits = 0
        for name in names:
            bits |= self._bits[name] | 1 << self.position[name]
        return bits

    def within(self, bits: int, name: str) -> bool:
        """Whether step ``name`` is in the bit set ``bits`` (from ``scope``)."""
        return bool(bits >> self.position[name] & 1)

    def upstream(self, name: str) -> list[str]:
        """The upstream steps of ``name``, in topological order."""
        digits = bin(self._bits[name])[:1:-1]  # least significant first
        return [self.order[index] for index, digit in enumerate(digits) if digit == "1"]
