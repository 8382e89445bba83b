"""Local hyperparameter tuning: the search's trials as local runs of the generated script, several at a time.

:func:`tune` runs each trial as a local run of the generated script with the trial's ``-p NAME VALUE``
pairs, in trial workers (``python SCRIPT --local --trial-worker FD``, see ``trialworker``): one per
parallel slot, each running its trials one after another with one warm launcher, so a trial costs its
steps rather than an interpreter and kfp's import. Each trial has its own output folder and log; all
share one kfp.local cache, so the steps upstream of the searched parameters run once. The trial's
objective is a metric its run logged. The tuning stops at ``maxTrialCount`` trials,
when ``maxFailedTrialCount`` trials have failed, or when a trial reaches the objective's goal (as Katib
does). It prints one line per trial event, then the table of trials and the best one. The generated
script's ``--tune`` calls it; so can any other command, given the script's path. Standard library only.
"""

from __future__ import annotations

import ast
import json
import os
import random
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, TextIO

from . import search as algorithms
from ..local.launcher import die_with_parent
from ..local.localrun import CACHE_FOLDER
from .searchspace import Search
from ..exceptions import ScriptError

#: What :func:`tune` reads from the generated script (module-level literals; nothing is executed).
SCRIPT_CONSTANTS = ("PIPELINE_NAME", "PARAMETER_TYPES", "TUNING")
#: How often a running trial is looked at, in seconds.
POLL = 0.1


class TuningError(ScriptError):
    """The tuning cannot start; the message is one line that says why and what to do."""


@dataclass
class Trial:
    """One trial: its parameter values, and how it went."""

    number: int
    assignment: dict[str, str]
    folder: Path
    status: str = "running"
    objective: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None
    message: str = ""


@dataclass
class Tuning:
    """A finished tuning run: the search, its trials in the order they started, and the best trial."""

    search: Search
    trials: list[Trial]
    folder: Path
    seed: int
    stopped: str
    #: the signal that stopped the tuning (SIGINT, SIGTERM, SIGHUP), or None
    signal: int | None = None

    def best(self) -> Trial | None:
        """The succeeded trial with the best objective (the earliest among equals)."""
        best: Trial | None = None
        for trial in self.trials:
            if trial.objective is None:
                continue
            if best is None or self.search.objective.better(trial.objective, best.objective or 0.0):
                best = trial
        return best

    def to_data(self) -> dict[str, Any]:
        """The trials as plain data (written to ``trials.json`` in the tuning folder)."""
        best = self.best()
        return {"objective": {"metric": self.search.objective.metric, "type": self.search.objective.type},
                "algorithm": self.search.algorithm, "seed": self.seed, "stopped": self.stopped,
                "best": best.number if best else None,
                "trials": [{"trial": t.number, "parameters": t.assignment, "status": t.status,
                            "objective": t.objective, "metrics": t.metrics, "seconds": t.seconds,
                            "folder": str(t.folder), "message": t.message} for t in self.trials]}


