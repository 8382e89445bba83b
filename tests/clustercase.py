"""Pipelines for the cluster-path tests: a step chain, and each step's executor in a compiled spec."""

from __future__ import annotations


def step_executors(spec: dict) -> dict[str, dict]:
    """Task name -> the container its executor runs (command, args, image)."""
    tasks = spec["root"]["dag"]["tasks"]
    return {name: spec["deploymentSpec"]["executors"][spec["components"][task["componentRef"]["name"]]
                                                      ["executorLabel"]]["container"]
            for name, task in tasks.items()}


def chain_cells(steps: int) -> list:
    """A chain of `steps` steps, each reading the one before."""
    return [(["step:s0"], "x0 = 1"), *((([f"step:s{i}"], f"x{i} = x{i - 1} + 1")) for i in range(1, steps))]
