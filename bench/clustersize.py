"""Benchmark 5: what a chain of 5, 50 and 200 steps costs a KFP cluster, against the embedded runtime.

For each chain (step i reads step i-1's variable), converted with the default runtime
(``artifact``) and, as the baseline in the same run, with ``--KFPExporter.runtime=embedded``
(every step carrying the runtime, as before): the IR bytes per step, the script's bytes, the time
``python X_pipeline.py`` takes to compile it, and the estimated Argo Workflow (created size per
step, and whether a run completes on KFP 2.14-2.16 and 2.17).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
import yaml

from .common import Result, progress, python, run_timed
from .notebooks import chain_notebook

NAME = "cluster_size"
CHAINS = (5, 50, 200)


def _measure(work: Path, steps: int, runtime: str) -> dict:
    """Convert, compile and estimate one chain."""
    from nbconvert_kfp.analysis.workflowsize import estimate_ir
    from nbconvert_kfp.exporters import KFPExporter

    stem = f"chain{steps}_{runtime}"
    script_text, _ = KFPExporter(runtime=runtime).from_notebook_node(chain_notebook(steps),
                                                                     {"metadata": {"name": stem}})
    script = work / f"{stem}_pipeline.py"
    script.write_text(script_text, encoding="utf-8")
    compiled = run_timed([python(), str(script), "--output", str(work / f"{stem}.yaml")], f"{stem}-compile.log",
                         cwd=work)
    if compiled.returncode:
        raise RuntimeError(f"compiling {stem} failed:\n{compiled.tail()}")
    ir_path = work / f"{stem}.yaml"
    estimate = estimate_ir(yaml.safe_load(ir_path.read_text(encoding="utf-8")))
    return {"ir_bytes_per_step": ir_path.stat().st_size / estimate.steps, "script_bytes": len(script_text),
            "compile_s": compiled.seconds, "created_bytes_per_step": estimate.created / estimate.steps,
            "steps_run": {version: estimate.steps if failed is None else failed - 1
                          for version, failed in estimate.fails_after.items()},
            "estimate": estimate.describe()}


def run() -> list[Result]:
    """Every chain with both runtimes; one row per chain and figure."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-clustersize-") as tmp:
        work = Path(tmp)
        for steps in CHAINS:
            nbformat.write(chain_notebook(steps), work / f"chain{steps}.ipynb")
            ours, embedded = _measure(work, steps, "artifact"), _measure(work, steps, "embedded")
            progress(f"  chain of {steps}: artifact: {ours['estimate']}")
            progress(f"  chain of {steps}: embedded: {embedded['estimate']}")
            label = f"chain of {steps}"
            results += [
                Result(NAME, f"{label}: IR bytes per step", "B", ours["ir_bytes_per_step"], "embedded runtime",
                       embedded["ir_bytes_per_step"], details=ours),
                Result(NAME, f"{label}: Workflow bytes per step", "B", ours["created_bytes_per_step"],
                       "embedded runtime", embedded["created_bytes_per_step"]),
                Result(NAME, f"{label}: script bytes", "B", ours["script_bytes"], "embedded runtime",
                       embedded["script_bytes"]),
                Result(NAME, f"{label}: compile time", "s", ours["compile_s"], "embedded runtime",
                       embedded["compile_s"]),
            ]
            for version in ours["steps_run"]:
                results.append(Result(NAME, f"{label}: steps a run gets through on {version} (of {steps + 1})",
                                      "steps", ours["steps_run"][version], "embedded runtime",
                                      embedded["steps_run"][version], details={"estimate": ours["estimate"]}))
    return results
