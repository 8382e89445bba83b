"""Benchmark 9: a local tuning run of examples/tuning.ipynb (8 grid trials) against one uncached local run."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .common import Result, progress, python, run_timed

NAME = "local tuning"
NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "tuning.ipynb"
#: 8 trials take at most this many times one uncached local run of the same pipeline.
TARGET_RATIO = 2.0


def run(notebook: Path = NOTEBOOK, repeat: int = 2) -> list[Result]:
    """``--tune`` (the notebook's 8-point grid, 2 trials at a time) against ``--local --no-cache``; best of
    ``repeat`` each, both measured here as whole commands."""
    single: list[float] = []
    tunings: list[float] = []
    logs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as tmp:
        work = Path(tmp)
        path = work / notebook.name
        shutil.copy(notebook, path)
        convert = run_timed([python(), "-m", "nbconvert", "--to", "kfp", str(path)], "tuning-convert.log", cwd=work)
        if convert.returncode:
            raise RuntimeError(f"conversion exited {convert.returncode}:\n{convert.tail()}")
        script = path.with_name(path.stem + "_pipeline.py")
        for i in range(repeat):
            one = run_timed([python(), str(script), "--local", "--no-cache", "--pipeline-root", str(work / f"one-{i}")],
                            f"tuning-one-run-{i}.log", cwd=work)
            tune = run_timed([python(), str(script), "--tune", "--parallel", "2", "--pipeline-root",
                              str(work / f"tune-{i}")], f"tuning-tune-{i}.log", cwd=work)
            for timed in (one, tune):
                if timed.returncode:
                    raise RuntimeError(f"{timed.log.name} exited {timed.returncode}:\n{timed.tail()}")
                logs.append(str(timed.log))
            trials = len(re.findall(r"^trial \d+/\d+ succeeded", tune.log.read_text(errors="replace"), re.M))
            if trials != 8:
                raise RuntimeError(f"--tune ran {trials} successful trials, not 8 (log: {tune.log})")
            single.append(one.seconds)
            tunings.append(tune.seconds)
            progress(f"  round {i + 1}/{repeat}: one run {one.seconds:.2f} s, 8 trials {tune.seconds:.2f} s")
    return [Result(NAME, f"{notebook.name}: --tune, 8 trials 2 at a time, best of {repeat}", "s", min(tunings),
                   baseline_name="one --local --no-cache run", baseline=min(single), target=TARGET_RATIO,
                   target_on="vs_baseline", target_text=f"<= {TARGET_RATIO:g}x baseline",
                   details={"one_run_s": single, "tune_s": tunings, "logs": logs})]