def _constant(node: ast.expr) -> Any:
    """A literal, where a bare name (``int`` in PARAMETER_TYPES) reads as its text."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Dict):
        return {_constant(k): _constant(v) for k, v in zip(node.keys, node.values) if k is not None}
    return ast.literal_eval(node)


def script_constants(script: Path) -> dict[str, Any]:
    """The constants of a generated script that tuning needs, read from its source without running it."""
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"), str(script))
    except (OSError, SyntaxError, ValueError) as err:
        raise TuningError(f"cannot read the pipeline script {script}: {err}") from None
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in SCRIPT_CONSTANTS:
                found[name] = _constant(node.value)
    missing = [name for name in SCRIPT_CONSTANTS if name not in found]
    if missing:
        raise TuningError(f"{script} is not a pipeline script of this nbconvert-kfp version (it defines no "
                          f"{', '.join(missing)}); convert the notebook again")
    return found


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    return next((line for line in reversed(lines) if line), "")


def _values(assignment: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in assignment.items())


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} s"


def table(tuning: Tuning) -> list[str]:
    """The trials as text table rows: number, parameter values, objective, status, duration."""
    names = [p.name for p in tuning.search.parameters]
    metric = tuning.search.objective.metric
    rows = [["trial", *names, metric, "status", "duration"]]
    for trial in tuning.trials:
        objective = "" if trial.objective is None else f"{trial.objective:.6g}"
        rows.append([str(trial.number), *(trial.assignment[n] for n in names), objective, trial.status,
                     _seconds(trial.seconds)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


@dataclass
class _Worker:
    """A trial worker process (``trialworker``): its result pipe, and the trial it runs (None: idle)."""

    process: subprocess.Popen
    results: int
    log: Path
    buffer: bytes = b""
    trial: Trial | None = None
    started: float = 0.0


def _start_worker(python: str, script: Path, workdir: Path, log: Path, cold_start: bool) -> _Worker:
    """Start a trial worker: the script with ``--local --trial-worker FD``, in a process group of its own."""
    read, write = os.pipe()
    command = [python, str(script), "--local", "--trial-worker", str(write), "--workdir", str(workdir)]
    if cold_start:
        command.append("--cold-start")
    try:
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                                       pass_fds=(write,), start_new_session=True,
                                       preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    return _Worker(process, read, log)


def _request(trial: Trial, folder: Path, fixed: Mapping[str, str], search: Search) -> dict[str, Any]:
    """What a worker is told to run for ``trial``: every ``-p`` pair, its folders and its log."""
    arguments = {p.name: p.argument for p in search.parameters}
    pairs = [[name, text] for name, text in fixed.items()]
    pairs += [[arguments[name], value] for name, value in trial.assignment.items()]
    return {"number": trial.number, "parameters": pairs, "pipeline_root": str(trial.folder / "outputs"),
            "cache_root": str(folder / CACHE_FOLDER), "log": str(trial.folder / "log.txt")}


def _read_results(worker: _Worker) -> list[dict[str, Any]]:
    """The result lines a worker has written so far (none when it has not finished a line)."""
    try:
        data = os.read(worker.results, 1 << 16)
    except BlockingIOError:
        return []
    worker.buffer += data
    *lines, worker.buffer = worker.buffer.split(b"\n")
    results = []
    for line in lines:
        try:
            results.append(json.loads(line))
        except ValueError:
            continue
    return results


#: Signals that stop a tuning run: its trials are stopped and the table of what ran is still shown.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _stop(process: subprocess.Popen) -> None:
    """End a trial and everything it started (it leads a process group of its own)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        process.wait()
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def tune(script: str | Path, *, parallel: int | None = None, seed: int | None = None,
         max_trials: int | None = None, parameters: Mapping[str, str] | None = None,
         workdir: str | Path | None = None, pipeline_root: str | Path | None = None, cold_start: bool = False,
         python: str | None = None, out: TextIO | None = None) -> Tuning:
    """Run the script's hyperparameter search on this machine and return the trials.

    ``parameters`` sets other pipeline parameters for every trial (``-p`` names and texts); ``parallel``
    defaults to the search's ``parallelTrialCount``, at most the number of CPUs; ``seed`` (default: the
    algorithm's ``random_state``, else a random one, printed) makes random choices reproducible;
    ``max_trials`` lowers ``maxTrialCount``. Trials keep their outputs and logs under ``pipeline_root``
    (default: ``WORKDIR/local_outputs``), in a folder of their own.
    """
    out = out or sys.stdout
    script = Path(script).resolve()
    constants = script_constants(script)
    if not constants["TUNING"]:
        raise TuningError("the notebook has no hyperparameter search: give it kubeflow_notebook.katib_metadata "
                          "(parameters, objective, algorithm) and convert it again")
    search = Search.from_data(constants["TUNING"])
    pipeline, types = constants["PIPELINE_NAME"], constants["PARAMETER_TYPES"]
    fixed = dict(parameters or {})
    searched = {p.argument for p in search.parameters}
    for name in fixed:
        if name in searched:
            raise TuningError(f"parameter {name!r} is searched; -p sets only the parameters the search leaves alone")
        if name not in types:
            raise TuningError(f"unknown parameter {name!r}; known: {', '.join(types) or 'none'}")
    if seed is None and search.setting("random_state"):
        try:
            seed = int(search.setting("random_state") or "")
        except ValueError:
            seed = None
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    limit = search.max_trials if max_trials is None else max(1, min(max_trials, search.max_trials))
    if parallel is None:
        parallel = min(search.parallel, os.cpu_count() or 1)
    parallel = max(1, min(parallel, limit))
    try:
        sampler = algorithms.sampler(search, seed)
    except algorithms.SearchUnavailable as err:
        raise TuningError(str(err)) from None
    workdir = Path(workdir or script.parent).resolve()
    root = Path(pipeline_root or workdir / "local_outputs").resolve()
    folder = root / f"tune-{pipeline}-{datetime.now():%Y%m%d-%H%M%S}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = root / f"tune-{pipeline}-{datetime.now():%Y%m%d-%H%M%S}-{suffix}"
    folder.mkdir(parents=True)
    objective = search.objective

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"Tuning pipeline {pipeline!r}: {search.algorithm} search over {', '.join(p.name for p in search.parameters)}"
        f", up to {limit} trials, {parallel} at a time, seed {seed}; {objective.type} {objective.metric}"
        + (f" (goal {objective.goal:g})" if objective.goal is not None else ""))
    say(f"Trial outputs and logs: {folder}")
    trials: list[Trial] = []
    workers: list[_Worker] = []
    failed = 0
    stopped = ""
    exhausted = False
    # Ctrl-C is noted and acted on between polls: a KeyboardInterrupt raised inside subprocess's own
    # bookkeeping (Popen.poll holds a lock) could leave a trial that can no longer be waited for.
    interrupted = threading.Event()
    received: list[int] = []
    previous: dict[int, Any] = {}

    def note(signum: int, frame: Any) -> None:
        received.append(signum)
        interrupted.set()

    def finish(worker: _Worker, result: Mapping[str, Any] | None) -> None:
        nonlocal failed, stopped
        trial, worker.trial = worker.trial, None
        assert trial is not None
        trial.seconds = time.monotonic() - worker.started
        if result is None:  # the worker ended before it said how the trial went
            code = worker.process.wait()
            trial.status = "failed"
            trial.message = (f"exit status {code}: "
                             f"{_last_line(trial.folder / 'log.txt') or _last_line(worker.log)}")
        else:
            trial.metrics = {name: float(value) for name, value in (result.get("metrics") or {}).items()}
            if result.get("status") != 0:
                trial.status = "failed"
                trial.message = (f"exit status {result.get('status')}: "
                                 f"{result.get('message') or _last_line(trial.folder / 'log.txt')}")
            elif objective.variable not in trial.metrics:
                trial.status = "failed"
                trial.message = f"the run logged no metric {objective.variable!r}"
            else:
                trial.status = "succeeded"
                trial.objective = trial.metrics[objective.variable]
        sampler.tell(trial.assignment, trial.objective)
        if trial.objective is not None:
            say(f"trial {trial.number}/{limit} succeeded in {_seconds(trial.seconds)}: "
                f"{objective.metric} = {trial.objective:.6g}")
            if objective.reached(trial.objective) and not stopped:
                stopped = f"trial {trial.number} reached the goal {objective.goal:g}"
        else:
            failed += 1
            say(f"trial {trial.number}/{limit} failed in {_seconds(trial.seconds)}: {trial.message} "
                f"(log: {trial.folder / 'log.txt'})")
            if failed >= search.max_failed and not stopped:
                stopped = f"{failed} trials failed (maxFailedTrialCount {search.max_failed})"

    def idle_worker() -> _Worker | None:
        for worker in workers:
            if worker.trial is None and worker.process.poll() is None:
                return worker
        if sum(worker.process.poll() is None for worker in workers) >= parallel:
            return None
        worker = _start_worker(python or sys.executable, script, workdir, folder / f"worker-{len(workers) + 1}.log",
                               cold_start)
        workers.append(worker)
        return worker

    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, note) for signum in STOP_SIGNALS}
    try:
        while not interrupted.is_set():
            while not stopped and not exhausted and len(trials) < limit:
                worker = idle_worker()
                if worker is None:
                    break
                assignment = sampler.ask()
                if assignment is None:
                    exhausted = True
                    break
                trial = Trial(len(trials) + 1, assignment, folder / f"trial-{len(trials) + 1:03d}")
                trial.folder.mkdir()
                trials.append(trial)
                worker.trial, worker.started = trial, time.monotonic()
                say(f"trial {trial.number}/{limit} started: {_values(assignment)}")
                try:
                    worker.process.stdin.write((json.dumps(_request(trial, folder, fixed, search)) + "\n").encode())
                    worker.process.stdin.flush()
                except OSError:  # the worker is gone; its exit status says why
                    finish(worker, None)
            busy = [worker for worker in workers if worker.trial is not None]
            if not busy:
                break
            try:
                ready, _, _ = select.select([worker.results for worker in busy], [], [], POLL)
            except InterruptedError:
                continue
            for worker in busy:
                results = _read_results(worker) if worker.results in ready else []
                for result in results:
                    if worker.trial is not None and result.get("number") == worker.trial.number:
                        finish(worker, result)
                if worker.trial is not None and worker.process.poll() is not None and not results:
                    results = _read_results(worker) if select.select([worker.results], [], [], 0)[0] else []
                    finish(worker, results[-1] if results else None)
    except KeyboardInterrupt:  # a SIGINT handler could not be installed (not the main thread)
        interrupted.set()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if interrupted.is_set():
            stopped = "interrupted"
            for worker in workers:
                _stop(worker.process)
                if worker.trial is not None:
                    worker.trial.status, worker.trial.seconds = "stopped", time.monotonic() - worker.started
                    sampler.tell(worker.trial.assignment, None)
                    worker.trial = None
        for worker in workers:  # the end of its input ends an idle worker
            try:
                worker.process.stdin.close()
            except OSError:
                pass
        for worker in workers:
            try:
                worker.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _stop(worker.process)
            os.close(worker.results)
    if not stopped:
        stopped = "all grid points ran" if exhausted else f"{len(trials)} trials ran"
    tuning = Tuning(search, trials, folder, seed, stopped, received[0] if received else None)
    (folder / "trials.json").write_text(json.dumps(tuning.to_data(), indent=2), encoding="utf-8")
    return tuning


def report(tuning: Tuning, script: str | Path, out: TextIO | None = None) -> None:
    """Print the table of trials and the best trial, with the command that runs the pipeline with it."""
    out = out or sys.stdout
    succeeded = sum(trial.objective is not None for trial in tuning.trials)
    print(f"\nTuning finished: {tuning.stopped}; {succeeded} of {len(tuning.trials)} trials succeeded.", file=out)
    for line in table(tuning):
        print(f"  {line}", file=out)
    best = tuning.best()
    if best is None:
        print("No trial succeeded; the trial logs say why.", file=out)
        return
    objective = tuning.search.objective
    print(f"Best trial {best.number}: {objective.metric} = {best.objective:.6g} ({objective.type}) with "
          f"{_values(best.assignment)}", file=out)
    arguments = {p.name: p.argument for p in tuning.search.parameters}
    options = " ".join(f"-p {shlex.quote(arguments[name])} {shlex.quote(value)}"
                       for name, value in best.assignment.items())
    print(f"  python {shlex.quote(Path(script).name)} --local {options}", file=out)
    print(f"Trials: {tuning.folder / 'trials.json'}", file=out, flush=True)
