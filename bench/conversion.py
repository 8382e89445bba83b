"""Benchmark 1: converting a generated 1,000-cell notebook, against nbconvert's PythonExporter."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nbformat

from .common import Result, progress, python, run_timed
from .notebooks import large_notebook

NAME = "conversion"
TARGET_SECONDS = 2.0


def _convert(exporter_class, nb, name: str) -> tuple[float, str]:
    """One in-process conversion with a fresh exporter, as one nbconvert call makes."""
    start = time.perf_counter()
    output, _ = exporter_class().from_notebook_node(nb, resources={"metadata": {"name": name}})
    return time.perf_counter() - start, output


def run(repeat: int = 3, n_cells: int = 1000, n_steps: int = 100) -> list[Result]:
    """Cold (fresh subprocess, ``python -m nbconvert``) and warm (in-process, best of ``repeat``)."""
    nb = large_notebook(n_cells=n_cells, n_steps=n_steps)
    code_cells = sum(c.cell_type == "code" for c in nb.cells)
    shape = {"cells": len(nb.cells), "code_cells": code_cells, "steps": n_steps,
             "shape": "groups of 10 steps: hub -> 8 parallel branches -> join (prev: chains)"}
    progress(f"  notebook: {len(nb.cells)} cells ({code_cells} code) in {n_steps} steps")
    results: list[Result] = []

    with tempfile.TemporaryDirectory(prefix="bench-conversion-") as tmp:
        work = Path(tmp)
        path = work / "big.ipynb"
        nbformat.write(nb, path)

        # Cold: a fresh interpreter that imports nbconvert, finds the exporter and converts (what
        # `jupyter nbconvert --to kfp` costs). kfp first, so it gets the colder file cache.
        cold = {}
        for to in ("kfp", "python"):
            progress(f"  cold conversion in a fresh subprocess: python -m nbconvert --to {to}")
            timed = run_timed([python(), "-m", "nbconvert", "--to", to, str(path), "--output-dir",
                               str(work / f"out-{to}")], f"conversion-cold-{to}.log", cwd=work)
            if timed.returncode:
                raise RuntimeError(f"nbconvert --to {to} exited {timed.returncode}:\n{timed.tail()}")
            cold[to] = timed.seconds
            progress(f"    {timed.seconds:.3f} s")
        script = work / "out-kfp" / "big_pipeline.py"
        if not script.exists():
            raise RuntimeError(f"nbconvert --to kfp did not write {script}")

    from nbconvert.exporters import PythonExporter

    from nbconvert_kfp.exporter import KFPExporter

    progress("  warm-up conversions (kfp, python)")
    _, output = _convert(KFPExporter, nb, "big")
    _convert(PythonExporter, nb, "big")
    compile(output, "big_pipeline.py", "exec")
    components = output.count("@dsl.component(")
    if components != n_steps:
        raise RuntimeError(f"the generated script has {components} components, expected {n_steps}")

    warm: dict[str, list[float]] = {"kfp": [], "python": []}
    for i in range(repeat):
        for to, exporter in (("kfp", KFPExporter), ("python", PythonExporter)):
            seconds, _ = _convert(exporter, nb, "big")
            warm[to].append(seconds)
        progress(f"  in-process run {i + 1}/{repeat}: kfp {warm['kfp'][-1]:.3f} s, "
                 f"python {warm['python'][-1]:.3f} s")

    details = {**shape, "script_bytes": len(output.encode()), "script_lines": output.count("\n"),
               "components": components}
    results.append(Result(
        NAME, f"{n_cells}-cell notebook, in-process, best of {repeat}", "s", min(warm["kfp"]),
        baseline_name="PythonExporter", baseline=min(warm["python"]),
        target=TARGET_SECONDS, target_text=f"<= {TARGET_SECONDS:g} s",
        details={**details, "kfp_runs_s": warm["kfp"], "python_runs_s": warm["python"]},
    ))
    results.append(Result(
        NAME, f"{n_cells}-cell notebook, cold CLI subprocess", "s", cold["kfp"],
        baseline_name="--to python", baseline=cold["python"],
        details={**details, "command": "python -m nbconvert --to kfp|python big.ipynb",
                 "note": "fresh interpreter: start-up, imports, read, convert, write"},
    ))
    return results
