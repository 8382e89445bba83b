"""Benchmark 7: a rerun of the demo pipeline whose steps all come from the local cache, against a full run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .common import Result, progress, python, run_timed

NAME = "cached rerun"
NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "model_comparison.ipynb"
#: The cached rerun of an unchanged pipeline takes at most this share of the full run.
TARGET_RATIO = 0.15


def run(notebook: Path = NOTEBOOK, repeat: int = 3) -> list[Result]:
    """Full runs (each with an empty cache) against reruns of an unchanged pipeline; best of ``repeat`` each."""
    full_runs: list[float] = []
    cached_runs: list[float] = []
    logs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-cached-rerun-") as tmp:
        work = Path(tmp)
        path = work / notebook.name
        shutil.copy(notebook, path)
        convert = run_timed([python(), "-m", "nbconvert", "--to", "kfp", str(path)], "cached-rerun-convert.log",
                            cwd=work)
        if convert.returncode:
            raise RuntimeError(f"conversion exited {convert.returncode}:\n{convert.tail()}")
        script = path.with_name(path.stem + "_pipeline.py")
        for i in range(repeat):
            root = work / f"outputs-{i}"  # a fresh pipeline root: an empty cache
            for kind, runs in (("full", full_runs), ("cached", cached_runs)):
                timed = run_timed([python(), str(script), "--local", "--pipeline-root", str(root)],
                                  f"cached-rerun-{kind}-{i}.log", cwd=work)
                if timed.returncode:
                    raise RuntimeError(f"{script.name} --local exited {timed.returncode}:\n{timed.tail()}")
                text = timed.log.read_text(errors="replace")
                if kind == "cached" and ("  started" in text or "reused from the cache" not in text):
                    raise RuntimeError(f"the rerun executed steps instead of reusing them (log: {timed.log})")
                runs.append(timed.seconds)
                logs.append(str(timed.log))
                progress(f"  round {i + 1}/{repeat}: {kind} run {timed.seconds:.2f} s")
    return [Result(NAME, f"{notebook.name}: --local rerun, every step from the cache, best of {repeat}", "s",
                   min(cached_runs), baseline_name="full --local run", baseline=min(full_runs),
                   target=TARGET_RATIO, target_on="vs_baseline", target_text=f"<= {TARGET_RATIO:g}x baseline",
                   details={"full_runs_s": full_runs, "cached_runs_s": cached_runs, "logs": logs})]
