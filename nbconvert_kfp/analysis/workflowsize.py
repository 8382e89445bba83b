"""Workflow size: how big the Argo Workflow of a run of the compiled pipeline gets on a KFP cluster.

A KFP v2 backend turns the pipeline into one Argo ``Workflow`` object. Its spec holds every
step's component and container (command and arguments) once, as JSON strings, plus two DAG
entries per task; each step that runs adds nodes to ``status.nodes`` that copy its component,
task and container again, and the pod-spec patch that holds the command three more times. KFP
2.17's default Argo configuration puts a retry parent over every node, which doubles that. Argo
refuses a Workflow over 1 MiB: past that size it gzips ``status.nodes`` (base64), and fails when
even that does not fit; etcd refuses a Workflow over 1.5 MiB when the run is created.

This module estimates those sizes from the compiled pipeline spec (:func:`estimate_ir`) or,
during a conversion, from the generated script (:func:`estimate_script`), and says whether a run
completes on a default install. The figures are estimates for a warning, within about 10% of
the backend's: the supported size is stated in docs/cluster.md.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

#: Argo's limit on a Workflow object, and etcd's on a request, in bytes.
ARGO_LIMIT = 1024 * 1024
ETCD_LIMIT = 1536 * 1024
#: The Workflow without any task: its templates, metadata and run configuration.
WORKFLOW_BASE = 14_000
#: The driver and executor entries of one task in the root DAG template (without the task's JSON).
TASK_ENTRIES = 1_000
#: What a step's nodes hold besides the JSON they copy: names, phases, times, template references;
#: and what that costs once gzipped.
NODE_BASE = 3_000
NODE_COMPRESSED = 430
#: The executor input (artifact URIs and metadata, parameter values) per input or output.
EXECUTOR_INPUT_PER_IO = 450
#: KFP versions, by how many times a step's nodes are stored (2.17: a retry parent per node).
VERSIONS = {"KFP 2.14-2.16": 1, "KFP 2.17": 2}
#: What a second copy of a node adds once gzipped, as a share of the first (gzip finds much of it).
COPY_COMPRESSED = 0.4
GZIP_WINDOW = 32 * 1024


def _string_value(text: str) -> int:
    """Bytes of ``text`` stored as a JSON string value, as Go encodes it (``<``, ``>``, ``&`` escaped)."""
    encoded = json.dumps(text, ensure_ascii=False)
    return len(encoded.encode("utf-8")) + 5 * sum(encoded.count(c) for c in "<>&")


@dataclass
class StepCost:
    """One task of the pipeline, as the Workflow stores it: its component, task and container JSON."""

    name: str
    component: str
    task: str
    container: str
    inputs_outputs: int = 0


@dataclass
class Estimate:
    """The Workflow of one run: its size when created, and for each KFP version the peak size it
    reaches and the number of the step after which Argo refuses it (None: the run completes)."""

    steps: int
    created: int
    peak: dict[str, int] = field(default_factory=dict)
    fails_after: dict[str, int | None] = field(default_factory=dict)
    #: per KFP version, the stored size after each step (compressed status once over Argo's limit)
    stored: dict[str, list[int]] = field(default_factory=dict)
    #: per KFP version, the size at the end of the run, compressed: what the Workflow shrinks to as soon as
    #: it grows past Argo's limit (a raw size just under the limit is no risk: one byte more compresses it)
    compressed_end: dict[str, int] = field(default_factory=dict)

    @property
    def completes(self) -> bool:
        """Whether a run completes on every KFP version estimated."""
        return self.created <= ETCD_LIMIT and not any(self.fails_after.values())

    def headroom(self) -> float:
        """The smallest share of Argo's limit left free at the end of a run, over the KFP versions: of the
        size stored then, or of its compressed form when that is smaller (Argo compresses past the limit)."""
        return min((1 - min(stored[-1], self.compressed_end.get(version, stored[-1])) / ARGO_LIMIT
                    for version, stored in self.stored.items() if stored), default=1.0)

    def describe(self) -> str:
        """One line of figures."""
        versions = "; ".join(f"{version}: " + (f"refused after step {failed}" if failed else "completes")
                             + f" (peak {self.peak[version] / 1024:.0f} KiB)"
                             for version, failed in self.fails_after.items())
        return (f"{self.steps} steps, Workflow {self.created / 1024:.0f} KiB when created "
                f"({self.created / max(self.steps, 1) / 1024:.1f} KiB per step); {versions}")


def estimate(steps: list[StepCost], root: str) -> Estimate:
    """The Workflow of a run of ``steps`` (in the order they run) under ``root``, the root DAG's JSON."""
    created = WORKFLOW_BASE + _string_value(root)
    for step in steps:
        created += _string_value(step.component) + _string_value(step.container)
        created += TASK_ENTRIES + _string_value(step.task)
    result = Estimate(len(steps), created)
    for version, copies in VERSIONS.items():
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        raw = compressed = 0

        def add(text: str, raw_bytes: int, copies: int) -> None:
            nonlocal raw, compressed
            raw += raw_bytes * copies
            data = text.encode("utf-8")
            chunk = len(compressor.compress(data)) + len(compressor.flush(zlib.Z_SYNC_FLUSH))
            # gzip finds a retry parent's copy only within its 32 KiB window
            repeat = COPY_COMPRESSED if len(data) < GZIP_WINDOW else 1.0
            compressed += int((chunk + NODE_COMPRESSED) * (1 + repeat * (copies - 1)))

        add(root, NODE_BASE + _string_value(root), 1)  # the root DAG's driver node, never retried
        peak, failed = created + raw, None
        result.stored[version] = []
        for number, step in enumerate(steps, 1):
            patch = step.container + "," * (EXECUTOR_INPUT_PER_IO * step.inputs_outputs)
            add(step.component + step.task + step.container + patch * 3,
                NODE_BASE + _string_value(step.component) + _string_value(step.task)
                + _string_value(step.container) + 3 * _string_value(patch), copies)
            stored = created + raw if created + raw <= ARGO_LIMIT else created + compressed * 4 // 3
            result.stored[version].append(stored)
            peak = max(peak, stored)
            if stored > ARGO_LIMIT and failed is None:
                failed = number
        result.peak[version] = peak
        result.fails_after[version] = failed
        result.compressed_end[version] = created + compressed * 4 // 3
    return result


