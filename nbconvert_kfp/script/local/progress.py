"""Progress of a local run: one line per step event as it happens, then the run's summary.

Step events come from the launcher (see :mod:`nbconvert_kfp.script.local.launcher`) and from
kfp.local's cache; :class:`Progress` keeps a :class:`StepState` per task and prints plain
lines (no colour codes) to the stream it is given. Uses only the standard library.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

#: The task kfp gives the step that packs the shared code, and the name the run shows for it.
SHARED_CODE_TASK = "shared-code"
SHARED_CODE_LABEL = "shared code"


@dataclass
class StepState:
    """What the run knows of one step: ``state`` is pending, running, finished, failed or cached."""

    name: str
    task: str
    state: str = "pending"
    quiet: bool = False
    started: float = 0.0
    seconds: float | None = None
    task_dir: Path | None = None
    log: Path | None = None
    code: int | None = None
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def failure(self) -> str:
        """One line saying where and how the step failed."""
        if self.code is not None and self.code < 0:
            return f"killed by {signal_name(-self.code)}"
        where = self.outcome.get("where")
        line = self.outcome.get("line")
        error = self.outcome.get("error")
        place = f"{where}{f', line {line}' if line else ''}: " if where else ""
        if error:
            return f"{place}{error}"
        return f"exited with status {self.code}" if self.code else "failed"


def signal_name(number: int) -> str:
    """``SIGSEGV (segmentation fault)`` for 11, as far as the platform names it."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    description = signal.strsignal(number) if hasattr(signal, "strsignal") else None
    return f"{name} ({description.lower()})" if description else name


def shown_path(path: Path | str, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (default: the working directory) when it lies under it, else absolute."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to((base or Path.cwd()).resolve()))
    except ValueError:
        return str(path)


class Progress:
    """Prints a local run's step events and keeps each step's state.

    ``steps`` maps kfp task names to the notebook's step names, in pipeline order; paths are shown
    relative to ``base`` (the user's working directory) when they lie under it.
    """

    def __init__(self, steps: dict[str, str], stream: TextIO, base: Path | None = None):
        self.steps = {task: StepState(name, task, quiet=task == SHARED_CODE_TASK) for task, name in steps.items()}
        self.stream = stream
        self.base = base or Path.cwd()
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def _state(self, task: str) -> StepState:
        if task not in self.steps:
            label = SHARED_CODE_LABEL if task == SHARED_CODE_TASK else task
            self.steps[task] = StepState(label, task, quiet=task == SHARED_CODE_TASK)
        return self.steps[task]

    def event(self, event: dict[str, Any]) -> None:
        """Take a launcher event (``start`` or ``end`` of a step) and print its line."""
        task_dir = Path(event.get("task_dir") or ".")
        step = self._state(task_dir.name)
        step.task_dir, step.log = task_dir, Path(event["log"]) if event.get("log") else None
        if event.get("kind") == "start":
            step.state, step.started = "running", time.monotonic()
            if not step.quiet:
                self._print(f"  started   {step.name}")
            return
        step.code = int(event.get("code", 1))
        step.outcome = event.get("outcome") or {}
        step.seconds = event.get("seconds", time.monotonic() - step.started if step.started else None)
        took = f" in {step.seconds:.1f} s" if step.seconds is not None else ""
        if step.code == 0:
            step.state = "finished"
            saved = step.outcome.get("saved") or []
            if not step.quiet:
                self._print(f"  finished  {step.name}{took}" + (f"; saved {', '.join(saved)}" if saved else ""))
        else:
            step.state = "failed"
            self._print(f"  FAILED    {step.name}{took}: {step.failure}")
            if step.log is not None:
                self._print(f"            log: {shown_path(step.log, self.base)}")

    def cached(self, task: str, task_dir: Path | None) -> None:
        """A step kfp.local took from its cache: its outputs are those of an earlier run."""
        step = self._state(task)
        step.state, step.task_dir = "cached", task_dir
        if not step.quiet:
            self._print(f"  cached    {step.name}")

    def failed(self) -> list[StepState]:
        """The steps that failed, in pipeline order."""
        return [step for step in self.steps.values() if step.state == "failed"]

    def count(self, state: str) -> int:
        """How many of the notebook's steps are in ``state``."""
        return sum(1 for step in self.steps.values() if step.state == state and not step.quiet)


def terminal_stream(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (colour codes are for terminals only)."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
