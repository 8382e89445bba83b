"""Benchmark 4: how fast, and in how much memory, nbconvert_kfp.marshal saves and loads values.

- a 1 GiB float64 array: resource_save + resource_load (+ one read of every element)
  against np.save + np.load (+ the same read), same array, same disk, same run;
- a 1-million-row mixed-dtype DataFrame: resource_save + resource_load against dill.dump +
  dill.load (what Kale uses);
- peak memory while saving and while loading each, measured in a fresh subprocess as the
  rise of the peak resident set size (VmHWM, reset through /proc/self/clear_refs).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from .common import Result, progress, python

NAME = "marshal"
REPO = Path(__file__).resolve().parent.parent
ARRAY_BYTES = 1 << 30
FRAME_ROWS = 1_000_000
#: >= 90% of raw throughput, i.e. at most 1/0.9 of raw np.save + np.load time
THROUGHPUT_TARGET = 1 / 0.9
MEMORY_TARGET = 1.2


def make_array(nbytes: int = ARRAY_BYTES):
    """A float64 array of ``nbytes`` bytes, random (so no page is all zeros)."""
    import numpy as np

    return np.random.default_rng(0).random(nbytes // 8)


def make_frame(rows: int = FRAME_ROWS):
    """A DataFrame of mixed dtypes: ints, floats, bools, nullable ints, categories, tz datetimes, strings."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    counts = pd.array(rng.integers(0, 1000, rows), dtype="Int64")
    counts[rng.random(rows) < 0.1] = pd.NA
    return pd.DataFrame({
        "id": np.arange(rows, dtype=np.int64),
        "value": rng.normal(size=rows),
        "ratio": rng.random(rows).astype(np.float32),
        "flag": rng.random(rows) < 0.5,
        "count": counts,
        "category": pd.Categorical.from_codes(rng.integers(0, 20, rows), categories=[f"c{i}" for i in range(20)]),
        "when": pd.date_range("2024-01-01", periods=rows, freq="s", tz="America/New_York"),
        "label": [f"item-{i}" for i in range(rows)],
    })


def frame_bytes(frame) -> int:
    return int(frame.memory_usage(deep=True, index=True).sum())


# --- timing (in this process) ---------------------------------------------------------------------