def _compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def estimate_ir(spec: dict) -> Estimate:
    """Estimate from a compiled pipeline spec (the first document of the IR YAML)."""
    tasks = spec["root"]["dag"]["tasks"]
    steps = []
    for name in _run_order(tasks):
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"].get(component.get("executorLabel", ""), {})
        io = sum(len(component.get(side, {}).get(kind, {})) for side in ("inputDefinitions", "outputDefinitions")
                 for kind in ("artifacts", "parameters"))
        steps.append(StepCost(name, _compact(component), _compact(task), _compact(executor.get("container", {})), io))
    return estimate(steps, _compact(spec["root"]))


def _run_order(tasks: dict) -> list[str]:
    order: list[str] = []
    pending = sorted(tasks)
    while pending:
        ready = [n for n in pending if set(tasks[n].get("dependentTasks", [])) <= set(order)] or pending[:1]
        order.append(ready[0])
        pending.remove(ready[0])
    return order


#: What a component's command holds besides its function's source (install lines, kfp's program and imports): bytes.
_COMMAND_BASE = 590
#: Extra bytes of a task in the root DAG per input, and of a component per input or output.
_TASK_BASE, _TASK_PER_INPUT = 160, 130
_COMPONENT_BASE, _COMPONENT_PER_IO = 60, 95


def estimate_components(components: list[tuple[str, str, str, list[str], int]]) -> Estimate:
    """Estimate during a conversion, before kfp compiles anything: ``components`` lists each component as
    ``(task name, function name, function source, requirements, number of task inputs)``, in run order."""
    steps = []
    for task_name, function, source, requirements, inputs in components:
        signature = source.split("):", 1)[0]
        io = signature.count("Input[") + signature.count("Output[") + sum(
            signature.count(f": {kind}") for kind in ("int", "float", "str", "bool", "list", "dict"))
        command = "#" * (_COMMAND_BASE + sum(len(r) + 3 for r in requirements)) + source
        container = _compact({"args": ["--executor_input", "{{$}}", "--function_to_execute", function],
                              "command": [command], "image": "python:3.11"})
        steps.append(StepCost(task_name, "#" * (_COMPONENT_BASE + _COMPONENT_PER_IO * io),
                              "#" * (_TASK_BASE + len(task_name) * 2 + _TASK_PER_INPUT * inputs), container, io))
    root = "#" * (sum(len(s.task) for s in steps) + 200)
    return estimate(steps, root)
