"""Benchmark 2: a local pipeline run of a scikit-learn notebook vs running it top to bottom with nbclient."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import nbformat

from .common import Result, progress, python, run_timed

NAME = "local run"
NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "model_comparison.ipynb"
TARGET_RATIO = 3.0
#: From our field notes, not measured here: Kale 2.3.0's local run of a comparable notebook.
KALE_RATIO = 19.0


def _nbclient(path: Path) -> float:
    """Wall time of executing the notebook with nbclient, kernel start included."""
    import nbclient

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def _pipeline(path: Path, work: Path, tag: str, extra: tuple[str, ...] = ()):
    """Convert with the nbconvert CLI, then run the script with --local; return both timings."""
    progress(f"  pipeline: python -m nbconvert --to kfp {path.name}")
    convert = run_timed([python(), "-m", "nbconvert", "--to", "kfp", str(path)],
                        f"local-run-convert-{tag}.log", cwd=work)
    if convert.returncode:
        raise RuntimeError(f"conversion exited {convert.returncode}:\n{convert.tail()}")
    script = path.with_name(path.stem + "_pipeline.py")
    progress(f"    {convert.seconds:.2f} s; running {script.name} --local {' '.join(extra)}")
    # --no-cache: each round runs every step; --verbose: the steps' own timing lines reach the log
    local = run_timed([python(), str(script), "--local", "--no-cache", "--verbose", *extra, "--workdir", str(work),
                       "--pipeline-root", str(work / f"local_outputs-{tag}")],
                      f"local-run-pipeline-{tag}.log", cwd=work, echo_steps=True)
    if local.returncode:
        raise RuntimeError(f"{script.name} --local exited {local.returncode} "
                           f"(log: {local.log}):\n{local.tail()}")
    progress(f"    {local.seconds:.2f} s")
    return convert, local


def run(notebook: Path = NOTEBOOK, repeat: int = 2) -> list[Result]:
    """Per round: nbclient execution, then conversion + ``python X_pipeline.py --local``; best round of each."""
    notebook_runs: list[float] = []
    pipeline_runs: list[tuple] = []
    with tempfile.TemporaryDirectory(prefix="bench-local-run-") as tmp:
        work = Path(tmp)
        path = work / notebook.name
        shutil.copy(notebook, path)

        # Warm the file cache for both sides, so neither pays for reading numpy/pandas/sklearn from disk.
        progress("  warming the file cache (import pandas, sklearn, kfp in a subprocess)")
        warm = run_timed([python(), "-c", "import pandas, sklearn.ensemble, sklearn.svm, "
                          "sklearn.linear_model, kfp.dsl, kfp.local"], "local-run-warm.log")
        if warm.returncode:
            raise RuntimeError(f"warm-up import failed:\n{warm.tail()}")

        for i in range(repeat):
            progress(f"  round {i + 1}/{repeat}: nbclient executes {notebook.name} top to bottom "
                     "(kernel start included)")
            notebook_runs.append(_nbclient(path))
            progress(f"    {notebook_runs[-1]:.2f} s")
            pipeline_runs.append(_pipeline(path, work, str(i + 1)))
        progress("  once more with --cold-start: every step in a new interpreter (no warm process)")
        cold = _pipeline(path, work, "cold", ("--cold-start",))

    convert, local = min(pipeline_runs, key=lambda pair: pair[0].seconds + pair[1].seconds)
    pipeline_seconds = convert.seconds + local.seconds
    in_steps = sum(local.step_seconds.values())
    n_steps = len(local.step_seconds)
    return [Result(
        NAME, f"{notebook.name}: convert + --local ({n_steps} steps), best of {repeat}", "s",
        pipeline_seconds, baseline_name="nbclient", baseline=min(notebook_runs),
        target=TARGET_RATIO, target_on="vs_baseline", target_text=f"<= {TARGET_RATIO:g}x baseline",
        details={
            "convert_s": convert.seconds,
            "local_run_s": local.seconds,
            "pipeline_runs_s": [c.seconds + l.seconds for c, l in pipeline_runs],
            "nbclient_runs_s": notebook_runs,
            "steps": n_steps,
            "step_body_s": local.step_seconds,  # prelude, loads, cells, saves (runtime timer)
            "step_bodies_total_s": in_steps,
            "outside_step_bodies_s": local.seconds - in_steps,
            "context_kale_2_3_0_ratio_from_field_notes": KALE_RATIO,
            "logs": [str(convert.log), str(local.log)],
        },
    ), Result(
        NAME, f"{notebook.name}: convert + --local --cold-start, one run", "s",
        cold[0].seconds + cold[1].seconds, baseline_name="nbclient", baseline=min(notebook_runs),
        details={"convert_s": cold[0].seconds, "local_run_s": cold[1].seconds,
                 "logs": [str(cold[0].log), str(cold[1].log)]},
    )]
