"""A local run of the pipeline with kfp.local: quiet progress, the cache, one step, clean stops.

kfp.local is the orchestrator. This module sets it up (runner, pipeline root, cache), puts
the launcher between it and the steps, keeps what kfp.local and the steps print out of the
way (in a run log and one ``step.log`` per step, unless the run is verbose), shows one line
per step event, stops every step on SIGINT or SIGTERM, and ends with a summary: status,
metrics, reports and the run's output folder. Uses the standard library and kfp only.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import io
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TextIO

from ..dag import Graph
from .launcher import StepLauncher
from .progress import SHARED_CODE_TASK, Progress, StepState, shown_path, signal_name, terminal_stream
from .undeclaredimport import undeclared

#: The environment variable that makes an imported script define its steps for a local run (the script's
#: ``LOCAL_RUN`` is true when it is run with ``--local`` or this variable is "1"): they install nothing.
LOCAL_RUN_ENV = "NBCONVERT_KFP_LOCAL_RUN"
#: Where kfp.local keeps its cache, under the pipeline root (kfp.local's own default).
CACHE_FOLDER = ".kfp_cache"
#: The run's log of what kfp.local printed, in the run's output folder.
RUN_LOG_NAME = "local-run.log"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CACHE_HIT = re.compile(r"^Task (\S+) cache hit \(key=([0-9a-f]+)\)")


@dataclass
class LocalRunOptions:
    """How to run the pipeline locally (the script's ``--local`` options)."""

    arguments: dict[str, Any] = field(default_factory=dict)
    workdir: Path = Path(".")
    pipeline_root: Path | None = None
    #: kfp.local's cache folder (default: ``PIPELINE_ROOT/.kfp_cache``); tuning trials share one.
    cache_root: Path | None = None
    warm: bool = True
    cache: bool = True
    step: str | None = None
    verbose: bool = False


class Interrupted(BaseException):
    """The run received SIGINT or SIGTERM; its steps were stopped."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _AnsiFree(io.TextIOBase):
    """A text stream that drops terminal colour codes on the way to ``target``."""

    def __init__(self, target: TextIO):
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(_ANSI.sub("", text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False


class _CacheWatcher(logging.Filter):
    """Notes the steps kfp.local takes from its cache (kfp.local logs each hit with the entry's key)."""

    def __init__(self, on_hit):
        super().__init__()
        self.on_hit = on_hit

    def filter(self, record: logging.LogRecord) -> bool:
        match = _CACHE_HIT.match(_ANSI.sub("", str(record.msg)))
        if match:
            self.on_hit(match.group(1).strip("'\""), match.group(2))
        return True


def caching_supported() -> bool:
    """Whether this kfp's local runner has a cache (kfp 2.17 and later)."""
    from kfp import local

    return "enable_caching" in inspect.signature(local.init).parameters


def single_step_pipeline(pipeline: Any, task: str) -> Any:
    """The pipeline cut down to ``task`` and the tasks it needs, with ``task``'s cache off, as a component
    kfp.local runs: the needed tasks come from the cache when their inputs did not change."""
    from google.protobuf import json_format
    from kfp.components import load_component_from_text

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    tasks = spec["root"]["dag"]["tasks"]
    needed, todo = set(), [task]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo.extend(tasks[name].get("dependentTasks", []))
    for name in list(tasks):
        if name not in needed:
            del tasks[name]
    tasks[task]["cachingOptions"] = {}
    used = {t["componentRef"]["name"] for t in tasks.values()}
    spec["components"] = {n: c for n, c in spec.get("components", {}).items() if n in used}
    spec["root"].pop("outputDefinitions", None)
    spec["root"]["dag"].pop("outputs", None)
    return load_component_from_text(json.dumps(spec))  # JSON is YAML


class LocalRun:
    """One local run of a generated script's pipeline."""

    def __init__(self, script: Mapping[str, Any], options: LocalRunOptions, stdout: TextIO | None = None,
                 stderr: TextIO | None = None, launcher: StepLauncher | None = None):
        self.script = script
        #: a launcher already started, shared by several runs (tuning trials); None: the run starts its own
        self.launcher = launcher
        self.options = options
        self.name = script["PIPELINE_NAME"]
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        graph = Graph.from_pipeline(script["pipeline"])
        self.tasks = {graph.tasks[step]: step for step in graph.steps}
        #: task name -> the names of the step's report and metrics outputs
        self.graph = {graph.tasks[step]: graph.outputs.get(step, {}) for step in graph.steps}
        self.base = Path.cwd()  # where the user started the run: paths are shown relative to it
        self.progress = Progress({SHARED_CODE_TASK: "shared code", **self.tasks}, self.stdout, self.base)
        self.pipeline_root = Path(".")
        self.cache_root = Path(".")
        #: The metrics the run logged (read from the steps' outputs once it succeeded): name -> value.
        self.metrics: dict[str, Any] = {}
        #: The run's output folder, once it ended.
        self.run_dir: Path | None = None

    def _say(self, text: str = "", error: bool = False) -> None:
        stream = self.stderr if error else self.stdout
        stream.write(text + "\n")
        stream.flush()

    def _cache_hit(self, task: str, key_prefix: str) -> None:
        entries = sorted(self.cache_root.glob(f"{key_prefix}*.json")) if key_prefix else []
        task_dir = None
        if entries:
            try:
                outputs = json.loads(entries[0].read_text(encoding="utf-8"))
            except (OSError, ValueError):
                outputs = {}
            uris = [v.get("uri") for v in outputs.values() if isinstance(v, dict) and v.get("uri")]
            task_dir = Path(uris[0]).parent if uris else None
        self.progress.cached(task, task_dir)

    def run(self) -> int:
        """Run the pipeline; return the exit status (0 success, 1 failure, 2 usage, 128+N on signal N)."""
        from kfp import local

        options = self.options
        if not self.script["LOCAL_RUN"]:
            self._say(f"A local run needs the script's steps defined for it: run it as 'python SCRIPT --local', "
                      f"or set {LOCAL_RUN_ENV}=1 before importing it.", error=True)
            return 2
        pipeline = self.script["pipeline"]
        names = {step: task for task, step in self.tasks.items()}
        if options.step is not None and options.step not in names:
            self._say(f"--step: no step {options.step!r}; steps: {', '.join(names)}", error=True)
            return 2
        # kfp.local warns once per task about settings it ignores; they are listed once below.
        warnings.filterwarnings("ignore", message=r".*have no effect in the current local runner")
        workdir = options.workdir.resolve()
        self.pipeline_root = (options.pipeline_root or workdir / "local_outputs").resolve()
        self.cache_root = (options.cache_root or self.pipeline_root / CACHE_FOLDER).resolve()
        os.chdir(workdir)
        cache = options.cache and caching_supported()
        if options.cache and not cache:
            self._say("note: this kfp has no local cache (kfp 2.17 and later have one): every step runs")
        if self.script["LOCAL_IGNORED"]:
            self._say("kfp.local does not apply these settings (they apply on a KFP cluster):")
            for line in self.script["LOCAL_IGNORED"]:
                self._say(f"  {line}")
        if options.step is not None:
            pipeline = single_step_pipeline(pipeline, names[options.step])
            self._say(f"Running step {options.step!r} of pipeline {self.name!r} locally, with the steps it "
                      f"needs{' from the cache where they did not change' if cache else ''}")
        else:
            self._say(f"Running pipeline {self.name!r} locally ({len(self.tasks)} steps"
                      f"{', cached steps reused' if cache else ', no cache'})")
        earlier = set(self.pipeline_root.glob(f"{self.name}-*")) if self.pipeline_root.is_dir() else set()
        settings: dict[str, Any] = {"enable_caching": cache} if caching_supported() else {}
        if cache and options.cache_root is not None:
            settings["cache_root"] = str(self.cache_root)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(self.pipeline_root), **settings)
        started = time.monotonic()
        self.pipeline_root.mkdir(parents=True, exist_ok=True)
        log_fd, log_name = tempfile.mkstemp(prefix=".local-run-", suffix=".log", dir=self.pipeline_root)
        outcome, error = self._execute(pipeline, log_fd)
        seconds = time.monotonic() - started
        run_dir = self.run_dir = self._run_dir(earlier)
        run_log = run_dir / RUN_LOG_NAME
        shutil.move(log_name, run_log)
        return self._summary(outcome, error, seconds, run_dir, run_log)

    def _execute(self, pipeline: Any, log_fd: int) -> tuple[str, BaseException | None]:
        """Run the pipeline with the launcher in place and the output where it belongs; return
        ``("succeeded" | "failed" | "interrupted", the error)``."""
        verbose = self.options.verbose
        saved_streams = sys.stdout, sys.stderr
        root = logging.getLogger()
        saved_level, saved_handlers = root.level, root.handlers[:]
        watcher = _CacheWatcher(self._cache_hit)
        log = open(log_fd, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
        if verbose:
            sys.stdout = saved_streams[0] if terminal_stream(saved_streams[0]) else _AnsiFree(saved_streams[0])
        else:
            sys.stdout = sys.stderr = log
        # kfp.local logs cache hits at INFO outside its own logging set-up: let them through to the log.
        handler = logging.StreamHandler(sys.stdout)
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        root.addFilter(watcher)
        if self.launcher is not None:
            launcher = self.launcher
            launcher.on_event = self.progress.event
        else:
            launcher = StepLauncher(self.script["PRELOAD_IMPORTS"], warm=self.options.warm, verbose=verbose,
                                    on_event=self.progress.event)

        def stop(signum: int, frame: Any) -> None:
            launcher.terminate()
            raise Interrupted(signum)

        handlers = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[signum] = signal.signal(signum, stop)
            except ValueError:  # not the main thread: leave signals alone
                pass
        try:
            with contextlib.nullcontext(launcher) if self.launcher is not None else launcher:
                try:
                    pipeline(**self.options.arguments)
                finally:
                    launcher.settle()  # the steps' last events, before the summary reads the steps
            return "succeeded", None
        except Interrupted as interrupted:
            return "interrupted", interrupted
        except RuntimeError as err:
            return "failed", err
        finally:
            for signum, previous in handlers.items():
                signal.signal(signum, previous)
            root.removeFilter(watcher)
            root.handlers = saved_handlers
            root.setLevel(saved_level)
            sys.stdout, sys.stderr = saved_streams
            log.close()

    def _run_dir(self, earlier: set[Path]) -> Path:
        """The output folder kfp.local made for this run (made here when every step came from the cache)."""
        runs = sorted(set(self.pipeline_root.glob(f"{self.name}-*")) - earlier, key=lambda p: p.stat().st_mtime)
        if runs:
            return runs[-1]
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S-%f")
        run_dir = self.pipeline_root / f"{self.name}-{stamp}"
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _summary(self, outcome: str, error: BaseException | None, seconds: float, run_dir: Path,
                 run_log: Path) -> int:
        progress = self.progress
        ran = progress.count("finished") + progress.count("failed")
        cached = progress.count("cached")
        counts = f"{ran} step{'s' if ran != 1 else ''} ran" + (f", {cached} reused from the cache" if cached else "")
        reports = self._reports()
        if outcome == "succeeded":
            self._say(f"Pipeline {self.name!r} succeeded in {seconds:.1f} s ({counts})")
            for step in progress.steps.values():
                for metric, value in self._metrics(step).items():
                    self.metrics[metric] = value
                    self._say(f"  metric {metric} = {value}")
        elif outcome == "interrupted":
            signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
            self._say(f"Pipeline {self.name!r} interrupted by {signal_name(signum)} after {seconds:.1f} s: "
                      f"its steps were stopped", error=True)
        else:
            self._failure_summary(error)
        self._undeclared_imports()
        if reports:
            self._say("Step reports (open in a browser):")
            width = max(len(step.name) for step, _ in reports)
            for step, page in reports:
                self._say(f"  {step.name:<{width}}  {shown_path(page, self.base)}")
        self._say(f"Outputs: {shown_path(run_dir, self.base)} (kfp.local's log: {RUN_LOG_NAME})")
        if outcome == "interrupted":
            return 128 + (error.signum if isinstance(error, Interrupted) else signal.SIGINT)
        return 0 if outcome == "succeeded" else 1

    def _undeclared_imports(self) -> None:
        """One line per module a step imported here that its cluster installs lack (a library's lazy import)."""
        installs = self.script.get("STEP_INSTALLS")
        if not isinstance(installs, dict):
            return  # the steps' image has everything, or an older script
        pins = self.script.get("PINS") or {}
        for step in self.progress.steps.values():
            imported = step.outcome.get("imported")
            if step.quiet or not isinstance(imported, dict) or step.name not in installs:
                continue
            for found in undeclared(step.name, imported, [pins.get(r, r) for r in installs[step.name]]):
                self._say(f"note: {found.line()}")

    def _failure_summary(self, error: BaseException | None) -> None:
        failed = self.progress.failed()
        if not failed:
            message = _ANSI.sub("", str(error)) if error else "unknown error"
            self._say(f"Pipeline {self.name!r} failed: {message}", error=True)
            return
        step = failed[0]
        self._say(f"Pipeline {self.name!r} failed: step {step.name!r} failed", error=True)
        trace = step.outcome.get("traceback")
        if trace:
            self._say(trace.rstrip("\n"), error=True)
        else:
            self._say(f"  {step.failure}", error=True)
        if step.log is not None:
            self._say(f"  the step's log: {shown_path(step.log, self.base)}", error=True)

    def _metrics(self, step: StepState) -> dict[str, Any]:
        metrics = self.graph.get(step.task, {}).get("metrics")
        if not metrics or step.task_dir is None or step.state not in ("finished", "cached"):
            return {}
        return task_outputs(step.task_dir).get(metrics, {})

    def _reports(self) -> list[tuple[StepState, Path]]:
        """Each step's report as an ``.html`` file next to its artifact, in pipeline order."""
        pages = []
        for step in self.progress.steps.values():
            name = self.graph.get(step.task, {}).get("report")
            if not name or step.task_dir is None:
                continue
            report = step.task_dir / name
            if not report.is_file():
                continue
            page = report.with_name(report.name + ".html")
            if not page.is_file() or page.stat().st_mtime < report.stat().st_mtime:
                page.write_bytes(report.read_bytes())
            pages.append((step, page))
        return pages


def task_outputs(task_dir: Path) -> dict[str, dict[str, Any]]:
    """Output artifact name -> its metadata, from the executor output a kfp.local task wrote."""
    try:
        data = json.loads((task_dir / "executor_output.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {name: (entry.get("artifacts") or [{}])[0].get("metadata") or {}
            for name, entry in (data.get("artifacts") or {}).items()}


def run_local(script: Mapping[str, Any], options: LocalRunOptions) -> int:
    """Run the pipeline with kfp.local in this Python environment; return the exit status."""
    return LocalRun(script, options).run()
