"""Monitor: a KFP run seen from outside: its state, each step's state and duration, its metrics.

``follow`` polls the run through kfp.Client (``GET /apis/v2beta1/runs/{id}``) and prints one
line for each change of the run's or a step's state, until the run ends or a time limit
passes. The steps are the tasks of the run's pipeline spec (its ``root`` DAG); the run's
``run_details.task_details`` give their states, times, pods and output artifacts. Metrics
come from ML Metadata (``metadata``). The generated script (``--wait``) and the
``nbconvert-kfp`` command use this module. Standard library and kfp only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

#: States in which a run or a step changes no more.
FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED", "ERROR")
#: The exit status of a command that waited for a run, by how the run ended (docs/command.md lists them).
EXIT_STATUS = {"SUCCEEDED": 0, "SKIPPED": 0, "FAILED": 3, "CANCELED": 4, "ERROR": 5, "TIMEOUT": 6}
#: Exit status when the command could not do its job (conversion, upload, the KFP API failing).
EXIT_ERROR = 1
#: Consecutive failed polls after which following gives up.
MAX_POLL_FAILURES = 5


@dataclass
class StepSpec:
    """A step of the pipeline: its name as KFP shows it, its task key, its Metrics outputs."""

    name: str
    task: str
    metrics: list[str] = field(default_factory=list)


@dataclass
class StepState:
    """What the KFP API says of a step in a run."""

    name: str
    state: str
    start: datetime | None = None
    end: datetime | None = None
    pods: list[str] = field(default_factory=list)
    error: str | None = None
    outputs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def log_pods(self) -> list[str]:
        """The pods whose logs are the step's own: the executor's (``-impl-``) when known, else all."""
        executors = [pod for pod in self.pods if "-impl-" in pod]
        return executors or self.pods


def pipeline_document(spec: dict | None) -> dict:
    """The pipeline spec itself, from what the API returns (which wraps it when it has a platform spec)."""
    spec = spec or {}
    if not isinstance(spec, dict):
        return spec
    return spec.get("pipeline_spec", spec) if "root" not in spec else spec


def _mapping(value: Any, where: str) -> dict:
    """``value`` when it is a JSON object (or absent: an empty one); else ``MalformedAnswer`` naming ``where``."""
    from .deployment import MalformedAnswer

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedAnswer(f"{where} of the pipeline spec is a {type(value).__name__}, not an object")
    return value


def steps_of(spec: dict | None) -> list[StepSpec]:
    """The steps of a pipeline spec's root DAG, upstream steps first; ``deployment.MalformedAnswer``
    names the part of a spec of the wrong shape."""
    spec = _mapping(pipeline_document(spec), "the document")
    components = _mapping(spec.get("components"), "components")
    tasks = _mapping(_mapping(_mapping(spec.get("root"), "root").get("dag"), "root.dag").get("tasks"),
                     "root.dag.tasks")
    tasks = {str(key): _mapping(task, f"root.dag.tasks.{key}") for key, task in tasks.items()}
    needs = {}
    for key, task in tasks.items():
        dependencies = task.get("dependentTasks") or []
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            from .deployment import MalformedAnswer

            raise MalformedAnswer(f"root.dag.tasks.{key}.dependentTasks of the pipeline spec is not a list of names")
        needs[key] = set(dependencies)
    ordered, placed = [], set()
    while len(ordered) < len(tasks):
        ready = [key for key in tasks if key not in placed and needs[key] <= placed]
        if not ready:  # a cycle cannot be compiled; keep the rest in spec order
            ready = [key for key in tasks if key not in placed]
        for key in ready:
            placed.add(key)
            ordered.append(key)
    steps = []
    for key in ordered:
        task = tasks[key]
        reference = _mapping(task.get("componentRef"), f"root.dag.tasks.{key}.componentRef").get("name")
        component = _mapping(components.get(reference) if isinstance(reference, str) else None,
                             f"components.{reference}")
        artifacts = _mapping(_mapping(component.get("outputDefinitions"), f"components.{reference}.outputDefinitions")
                             .get("artifacts"), f"components.{reference}.outputDefinitions.artifacts")
        metrics = [str(name) for name, definition in artifacts.items()
                   if isinstance(definition, dict) and isinstance(definition.get("artifactType"), dict)
                   and definition["artifactType"].get("schemaTitle") == "system.Metrics"]
        name = _mapping(task.get("taskInfo"), f"root.dag.tasks.{key}.taskInfo").get("name")
        steps.append(StepSpec(name if isinstance(name, str) and name else key, key, metrics))
    return steps


def printable(text: Any) -> str:
    """Text from the server as one line a terminal shows as it is: terminal control sequences removed
    (``redaction``), other characters a terminal does not print escaped."""
    from .redaction import terminal_text

    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(terminal_text(text).split()))


def state_name(value: Any) -> str:
    """A run's or step's state as KFP names it (PENDING for an unset one, UNKNOWN for one that is no name)."""
    if value is not None and not isinstance(value, str):
        return "UNKNOWN"
    return printable(value or "PENDING").replace("RUNTIME_STATE_UNSPECIFIED", "PENDING")


def error_message(error: Any) -> str | None:
    """The one-line message of a google.rpc.Status, or None."""
    message = getattr(error, "message", None) if error is not None else None
    return printable(message) or None if message else None


def aware_time(value: Any) -> datetime | None:
    """A time of the API as an aware datetime (a time without a zone is taken as UTC); None for anything else."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _created(detail: Any) -> float:
    moment = aware_time(getattr(detail, "create_time", None)) or aware_time(getattr(detail, "start_time", None))
    try:
        return moment.timestamp() if moment else 0.0
    except (OverflowError, ValueError, OSError):
        return 0.0


