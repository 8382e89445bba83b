"""Benchmark 6: converting a notebook whose one cell holds 10 MB, against nbconvert's PythonExporter.

Three kinds of 10 MB cell: literal data (a list of numbers), assignments (one statement a line)
and function definitions. Each is converted with ``python -m nbconvert --to kfp`` in a fresh
interpreter (what a user waits for) and, as the baseline in the same run, with ``--to python``.
The peak resident memory of the kfp conversion comes from ``/usr/bin/time -v``-style accounting
(``ru_maxrss`` of the child). Target: under 10 s each.

No KFP step can carry 10 MB of code, even compressed: a step's command holds at most 128 KiB,
on a cluster and in a local run alike. So every such conversion parses and analyses the whole
notebook and then stops with the one-line error that says so (exit 1); the benchmark checks that
error and times the whole conversion.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from pathlib import Path

import nbformat

from .common import Result, progress, python
from .notebooks import big_cell_notebook

NAME = "big_cell"
KINDS = ("data", "assignments", "functions")
TARGET_SECONDS = 10.0


def _convert(path: Path, to: str) -> tuple[float, int, int, str]:
    """Wall time, exit status, peak memory (bytes) and error output of one ``python -m nbconvert --to <to>``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run([python(), "-m", "nbconvert", "--to", to, path.name], cwd=path.parent,
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, proc.returncode, max(peak, before) * 1024, proc.stderr[-2000:]


def run() -> list[Result]:
    """One row per kind of cell."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-bigcell-") as tmp:
        for kind in KINDS:
            path = Path(tmp) / f"big_{kind}.ipynb"
            nbformat.write(big_cell_notebook(kind), path)
            size = len(nbformat.read(path, as_version=4).cells[0].source)
            baseline, _, _, _ = _convert(path, "python")
            seconds, status, peak, error = _convert(path, "kfp")
            if status and "a KFP step's command holds at most 128 KiB" not in error:
                raise RuntimeError(f"converting the {kind} cell failed (exit {status}): {error}")
            outcome = "stopped: too large for a KFP step" if status else "converted"
            progress(f"  {size / 2**20:.1f} MB cell of {kind}: --to kfp {seconds:.1f} s, {outcome} "
                     f"(--to python {baseline:.1f} s); peak memory so far {peak / 2**30:.2f} GiB")
            results.append(Result(NAME, f"10 MB cell of {kind}: conversion", "s", seconds, "--to python", baseline,
                                  target=TARGET_SECONDS, target_text=f"<= {TARGET_SECONDS:g} s",
                                  details={"cell_bytes": size, "peak_rss_bytes_so_far": peak, "outcome": outcome}))
    return results
