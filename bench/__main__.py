"""Run the benchmarks: ``python -m bench [BENCHMARK ...]`` from the repo root (default: all)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from importlib import metadata

from . import bigcell, cached_rerun, clustersize, conversion, install, local_run, marshal, step_overhead, tuning
from .common import RESULTS, Result, progress, table

BENCHMARKS = {
    "conversion": ("1/9 conversion time of a 1,000-cell notebook", conversion.NAME),
    "local_run": ("2/9 local run vs nbclient (model_comparison.ipynb)", local_run.NAME),
    "step_overhead": ("3/9 overhead of an empty step in a local run", step_overhead.NAME),
    "marshal": ("4/9 marshal: 1 GiB array vs np.save/np.load, 1M-row DataFrame vs dill, peak memory",
                marshal.NAME),
    "cluster_size": ("5/9 chains of 5, 50, 200 steps on a KFP cluster: IR, Workflow, compile time",
                     clustersize.NAME),
    "big_cell": ("6/9 conversion of a notebook with one 10 MB cell", bigcell.NAME),
    "cached_rerun": ("7/9 rerun of an unchanged pipeline from the local cache vs a full local run",
                     cached_rerun.NAME),
    "cold_install": ("8/9 cold install of a step's packages: uv-first install lines vs KFP's pip command (network)",
                     install.NAME),
    "tuning": ("9/9 local tuning: 8 trials of tuning.ipynb vs one uncached local run", tuning.NAME),
}


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("nbconvert-kfp", "nbconvert", "nbclient", "kfp", "ipykernel", "numpy", "pandas", "scikit-learn",
                    "dill"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                        help=f"which to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--repeat", type=int, default=3,
                        help="in-process conversions timed per exporter in benchmark 1 (default: 3)")
    parser.add_argument("--run-repeat", type=int, default=2,
                        help="rounds of nbclient + pipeline in benchmark 2; the best of each is kept (default: 2)")
    parser.add_argument("--step-repeat", type=int, default=3,
                        help="local runs of each trivial pipeline in benchmark 3; the best is kept (default: 3)")
    parser.add_argument("--marshal-repeat", type=int, default=3,
                        help="save/load rounds of each value in benchmark 4; the best is kept (default: 3)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    unknown = [b for b in args.benchmarks if b not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    chosen = [b for b in BENCHMARKS if b in args.benchmarks] or list(BENCHMARKS)

    progress(f"python {platform.python_version()} ({sys.executable}), {os.cpu_count()} CPUs, "
             f"running: {', '.join(chosen)}")
    started = time.perf_counter()
    results: list[Result] = []
    for key in chosen:
        title, name = BENCHMARKS[key]
        progress(f"START {title}")
        t0 = time.perf_counter()
        try:
            if key == "conversion":
                rows = conversion.run(repeat=args.repeat)
            elif key == "local_run":
                rows = local_run.run(repeat=args.run_repeat)
            elif key == "marshal":
                rows = marshal.run(repeat=args.marshal_repeat)
            elif key == "cluster_size":
                rows = clustersize.run()
            elif key == "big_cell":
                rows = bigcell.run()
            elif key == "cached_rerun":
                rows = cached_rerun.run()
            elif key == "cold_install":
                rows = install.run()
            elif key == "tuning":
                rows = tuning.run()
            else:
                rows = step_overhead.run(repeat=args.step_repeat)
        except Exception as err:  # keep going: one broken benchmark must not hide the others
            traceback.print_exc()
            rows = [Result(name, title, "s", None, error=f"{type(err).__name__}: {err}")]
        results.extend(rows)
        progress(f"DONE  {title} in {time.perf_counter() - t0:.1f} s: "
                 + "; ".join(f"{r.metric} = {r.value:.3f} {r.unit} ({r.status})" if r.value is not None
                             else f"{r.metric}: {r.status}" for r in rows))

    total = time.perf_counter() - started
    print()
    print(table(results))
    print()
    if "local_run" in chosen:
        print(f"Context (not measured here): Kale 2.3.0's local run takes {local_run.KALE_RATIO:g}x "
              "the nbclient time, from our field notes.")
    print(f"Total benchmark time: {total:.1f} s. Lower is better; 'vs target' <= 1.00x meets the target.")

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": total,
        "machine": {"python": platform.python_version(), "executable": sys.executable,
                    "platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": _versions(),
        "context": {"kale_2_3_0_local_run_vs_nbclient_ratio_from_field_notes": local_run.KALE_RATIO},
        "results": [r.to_json() for r in results],
    }
    out = RESULTS / "latest.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {out}")

    if any(r.status == "ERROR" for r in results):
        return 2
    if args.strict and any(r.status == "MISS" for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