def _texts(values: Any) -> list[str]:
    """The non-empty strings of a list from the API (anything else in it is left out)."""
    return [value for value in values if isinstance(value, str) and value] if isinstance(values, list) else []


def step_states(run: Any, steps: list[StepSpec]) -> dict[str, StepState]:
    """Step name -> its state in ``run``, from the run's task details (tasks of other names, such as
    drivers and the root DAG, are left out; several details of one step are merged, latest first)."""
    names = {step.name for step in steps} | {step.task for step in steps}
    by_task = {step.task: step.name for step in steps}
    run_details = getattr(run, "run_details", None)
    details = getattr(run_details, "task_details", None) if run_details is not None else None
    details = [d for d in (details if isinstance(details, list) else [])
               if isinstance(getattr(d, "display_name", None), str) and d.display_name in names]
    details.sort(key=_created)
    states: dict[str, StepState] = {}
    for detail in details:  # oldest first: the latest detail's state wins
        name = by_task.get(detail.display_name, detail.display_name)
        state = states.setdefault(name, StepState(name, state_name(detail.state)))
        state.state = state_name(detail.state)
        state.start = aware_time(detail.start_time) or state.start
        state.end = aware_time(detail.end_time) or state.end
        state.error = error_message(detail.error) or state.error
        children = detail.child_tasks if isinstance(detail.child_tasks, list) else []
        for pod in _texts([detail.pod_name] + [getattr(child, "pod_name", None) for child in children]):
            if pod not in state.pods:
                state.pods.append(pod)
        outputs = detail.outputs if isinstance(detail.outputs, dict) else {}
        for output, artifacts in outputs.items():
            state.outputs.setdefault(output, [])
            state.outputs[output] += [a for a in _texts(getattr(artifacts, "artifact_ids", None))
                                      if a not in state.outputs[output]]
    return states


def duration(start: datetime | None, end: datetime | None) -> str | None:
    """``1h 2m``, ``3m 4s`` or ``5s``; None without both times."""
    start, end = aware_time(start), aware_time(end)
    if start is None or end is None:
        return None
    try:
        seconds = max(0, round((end - start).total_seconds()))
    except OverflowError:
        return None
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def step_line(state: StepState) -> str:
    """The one line that reports a step's state."""
    took = duration(state.start, state.end)
    line = f"  step {printable(state.name)}: {printable(state.state)}"
    if state.state in FINAL_STATES and took:
        line += f" ({took})"
    if state.state in ("FAILED", "ERROR") and state.error:
        line += f": {state.error}"
    return line


def get_run(kfp_client, run_id: str):
    """The run, through kfp.Client; failures are one-line DeploymentErrors."""
    from .deployment import _host, _step, _token

    from .deployment import MalformedAnswer

    with _step(f"reading run {run_id}", _host(kfp_client), _token(kfp_client)):
        run = kfp_client.get_run(run_id)
    if not (isinstance(getattr(run, "run_id", None), str) and run.run_id):
        raise MalformedAnswer(f"reading run {printable(run_id)} gave no run_id (is the host the KFP API?)")
    return run


