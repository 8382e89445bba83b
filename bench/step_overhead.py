"""Benchmark 3: the cost of one empty step in a local run, against interpreter start-up."""

from __future__ import annotations

import tempfile
from pathlib import Path

from .common import Result, best_of, progress, python, run_timed
from .notebooks import trivial_notebook

NAME = "empty step"
TARGET_SECONDS = 1.0


def _convert(n_steps: int, work: Path, reports: bool) -> Path:
    from traitlets.config import Config

    from nbconvert_kfp.exporter import KFPExporter

    name = f"steps{n_steps}{'' if reports else '_noreport'}"
    exporter = KFPExporter(config=Config({"KFPExporter": {"step_reports": reports}}))
    output, _ = exporter.from_notebook_node(trivial_notebook(n_steps), resources={"metadata": {"name": name}})
    script = work / f"{name}_pipeline.py"
    script.write_text(output)
    return script


def _local(script: Path, work: Path, tag: str):
    root = work / f"outputs-{tag}"
    # --no-cache: every run executes its steps; --verbose: the steps' own timing lines reach the log
    timed = run_timed([python(), str(script), "--local", "--no-cache", "--verbose", "--workdir", str(work),
                       "--pipeline-root", str(root)],
                      f"empty-step-{tag}.log", cwd=work, echo_steps=True)
    if timed.returncode:
        raise RuntimeError(f"{script.name} --local exited {timed.returncode} (log: {timed.log}):\n{timed.tail()}")
    return timed


def run(small: int = 1, large: int = 11, repeat: int = 3) -> list[Result]:
    """Per-step overhead = (t(large) - t(small)) / (large - small), best of ``repeat`` runs each."""
    progress("  baseline: python -c pass (best of 5)")
    start_up, start_up_runs = best_of([python(), "-c", "pass"], 5, "empty-step-python.log")
    progress(f"    {start_up:.3f} s")
    progress("  baseline: python -c 'import kfp.dsl' (best of 3)")
    kfp_import, kfp_import_runs = best_of([python(), "-c", "import kfp.dsl"], 3, "empty-step-kfp-import.log")
    progress(f"    {kfp_import:.3f} s")

    per_step: dict[bool, float] = {}
    details: dict[str, object] = {
        "python_start_runs_s": start_up_runs, "kfp_dsl_import_runs_s": kfp_import_runs,
        "formula": f"(t{large} - t{small}) / {large - small}",
        "notebook": "independent steps s0.., each one cell 'x<i> = 0', no data flow",
    }
    t_small = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-empty-step-") as tmp:
        work = Path(tmp)
        for reports in (True, False):
            label = "reports on" if reports else "reports off"
            times: dict[int, list[float]] = {small: [], large: []}
            scripts = {n: _convert(n, work, reports) for n in (small, large)}
            for i in range(repeat):
                for n in (small, large):
                    progress(f"  {n}-step pipeline --local, {label} (run {i + 1}/{repeat})")
                    timed = _local(scripts[n], work, f"{n}-steps-{label.replace(' ', '-')}-{i + 1}")
                    if len(timed.step_seconds) != n:
                        raise RuntimeError(f"expected {n} steps to finish, saw {len(timed.step_seconds)} "
                                           f"(log: {timed.log})")
                    times[n].append(timed.seconds)
                    progress(f"    {timed.seconds:.2f} s")
            per_step[reports] = (min(times[large]) - min(times[small])) / (large - small)
            details[f"runs_s_{label.replace(' ', '_')}"] = {str(k): v for k, v in times.items()}
            if reports:
                t_small = min(times[small])
    target = dict(target=TARGET_SECONDS, target_text=f"<= {TARGET_SECONDS:g} s")
    return [
        Result(NAME, "overhead per empty step, reports on (vs interpreter start)", "s", per_step[True],
               baseline_name="python -c pass", baseline=start_up, **target, details=details),
        Result(NAME, "overhead per empty step, reports off (vs interpreter start)", "s", per_step[False],
               baseline_name="python -c pass", baseline=start_up, **target, details=details),
        Result(NAME, "overhead per empty step, reports on (vs import kfp.dsl)", "s", per_step[True],
               baseline_name="python -c 'import kfp.dsl'", baseline=kfp_import, **target, details=details),
        Result(NAME, f"whole {small}-step local run, reports on", "s", t_small,
               baseline_name="python -c pass", baseline=start_up, details=details),
    ]