def _clear(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            _clear(child)
        path.rmdir()
    elif path.exists():
        path.unlink()


def _time_array(array, work: Path, repeat: int) -> dict:
    import numpy as np

    from nbconvert_kfp import marshal

    runs: dict[str, list[dict]] = {"raw": [], "marshal": []}
    for i in range(repeat):
        for side in ("raw", "marshal"):  # interleaved, so both sides see the same disk and cache state
            target = work / f"{side}-array"
            _clear(target)
            gc.collect()
            t0 = time.perf_counter()
            if side == "raw":
                np.save(str(target) + ".npy", array)
            else:
                marshal.resource_save(array, str(target))
            t1 = time.perf_counter()
            loaded = np.load(str(target) + ".npy") if side == "raw" else marshal.resource_load(str(target))
            t2 = time.perf_counter()
            checksum = float(np.add.reduce(loaded, axis=None))
            t3 = time.perf_counter()
            assert loaded.shape == array.shape and loaded.dtype == array.dtype
            del loaded
            gc.collect()
            runs[side].append({"save_s": t1 - t0, "load_s": t2 - t1, "read_s": t3 - t2,
                               "total_s": t3 - t0, "checksum": checksum})
            progress(f"    array round {i + 1}/{repeat} {side:7}: save {t1 - t0:.3f} s, load {t2 - t1:.3f} s, "
                     f"first read {t3 - t2:.3f} s")
        _clear(work / "raw-array.npy")
        _clear(work / "marshal-array")
    return runs


def _time_frame(frame, work: Path, repeat: int) -> dict:
    import dill
    from pandas.testing import assert_frame_equal

    from nbconvert_kfp import marshal

    runs: dict[str, list[dict]] = {"dill": [], "marshal": []}
    for i in range(repeat):
        for side in ("dill", "marshal"):
            target = work / f"{side}-frame"
            _clear(target)
            gc.collect()
            t0 = time.perf_counter()
            if side == "dill":
                with open(target, "wb") as fh:
                    dill.dump(frame, fh)
            else:
                marshal.resource_save(frame, str(target))
            t1 = time.perf_counter()
            if side == "dill":
                with open(target, "rb") as fh:
                    loaded = dill.load(fh)
            else:
                loaded = marshal.resource_load(str(target))
            t2 = time.perf_counter()
            if i == 0:
                assert_frame_equal(loaded, frame, check_exact=True)
            del loaded
            gc.collect()
            runs[side].append({"save_s": t1 - t0, "load_s": t2 - t1, "total_s": t2 - t0})
            progress(f"    frame round {i + 1}/{repeat} {side:7}: save {t1 - t0:.3f} s, load {t2 - t1:.3f} s")
    return runs


# --- peak memory (in fresh subprocesses) ------------------------------------------------------------

MEMORY_PROBE = r"""
import gc, json, re, sys
sys.path.insert(0, sys.argv[4])
import numpy as np, pandas as pd, dill
from bench.marshal import make_array, make_frame, frame_bytes
from nbconvert_kfp import marshal

phase, kind, method, _, path = sys.argv[1:6]

def status(key):
    with open("/proc/self/status") as fh:
        return int(re.search(key + r":\s+(\d+) kB", fh.read()).group(1)) * 1024

def reset_peak():
    # Return the heap's free memory to the system first (glibc's malloc_trim), so that memory
    # freed while the value was built cannot be reused unseen: RSS is then what is live.
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status("VmRSS")

if phase == "save":
    value = make_array() if kind == "array" else make_frame()
    size = value.nbytes if kind == "array" else frame_bytes(value)
    before = reset_peak()
    if method == "marshal":
        marshal.resource_save(value, path)
    elif method == "raw":
        np.save(path + ".npy", value)
    else:
        with open(path, "wb") as fh:
            dill.dump(value, fh)
    peak = status("VmHWM")
    print(json.dumps({"size": size, "before": before, "peak": peak, "rise": peak - before,
                      "ratio": (size + peak - before) / size}))
else:
    before = reset_peak()
    if method == "marshal":
        value = marshal.resource_load(path)
    elif method == "raw":
        value = np.load(path + ".npy")
    else:
        with open(path, "rb") as fh:
            value = dill.load(fh)
    if kind == "array":
        float(np.add.reduce(value, axis=None))  # touch every page: a memory-mapped array counts in full
    peak = status("VmHWM")
    size = value.nbytes if kind == "array" else frame_bytes(value)
    print(json.dumps({"size": size, "before": before, "peak": peak, "rise": peak - before,
                      "ratio": (peak - before) / size}))
"""


def _memory(phase: str, kind: str, method: str, path: Path) -> dict:
    result = subprocess.run([python(), "-c", MEMORY_PROBE, phase, kind, method, str(REPO), str(path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise RuntimeError(f"memory probe {phase} {kind} {method} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    progress(f"    peak memory {phase:4} {kind:5} {method:7}: {measured['ratio']:.3f}x the value's size "
             f"(rise {measured['rise'] / 2**20:.0f} MiB, value {measured['size'] / 2**20:.0f} MiB)")
    return measured


def _best(runs: list[dict], key: str = "total_s") -> dict:
    return min(runs, key=lambda run: run[key])


def run(repeat: int = 3) -> list[Result]:
    """Time save + load of a 1 GiB array and a 1M-row DataFrame; measure peak memory; return the rows."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise RuntimeError("peak memory is measured through /proc/self/clear_refs (Linux only)")
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-marshal-") as tmp:
        work = Path(tmp)

        progress(f"  1 GiB float64 array: resource_save + resource_load vs np.save + np.load (best of {repeat})")
        array = make_array()
        array_runs = _time_array(array, work, repeat)
        assert len({run["checksum"] for side in array_runs.values() for run in side}) == 1
        del array
        gc.collect()
        raw, ours = _best(array_runs["raw"]), _best(array_runs["marshal"])
        gib = ARRAY_BYTES / 2**30
        details = {
            "runs": array_runs, "array_bytes": ARRAY_BYTES,
            "throughput_gib_s": {"raw": 2 * gib / raw["total_s"], "marshal": 2 * gib / ours["total_s"]},
            "throughput_vs_raw": raw["total_s"] / ours["total_s"],
            "method": "save + load + one full read (np.add.reduce), best of N; throughput = 2 GiB / time",
        }
        rows.append(Result(NAME, "1 GiB array save+load+read", "s", ours["total_s"],
                           baseline_name="np.save+np.load", baseline=raw["total_s"], target=THROUGHPUT_TARGET,
                           target_on="vs_baseline", target_text=">= 90% raw throughput (<= 1.11x time)",
                           details=details))
        rows.append(Result(NAME, "1 GiB array load only (no read)", "s", ours["load_s"],
                           baseline_name="np.load", baseline=raw["load_s"],
                           details={"note": "marshal maps large arrays copy-on-write: pages are read on first "
                                            "touch, so the read pass above carries that cost"}))

        progress("  1 GiB array: peak memory while saving and loading (fresh subprocesses)")
        memory = {}
        for method in ("raw", "marshal"):
            target = work / f"mem-{method}-array"
            memory[("save", method)] = _memory("save", "array", method, target)
            memory[("load", method)] = _memory("load", "array", method, target)
            _clear(target)
            _clear(Path(str(target) + ".npy"))
        for phase in ("save", "load"):
            rows.append(Result(NAME, f"1 GiB array peak memory during {phase}", "x",
                               memory[(phase, "marshal")]["ratio"], baseline_name=f"np.{phase}",
                               baseline=memory[(phase, "raw")]["ratio"], target=MEMORY_TARGET,
                               target_text=f"<= {MEMORY_TARGET:g}x the array",
                               details={"marshal": memory[(phase, "marshal")], "raw": memory[(phase, "raw")]}))

        progress(f"  1M-row mixed DataFrame: resource_save + resource_load vs dill (best of {repeat})")
        frame = make_frame()
        size = frame_bytes(frame)
        progress(f"    DataFrame: {len(frame):,} rows, {frame.shape[1]} columns, {size / 2**20:.0f} MiB "
                 f"({', '.join(str(t) for t in frame.dtypes)})")
        frame_runs = _time_frame(frame, work, repeat)
        del frame
        gc.collect()
        dill_best, ours = _best(frame_runs["dill"]), _best(frame_runs["marshal"])
        rows.append(Result(NAME, "1M-row DataFrame save+load", "s", ours["total_s"], baseline_name="dill",
                           baseline=dill_best["total_s"], target=1.0, target_on="vs_baseline",
                           target_text="faster than dill (< 1.00x)",
                           details={"runs": frame_runs, "frame_bytes": size,
                                    "save_vs_dill": ours["save_s"] / dill_best["save_s"],
                                    "load_vs_dill": ours["load_s"] / dill_best["load_s"]}))

        progress("  1M-row DataFrame: peak memory while saving and loading (fresh subprocesses)")
        for method in ("dill", "marshal"):
            target = work / f"mem-{method}-frame"
            memory[("fsave", method)] = _memory("save", "frame", method, target)
            memory[("fload", method)] = _memory("load", "frame", method, target)
            _clear(target)
        for phase, key in (("save", "fsave"), ("load", "fload")):
            rows.append(Result(NAME, f"DataFrame peak memory during {phase}", "x", memory[(key, "marshal")]["ratio"],
                               baseline_name="dill", baseline=memory[(key, "dill")]["ratio"], target=MEMORY_TARGET,
                               target_text=f"<= {MEMORY_TARGET:g}x the frame",
                               details={"marshal": memory[(key, "marshal")], "dill": memory[(key, "dill")]}))
    return rows
