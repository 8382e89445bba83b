"""The local loop as a user lives it: quiet progress, a failure to read, a fix, a cached rerun, one step,
and a run that stops cleanly when it is interrupted (all through the generated script's --local)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers import EXAMPLES, PYTHON, build_notebook, nbconvert, processes_mentioning as _processes_mentioning, run

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local runs fork (Linux)")

ANSI = re.compile(r"\x1b\[")
STEP_LINE = re.compile(r"^  (started|finished|FAILED|cached) +(\S+)", re.MULTILINE)


def _convert(notebook: Path) -> Path:
    result = nbconvert(["--to", "kfp", notebook.name], cwd=notebook.parent, merge=True)
    assert result.returncode == 0, result.stdout
    return notebook.with_name(notebook.stem + "_pipeline.py")


def _local(script: Path, *args: str) -> subprocess.CompletedProcess:
    return run([PYTHON, script.name, "--local", *args], cwd=script.parent, timeout=300)


def _events(output: str) -> list[tuple[str, str]]:
    return STEP_LINE.findall(output)


def _run_dirs(root: Path, name: str) -> list[Path]:
    return sorted((root / "local_outputs").glob(f"{name}-*"), key=lambda p: p.stat().st_mtime)


def test_the_demo_shows_one_line_per_step_event_then_metrics_and_reports(tmp_path):
    notebook = tmp_path / "model_comparison.ipynb"
    notebook.write_bytes((EXAMPLES / "model_comparison.ipynb").read_bytes())
    script = _convert(notebook)
    result = _local(script, "--no-cache")
    output = result.stdout
    assert result.returncode == 0, output
    lines = output.splitlines()
    assert len(lines) <= 30, output
    steps = ["load_data", "split", "train_logreg", "train-forest", "train_SVM", "compare"]
    events = _events(output)
    for step in steps:
        assert ("started", step) in events and ("finished", step) in events, output
    finished = [line for line in lines if line.startswith("  finished")]
    assert all(re.search(r" in \d+\.\d s", line) for line in finished), finished
    assert "  finished  load_data" in output and "saved df" in output
    assert re.search(r"^  metric \w+ = 0\.\d+$", output, re.MULTILINE), output
    [run_dir] = _run_dirs(tmp_path, "model-comparison")
    reports = re.findall(r"^  \S+ +(\S+/report\.html)$", output, re.MULTILINE)
    assert len(reports) == len(steps) and all((tmp_path / r).is_file() for r in reports), output
    assert f"Outputs: local_outputs/{run_dir.name}" in output
    # what kfp.local and the executor print goes to the logs, not to the screen
    assert not ANSI.search(output)
    assert "executor_input" not in output and "Executing task" not in output and "KFP Executor" not in output
    assert "executor_input" in (run_dir / "split" / "step.log").read_text(encoding="utf-8")
    assert "Running pipeline" in (run_dir / "local-run.log").read_text(encoding="utf-8")


FLOW = [
    (["step:prepare"], "data = list(range(10))\nprint('prepared', len(data))"),
    (["step:train", "prev:prepare"], "def scale(values):\n    return [v / DIVISOR for v in values]"),
    ([], "DIVISOR = 0\ntotal = sum(scale(data))"),
    (["step:report", "prev:train"], "print('total', total)\nresult = total"),
    (["pipeline-metrics"], "result"),
]


def test_a_failed_step_reads_well_and_a_rerun_after_the_fix_reuses_what_did_not_change(tmp_path):
    notebook = tmp_path / "flow.ipynb"
    nbformat.write(build_notebook(FLOW), notebook)
    script = _convert(notebook)
    failed = _local(script)
    assert failed.returncode == 1, failed.stdout
    output = failed.stdout
    assert ("finished", "prepare") in _events(output) and ("FAILED", "train") in _events(output)
    assert ("started", "report") not in _events(output)
    assert re.search(r"FAILED    train in \d+\.\d s: notebook cell 3, line 2: ZeroDivisionError: division by zero",
                     output), output
    # the traceback starts in the user's cells: the function's cell, then the line that called it
    traceback = output[output.index("Traceback (most recent call last):"):]
    frames = re.findall(r'File "([^"]+)", line (\d+)', traceback)
    assert frames[:2] == [("<cell 3>", "2"), ("<cell 2>", "2")], traceback
    assert all(name.startswith("<cell ") for name, _ in frames), traceback
    assert "executor" not in traceback and "runpy" not in traceback
    [first] = _run_dirs(tmp_path, "flow")
    for step in ("prepare", "train"):  # every step that ran has its report, the failed one too
        assert (first / step / "report.html").is_file()
        assert f"{first.name}/{step}/report.html" in output
    assert f"the step's log: local_outputs/{first.name}/train/step.log" in output

    nb = nbformat.read(notebook, as_version=4)
    nb.cells[2].source = "DIVISOR = 2\ntotal = sum(scale(data))"
    nbformat.write(nb, notebook)
    script = _convert(notebook)
    fixed = _local(script)
    assert fixed.returncode == 0, fixed.stdout
    events = _events(fixed.stdout)
    assert ("cached", "prepare") in events and ("started", "prepare") not in events, fixed.stdout
    assert ("finished", "train") in events and ("finished", "report") in events
    assert "metric result = 22.5" in fixed.stdout
    second = _run_dirs(tmp_path, "flow")[-1]
    assert not (second / "prepare").exists()  # not executed again: its outputs are the first run's
    assert "2 steps ran, 1 reused from the cache" in fixed.stdout

    again = _local(script)
    assert again.returncode == 0
    assert {event for event, _ in _events(again.stdout)} == {"cached"}
    assert "metric result = 22.5" in again.stdout

    one = _local(script, "--step", "train")
    assert one.returncode == 0, one.stdout
    assert _events(one.stdout) == [("cached", "prepare"), ("started", "train"), ("finished", "train")]

    unknown = _local(script, "--step", "nowhere")
    assert unknown.returncode == 2 and "--step: no step 'nowhere'; steps: prepare, train, report" in unknown.stdout


def test_no_cache_runs_every_step(tmp_path):
    notebook = tmp_path / "flow.ipynb"
    nbformat.write(build_notebook([(["step:a"], "x = 1"), (["step:b"], "y = x + 1")]), notebook)
    script = _convert(notebook)
    # started from the parent folder: the paths shown lead from there to the outputs next to the script
    first = run([PYTHON, str(script), "--local"], cwd=tmp_path.parent)
    assert first.returncode == 0
    assert re.search(rf"^Outputs: {tmp_path.name}/local_outputs/flow-\S+ ", first.stdout, re.MULTILINE), first.stdout
    again = _local(script, "--no-cache")
    assert again.returncode == 0
    assert [event for event, _ in _events(again.stdout)] == ["started", "finished"] * 2, again.stdout


@pytest.mark.parametrize("mode", [[], ["--cold-start"]])
def test_a_step_killed_by_a_signal_is_named(tmp_path, mode):
    notebook = tmp_path / "crash.ipynb"
    nbformat.write(build_notebook([(["step:a"], "x = 1"),
                                   (["step:crash", "prev:a"], "import ctypes\nctypes.string_at(0)")]), notebook)
    result = _local(_convert(notebook), "--no-cache", *mode)
    assert result.returncode == 1
    assert "FAILED    crash" in result.stdout and "killed by SIGSEGV (segmentation fault)" in result.stdout


def test_verbose_streams_what_the_steps_print_without_colour_codes_off_a_terminal(tmp_path):
    notebook = tmp_path / "talk.ipynb"
    nbformat.write(build_notebook([(["step:a"], "print('hello from a')")]), notebook)
    result = _local(_convert(notebook), "--verbose", "--no-cache")
    assert result.returncode == 0
    assert "hello from a" in result.stdout and "Executing task" in result.stdout
    assert not ANSI.search(result.stdout)


@pytest.mark.parametrize("signum, mode", [(signal.SIGTERM, []), (signal.SIGINT, ["--cold-start"])])
def test_a_signal_to_the_run_stops_every_step_and_the_warm_process(tmp_path, signum, mode):
    notebook = tmp_path / "slow.ipynb"
    nbformat.write(build_notebook([(["step:a"], "x = 1"),
                                   (["step:wait", "prev:a"], "import time\ntime.sleep(120)")]), notebook)
    script = _convert(notebook)
    log = open(tmp_path / "run.out", "w+", encoding="utf-8")
    scratch = tmp_path / "scratch"  # the run's temporary folders (launcher sockets, the script's tools)
    scratch.mkdir()
    proc = subprocess.Popen([PYTHON, script.name, "--local", "--no-cache", *mode], cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, TMPDIR=str(scratch)))
    deadline = time.monotonic() + 120
    while "started   wait" not in (tmp_path / "run.out").read_text(encoding="utf-8"):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "run.out").read_text()
        time.sleep(0.2)
    time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path / "local_outputs"))  # the step is running
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 128 + signum
    output = (tmp_path / "run.out").read_text(encoding="utf-8")
    assert f"interrupted by {signal.Signals(signum).name}" in output and "its steps were stopped" in output
    time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path)) == []
    assert list(scratch.iterdir()) == []