def run_spec(kfp_client, run) -> dict:
    """The pipeline spec of a run: its own, else its pipeline version's."""
    from .deployment import _host, _step, _token

    from .deployment import MalformedAnswer

    if run.pipeline_spec:
        spec = run.pipeline_spec
    else:
        reference = run.pipeline_version_reference
        if reference is None or not reference.pipeline_version_id:
            return {}
        with _step(f"reading the pipeline version of run {printable(run.run_id)}", _host(kfp_client),
                   _token(kfp_client)):
            spec = kfp_client.get_pipeline_version(reference.pipeline_id, reference.pipeline_version_id).pipeline_spec
    if spec and not isinstance(spec, dict):
        raise MalformedAnswer(f"the pipeline spec of run {printable(run.run_id)} is a {type(spec).__name__}, "
                              "not an object")
    return spec or {}


def follow(kfp_client, run_id: str, steps: list[StepSpec], *, timeout: float | None = None, interval: float = 5.0,
           write: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic):
    """Poll the run until it ends or ``timeout`` seconds pass, writing a line per change of state.

    Returns ``(outcome, run, step states)``: the run's final state, or ``TIMEOUT``.
    """
    from .deployment import DeploymentError

    deadline = clock() + timeout if timeout else None
    seen: dict[str, str] = {}
    run_state = None
    failures = 0
    while True:
        try:
            run = get_run(kfp_client, run_id)
            failures = 0
        except DeploymentError:
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise
            sleep(interval)
            continue
        states = step_states(run, steps)
        state = state_name(run.state)
        if state != run_state and state not in FINAL_STATES:
            write(f"Run {printable(run_id)}: {printable(state)}")
            run_state = state
        for step in steps:
            current = states.get(step.name)
            if current is not None and seen.get(step.name) != current.state:
                write(step_line(current))
                seen[step.name] = current.state
        if state in FINAL_STATES:
            return state, run, states
        if deadline is not None and clock() >= deadline:
            return "TIMEOUT", run, states
        sleep(interval if deadline is None else max(0.0, min(interval, deadline - clock())))


def metrics(kfp_client, steps: list[StepSpec], states: dict[str, StepState]) -> dict[str, dict[str, float]]:
    """Step name -> {metric: value} of the steps' Metrics outputs, read from ML Metadata; raises
    ``metadata.MetadataUnavailable`` when this host does not serve it."""
    from . import metadata

    wanted: dict[int, str] = {}
    for step in steps:
        state = states.get(step.name)
        for output in step.metrics if state else []:
            for artifact_id in state.outputs.get(output, []):
                if str(artifact_id).isdigit():
                    wanted[int(artifact_id)] = step.name
    properties = metadata.artifact_properties(kfp_client, sorted(wanted))
    found: dict[str, dict[str, float]] = {}
    for artifact_id, step in wanted.items():
        for name, value in sorted((properties.get(artifact_id) or {}).items()):
            if isinstance(value, float) and name != "display_name":
                found.setdefault(step, {})[name] = value
    return found


def metric_lines(kfp_client, steps: list[StepSpec], states: dict[str, StepState]) -> list[str]:
    """The lines that list the run's metrics, or the one line that says why they cannot be read."""
    from .metadata import MetadataUnavailable

    if not any(step.metrics and step.name in states for step in steps):
        return []
    try:
        found = metrics(kfp_client, steps, states)
    except MetadataUnavailable as error:
        return [f"  metrics: not available: {error}"]
    lines = [f"  metric {printable(step)}.{printable(name)} = {value:g}" for step, values in found.items()
             for name, value in values.items()]
    return lines or ["  metrics: none recorded"]


def outcome_lines(run_id: str, outcome: str, run, states: dict[str, StepState], steps: list[StepSpec]) -> list[str]:
    """The closing line: how the run ended, how long it took, and which step failed."""
    if outcome == "TIMEOUT":
        running = [s.name for s in states.values() if s.state not in FINAL_STATES]
        return [f"Run {run_id} is still {state_name(run.state)} at the time limit"
                + (f" (running: {', '.join(running)})" if running else "") + "; it goes on in KFP"]
    took = duration(run.created_at, run.finished_at)
    line = f"Run {run_id} {outcome}" + (f" in {took}" if took and outcome == "SUCCEEDED" else
                                        f" after {took}" if took else "")
    failed = [s for s in (states.get(step.name) for step in steps) if s and s.state in ("FAILED", "ERROR")]
    if failed:
        line += ": " + ", ".join(f"step {printable(repr(s.name))} failed" for s in failed)
    elif outcome != "SUCCEEDED" and error_message(run.error):
        line += f": {error_message(run.error)}"
    return [line]


def exit_status(outcome: str) -> int:
    """The exit status for how a run ended (``EXIT_STATUS``); an unknown final state counts as ERROR."""
    return EXIT_STATUS.get(outcome, EXIT_STATUS["ERROR"])
