"""Shared helpers: progress output, timed subprocesses, result records."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

#: bench/results/ (git-ignored): latest.json and the logs of the subprocess runs.
RESULTS = Path(__file__).resolve().parent / "results"
LOGS = RESULTS / "logs"

_STARTED = time.perf_counter()
_STEP_LINE = re.compile(r"\[nbconvert-kfp\] step '([^']*)' (finished|failed) in ([0-9.]+)s")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def progress(message: str) -> None:
    """Print a progress line with the time since the benchmarks started."""
    print(f"[bench {time.perf_counter() - _STARTED:6.1f}s] {message}", flush=True)


@dataclass
class Timed:
    """A finished subprocess: wall time, exit status, where its output went, step times it printed."""

    seconds: float
    returncode: int
    log: Path
    step_seconds: dict[str, float] = field(default_factory=dict)

    def tail(self, lines: int = 15) -> str:
        text = _ANSI.sub("", self.log.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-lines:])


def run_timed(argv: Sequence[str], log_name: str, *, cwd: Path | None = None,
              echo_steps: bool = False, timeout: float = 600, env: dict[str, str] | None = None) -> Timed:
    """Run ``argv``, timing its wall clock; stream its output into ``results/logs/<log_name>``.

    With ``echo_steps`` each "[nbconvert-kfp] step 'x' finished in Ns" line is shown as progress.
    ``env`` replaces this process's environment.
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / log_name
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    steps: dict[str, float] = {}
    start = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        assert process.stdout is not None
        for line in process.stdout:
            sink.write(line)
            match = _STEP_LINE.search(line)
            if match:
                steps[match.group(1)] = float(match.group(3))
                if echo_steps:
                    progress(f"      step {match.group(1)!r} {match.group(2)} (step body {match.group(3)} s, "
                             f"{time.perf_counter() - start:.1f} s into the run)")
        returncode = process.wait(timeout=timeout)
    return Timed(time.perf_counter() - start, returncode, log, steps)


def best_of(argv: Sequence[str], repeat: int, log_name: str) -> tuple[float, list[float]]:
    """Best wall time of ``repeat`` runs of a short command (which must succeed)."""
    times = []
    for _ in range(repeat):
        timed = run_timed(argv, log_name)
        if timed.returncode:
            raise RuntimeError(f"{' '.join(argv)} exited {timed.returncode}:\n{timed.tail()}")
        times.append(timed.seconds)
    return min(times), times


@dataclass
class Result:
    """One row of the report (lower is better everywhere).

    ``baseline`` is a reference measured in the same run and ``vs_baseline`` = value / baseline.
    ``target`` applies to ``value`` (same unit) or, with ``target_on="vs_baseline"``, to the
    ratio; ``vs_target`` = (value or ratio) / target, so <= 1 meets the target.
    """

    benchmark: str
    metric: str
    unit: str
    value: float | None
    baseline_name: str | None = None
    baseline: float | None = None
    target: float | None = None
    target_on: str = "value"
    target_text: str | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def vs_baseline(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def compared(self) -> float | None:
        """What the target applies to."""
        return self.vs_baseline if self.target_on == "vs_baseline" else self.value

    @property
    def vs_target(self) -> float | None:
        if self.compared is None or not self.target:
            return None
        return self.compared / self.target

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        if self.target is None:
            return "info"
        return "PASS" if self.compared is not None and self.compared <= self.target else "MISS"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(vs_baseline=self.vs_baseline, vs_target=self.vs_target, status=self.status)
        return data


def fmt(value: float | None, unit: str = "") -> str:
    """A number for the table."""
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    return f"{value:.3g}{(' ' + unit) if unit else ''}"


def table(results: list[Result]) -> str:
    """The report as a fixed-width text table."""
    header = ["benchmark", "metric", "measured", "baseline (same run)", "vs baseline", "target",
              "vs target", "status"]
    rows = [header]
    for r in results:
        rows.append([
            r.benchmark,
            r.metric,
            fmt(r.value, r.unit) if not r.error else "-",
            f"{r.baseline_name} {fmt(r.baseline, r.unit)}" if r.baseline_name else "-",
            fmt(r.vs_baseline, "x"),
            r.target_text or "-",
            fmt(r.vs_target, "x"),
            r.status,
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def python() -> str:
    """The interpreter the benchmarks run with (the project's .venv under ``make bench``)."""
    return sys.executable
