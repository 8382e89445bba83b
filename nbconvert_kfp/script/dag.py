"""A picture of the pipeline: its steps, the variables on each edge, its parameters.

From a :class:`Graph` (``graph(model)`` builds one from the pipeline model,
``resources["kfp"]``; ``Graph.from_pipeline(pipeline)`` reads the same from a generated
script's ``@dsl.pipeline`` function, see :func:`steps_of`) this module draws

- ``mermaid(graph)``: a Mermaid flowchart, which JupyterLab 4.1+ renders in a Markdown
  ```` ```mermaid ```` block (``markdown(graph)`` wraps it so);
- ``svg(graph)``: a standalone SVG image drawn here, with no graphviz: steps are laid
  out in layers (topological generations), a layer wider than ``ROW_LIMIT`` steps
  wrapped into rows; an edge that spans rows passes between the boxes of the rows it
  crosses, so no edge runs through a box; edges into (out of) one box end (start) at
  distinct points; edges carry the names of the variables that flow along them; a
  legend tells the edges apart, and the parameters are listed.

Every text the user wrote (step names, variables, parameter defaults) is escaped. The
functions also take the pipeline model itself. Uses the standard library only (and kfp's
protobuf for ``from_pipeline``); the generated script carries this module.
"""

from __future__ import annotations

import ast
import heapq
import inspect
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union
from xml.sax.saxutils import escape, quoteattr

from .exceptions import ScriptError

#: Longest step name or label shown in full; longer ones end with an ellipsis (the SVG's
#: tooltip still shows all of it).
MAX_LABEL = 48

_NAME_SIZE, _DETAIL_SIZE = 13, 11
#: Most steps side by side: a wider layer (steps that run in parallel) wraps into more rows.
ROW_LIMIT = 5
#: The file extensions ``write`` knows.
FORMATS = (".svg", ".md", ".mmd")

_FONT = "font-family=\"-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""
_BOX_PAD, _BOX_GAP, _LAYER_GAP, _MARGIN = 12, 36, 64, 20
_PASS_WIDTH, _PASS_GAP, _PORT_GAP = 4.0, 14.0, 16.0
#: The end of a step component's docstring: the notebook cells the step runs (``step_docstring``).
_CELLS = re.compile(r"\(notebook cells? (\d+)(?:, \d+)*\)\.\Z")
#: The type of a parameter whose value is passed as its Python literal (``Step.literal``).
LITERAL = "literal"
#: The artifact types of a step's report and metrics outputs, in the compiled pipeline.
_OUTPUT_TYPES = {"system.HTML": "report", "system.Metrics": "metrics"}


def step_docstring(name: str, cells: list[int]) -> str:
    """The docstring text of a step's component: its notebook step name and cells (``from_pipeline`` orders the
    steps by their first cell)."""
    return f"Step {name!r} (notebook cell{'s' if len(cells) > 1 else ''} {', '.join(map(str, cells))})."


@dataclass
class Edge:
    """An edge of the DAG: ``variables`` flow from step ``source`` to step ``target``."""

    source: str
    target: str
    variables: list[str] = field(default_factory=list)


@dataclass
class Graph:
    """The DAG as drawn: steps in topological order, their layers, edges and parameters.

    ``tasks`` maps each step to its KFP task name, ``outputs`` each step to the names of its
    ``report`` and ``metrics`` outputs (where a local run finds them).
    """

    name: str
    steps: list[str]
    step_parameters: dict[str, list[str]]
    edges: list[Edge]
    parameters: list[tuple[str, str, str]]
    layers: list[list[str]]
    tasks: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """The graph as plain data: its name, steps (task, parameters, outputs), edges and parameters."""
        return {"name": self.name,
                "steps": [{"name": s, "task": self.tasks.get(s, ""), "parameters": self.step_parameters[s],
                           **self.outputs.get(s, {})} for s in self.steps],
                "edges": [[e.source, e.target, e.variables] for e in self.edges],
                "parameters": [list(p) for p in self.parameters]}


    @classmethod
    def from_pipeline(cls, pipeline: Any) -> Graph:
        """The graph of a generated script's ``@dsl.pipeline`` function (kfp's ``GraphComponent``): its compiled
        spec's steps, edges and outputs (:func:`steps_of`), and the parameters its signature declares."""
        from google.protobuf import json_format

        spec = json_format.MessageToDict(pipeline.pipeline_spec)
        steps = steps_of(spec)
        names = {ident: name for step in steps for name, (ident, _) in step.parameters.items()}
        literal = {ident for step in steps for ident, is_literal in step.parameters.values() if is_literal}
        parameters = []
        for ident, parameter in inspect.signature(pipeline.pipeline_func).parameters.items():
            kind = LITERAL if ident in literal else getattr(parameter.annotation, "__name__", str(parameter.annotation))
            default = parameter.default
            if kind == LITERAL:
                try:
                    default = ast.literal_eval(default)
                except (ValueError, SyntaxError, TypeError):
                    pass
            parameters.append((names.get(ident, ident), kind, _value(default)))
        by_task = {step.task: step.name for step in steps}
        edges: dict[tuple[str, str], Edge] = {}
        for step in steps:
            for parent in step.parents:
                edges.setdefault((by_task[parent], step.name), Edge(by_task[parent], step.name))
            for variable, producer in step.inputs:
                edges.setdefault((by_task[producer], step.name), Edge(by_task[producer], step.name)).variables.append(
                    variable)
            for task in step.after:
                edges.setdefault((by_task[task], step.name), Edge(by_task[task], step.name))
        names_in_order = [step.name for step in steps]
        return cls(name=str((spec.get("pipelineInfo") or {}).get("name") or "pipeline"), steps=names_in_order,
                   step_parameters={step.name: list(step.parameters) for step in steps}, edges=list(edges.values()),
                   parameters=parameters, layers=_layers(names_in_order, list(edges)),
                   tasks={step.name: step.task for step in steps}, outputs={step.name: step.outputs for step in steps})


@dataclass
class StepTask:
    """A notebook step as the compiled pipeline holds it: a task whose component runs nbconvert-kfp's step runtime.

    ``parameters``: the pipeline parameters the step reads, by notebook name -> (the pipeline's identifier, whether
    it travels as a Python literal); ``inputs``: (variable, producing task) in the order the step loads them;
    ``after``: the step tasks it runs after, in topological order, ``parents`` those of them it runs right after
    (no other of them runs after); ``outputs``: its report and metrics outputs.
    """

    name: str
    task: str
    cell: int
    parameters: dict[str, tuple[str, bool]]
    inputs: list[tuple[str, str]]
    parents: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def _step_function(spec: dict[str, Any], component: dict[str, Any]) -> ast.FunctionDef | None:
    """The Python function a component's container runs, parsed from its command (None for other components)."""
    executor = (spec.get("deploymentSpec") or {}).get("executors", {}).get(component.get("executorLabel") or "", {})
    container = executor.get("container") or {}
    args, command = container.get("args") or [], container.get("command") or []
    if "--function_to_execute" not in args[:-1] or len(command) < 4:
        return None
    function = args[args.index("--function_to_execute") + 1]
    try:
        tree = ast.parse(command[-1])
    except (SyntaxError, ValueError):
        return None
    return next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function), None)


def _step_call(function: ast.FunctionDef, method: str) -> dict[str, ast.expr]:
    """The dict display passed to ``step.<method>({...})`` in a step function (name -> value), or nothing."""
    for node in ast.walk(function):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "step"
                and node.args and isinstance(node.args[0], ast.Dict)):
            return {key.value: value for key, value in zip(node.args[0].keys, node.args[0].values)
                    if isinstance(key, ast.Constant) and isinstance(key.value, str)}
    return {}


def _runs_a_step(function: ast.FunctionDef) -> bool:
    """Whether the function runs nbconvert-kfp's step runtime (``with Step("name", ...) as step:``)."""
    return any(isinstance(node, ast.withitem) and isinstance(node.context_expr, ast.Call)
               and isinstance(node.context_expr.func, ast.Name) and node.context_expr.func.id == "Step"
               for node in ast.walk(function))


def steps_of(spec: dict[str, Any]) -> list[StepTask]:
    """The notebook steps of a compiled pipeline spec (kfp's IR as a dict), in the notebook's order.

    A step is a task whose component runs the step runtime; its name is the task's display name (the pipeline sets
    it to the notebook step name where the task name differs); the steps are ordered topologically, the one whose
    first cell comes first before the others (as the conversion orders them). Other tasks (the shared code, data
    files, volumes) are left out.
    """
    root = spec.get("root") or {}
    tasks = (root.get("dag") or {}).get("tasks") or {}
    components = spec.get("components") or {}
    found: dict[str, StepTask] = {}
    for task, body in tasks.items():
        component = components.get((body.get("componentRef") or {}).get("name") or "", {})
        function = _step_function(spec, component)
        match = _CELLS.search(ast.get_docstring(function) or "") if function is not None else None
        if function is None or match is None or not _runs_a_step(function):
            continue
        parameters = {}
        for name, value in _step_call(function, "define").items():
            is_literal = isinstance(value, ast.Call)  # Step.literal(NAME)
            argument = value.args[0] if is_literal and value.args else value
            if isinstance(argument, ast.Name):
                given = ((body.get("inputs") or {}).get("parameters") or {}).get(argument.id) or {}
                parameters[name] = (given.get("componentInputParameter") or argument.id, is_literal)
        artifacts = (body.get("inputs") or {}).get("artifacts") or {}
        inputs = []
        for variable, value in _step_call(function, "load").items():
            source = (artifacts.get(value.id) or {}).get("taskOutputArtifact") if isinstance(value, ast.Name) else None
            if source and source.get("producerTask"):
                inputs.append((variable, source["producerTask"]))
        outputs = {_OUTPUT_TYPES[kind]: name for name, definition in
                   ((component.get("outputDefinitions") or {}).get("artifacts") or {}).items()
                   if (kind := (definition.get("artifactType") or {}).get("schemaTitle")) in _OUTPUT_TYPES}
        found[task] = StepTask(name=(body.get("taskInfo") or {}).get("name") or task, task=task,
                               cell=int(match.group(1)), parameters=parameters, inputs=inputs,
                               outputs={key: outputs[key] for key in ("report", "metrics") if key in outputs})
    after = {task: [p for p in tasks[task].get("dependentTasks") or [] if p in found] for task in found}
    for step in found.values():
        step.inputs = [(variable, producer) for variable, producer in step.inputs if producer in found]
    order = _topological(after, key=lambda task: (found[task].cell, task))
    position = {task: i for i, task in enumerate(order)}
    ancestors: dict[str, set[str]] = {}
    for task in order:
        ancestors[task] = set(after[task]).union(*(ancestors[p] for p in after[task]))
        # the steps it runs right after: those no other step it runs after runs after
        direct = [p for p in after[task] if not any(p in ancestors[q] for q in after[task] if q != p)]
        found[task].parents = sorted(direct, key=position.__getitem__)
        found[task].after = sorted(after[task], key=position.__getitem__)
    return [found[task] for task in order]


def _topological(parents: dict[str, list[str]], key: Any) -> list[str]:
    """The nodes in topological order, the smallest ``key`` first among those ready (a lexicographical sort)."""
    children: dict[str, list[str]] = {node: [] for node in parents}
    waiting = {node: len(set(before)) for node, before in parents.items()}
    for node, before in parents.items():
        for parent in set(before):
            children[parent].append(node)
    ready = [(key(node), node) for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, node = heapq.heappop(ready)
        order.append(node)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (key(child), child))
    return order


def graph(model: dict[str, Any], tasks: dict[str, str] | None = None,
          outputs: dict[str, dict[str, str]] | None = None) -> Graph:
    """The DAG of a pipeline model: edges from ``parents`` and ``input_sources``; ``tasks`` maps
    steps to their KFP task names, ``outputs`` to the names of their report and metrics outputs."""
    steps = [step["name"] for step in model["steps"]]
    edges: dict[tuple[str, str], Edge] = {}
    for step in model["steps"]:
        for parent in step.get("parents", []):
            edges.setdefault((parent, step["name"]), Edge(parent, step["name"]))
        for variable in step.get("inputs", []):
            source = step["input_sources"][variable]
            edges.setdefault((source, step["name"]), Edge(source, step["name"])).variables.append(variable)
    parameters = [(p["name"], str(p["type"]), _value(p["default"])) for p in model.get("parameters", [])]
    pipeline = model.get("pipeline") or {}
    return Graph(
        name=str(pipeline.get("name") or "pipeline"),
        steps=steps,
        step_parameters={step["name"]: list(step.get("parameters", [])) for step in model["steps"]},
        edges=list(edges.values()),
        parameters=parameters,
        layers=_layers(steps, list(edges)),
        tasks=dict(tasks or {}),
        outputs=dict(outputs or {}),
    )


GraphLike = Union[Graph, dict]


def _graph(source: GraphLike) -> Graph:
    return source if isinstance(source, Graph) else graph(source)


def _value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _layers(steps: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Topological generations (a step sits one below its deepest parent), ordered to limit crossings."""
    parents: dict[str, list[str]] = {step: [] for step in steps}
    for source, target in edges:
        parents[target].append(source)
    depth: dict[str, int] = {}
    for step in steps:  # steps come in topological order
        depth[step] = 1 + max((depth[p] for p in parents[step] if p in depth), default=-1)
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for step in steps:
        layers[depth[step]].append(step)
    position: dict[str, float] = {}
    for layer in layers:
        order = {step: i for i, step in enumerate(layer)}
        layer.sort(key=lambda s: (sum(position[p] for p in parents[s]) / len(parents[s])
                                  if parents[s] else order[s], order[s]))
        position.update({step: float(i) for i, step in enumerate(layer)})
    return layers


# --- Mermaid -------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """Escape text for a Mermaid label: anything but letters, digits and plain punctuation
    becomes an entity code (``#34;``), so quotes, brackets, pipes and HTML stay text."""
    text = _shorten(" ".join(text.split()))
    return "".join(ch if ch.isalnum() or ch in " _-.:,=+*/" else f"#{ord(ch)};" for ch in text)


def mermaid(source: GraphLike) -> str:
    """The pipeline as a Mermaid flowchart (top to bottom)."""
    g = _graph(source)
    ident = {step: f"s{i}" for i, step in enumerate(g.steps)}
    lines = ["flowchart TD"]
    if g.parameters:
        rows = "<br>".join(_mermaid_text(f"{n}: {t} = {v}") for n, t, v in g.parameters)
        lines.append(f'    params[/"<b>parameters</b><br>{rows}"/]')
    for step in g.steps:
        label = f"<b>{_mermaid_text(step)}</b>"
        if g.step_parameters[step]:
            label += "<br>" + _mermaid_text("params: " + ", ".join(g.step_parameters[step]))
        lines.append(f'    {ident[step]}["{label}"]')
    for edge in g.edges:
        source, target = ident[edge.source], ident[edge.target]
        if edge.variables:
            lines.append(f'    {source} -->|"{_mermaid_text(", ".join(edge.variables))}"| {target}')
        else:
            lines.append(f"    {source} -.-> {target}")
    return "\n".join(lines) + "\n"


def markdown(source: GraphLike) -> str:
    """A Markdown document holding the Mermaid flowchart, which JupyterLab renders."""
    g = _graph(source)
    return f"# Pipeline `{g.name}`\n\n```mermaid\n{mermaid(g)}```\n"


class FormatError(ScriptError, ValueError):
    """The picture cannot be written in the format a file name asks for."""


def check_format(path: Path) -> None:
    """Raise :class:`FormatError` unless ``path`` ends with an extension ``write`` knows."""
    if path.suffix.lower() not in FORMATS:
        raise FormatError(f"cannot write the pipeline's picture as {path.name!r}: the formats are "
                          f"{', '.join(FORMATS)} (SVG, Markdown with a Mermaid diagram, Mermaid); no PNG "
                          "(open the SVG in a browser to get one)")


def write(source: GraphLike, path: Path) -> None:
    """Write the picture to ``path``: SVG for ``.svg``, Mermaid for ``.mmd``, Markdown with Mermaid for ``.md``."""
    check_format(path)
    suffix = path.suffix.lower()
    text = mermaid(source) if suffix == ".mmd" else markdown(source) if suffix == ".md" else svg(source)
    path.write_text(text, encoding="utf-8")


# --- SVG ---------------------------------------------------------------------------------------


def _shorten(text: str, limit: int = MAX_LABEL) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _clean(text: str) -> str:
    """Drop the characters XML 1.0 cannot carry (control characters, lone surrogates)."""
    return "".join(ch for ch in text if (ch >= " " or ch in "\t\n") and not 0xD800 <= ord(ch) <= 0xDFFF
                   and ch not in "\ufffe\uffff")


def _xml(text: str) -> str:
    return escape(_clean(text))


def _attr(text: str) -> str:
    return quoteattr(_clean(text))


def _width(text: str, size: int, bold: bool = False) -> float:
    """Estimated rendered width: wide (CJK) characters count double."""
    units = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return units * size * (0.64 if bold else 0.58)


@dataclass
class _Node:
    """A box of the layout (a step), or the point where an edge passes through a row (``step`` None)."""

    key: tuple
    step: str | None
    row: int
    width: float
    height: float = 0.0
    lines: list[tuple[str, int, bool]] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0

    @property
    def center(self) -> float:
        return self.x + self.width / 2


def _rows(layers: list[list[str]]) -> list[list[str]]:
    """The layers, a wide one wrapped into rows of at most ``ROW_LIMIT`` steps of even length."""
    rows = []
    for layer in layers:
        count = -(-len(layer) // ROW_LIMIT)
        size = -(-len(layer) // count) if layer else 0
        rows += [layer[i:i + size] for i in range(0, len(layer), size)] if layer else []
    return rows


def _chains(g: Graph, row: dict[str, int]) -> list[list[tuple]]:
    """Each edge as the nodes it passes: its source, one point per row it crosses (shared by the
    edges of one source, which so run together), its target."""
    return [[("step", e.source), *[("pass", e.source, r) for r in range(row[e.source] + 1, row[e.target])],
             ("step", e.target)] for e in g.edges]


def _order(rows: list[list[_Node]], chains: list[list[tuple]]) -> None:
    """Order each row by the mean position of what enters its nodes from the row above (two sweeps)."""
    parents: dict[tuple, set[tuple]] = {}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            parents.setdefault(b, set()).add(a)
    for _ in range(2):
        position = {}
        for nodes in rows:
            here = {n.key: i for i, n in enumerate(nodes)}
            weight = {}
            for node in nodes:
                known = [position[p] for p in parents.get(node.key, ()) if p in position]
                weight[node.key] = sum(known) / len(known) if known else (here[node.key] + 0.5) / len(nodes)
            nodes.sort(key=lambda n: (weight[n.key], here[n.key]))
            position.update({n.key: (i + 0.5) / len(nodes) for i, n in enumerate(nodes)})


def _layout(g: Graph, top: float) -> tuple[dict[tuple, _Node], list[list[_Node]], float, float]:
    """Place the boxes row by row (every box of a row as tall as the row) and the points where edges
    cross rows; return the nodes, the rows, the drawing's width and its bottom."""
    rows_of_steps = _rows(g.layers)
    row = {step: r for r, steps in enumerate(rows_of_steps) for step in steps}
    chains = _chains(g, row)
    nodes: dict[tuple, _Node] = {}
    rows: list[list[_Node]] = [[] for _ in rows_of_steps]
    for step in (s for steps in rows_of_steps for s in steps):
        lines = [(_shorten(step), _NAME_SIZE, True)]
        if g.step_parameters[step]:
            lines.append((_shorten("params: " + ", ".join(g.step_parameters[step])), _DETAIL_SIZE, False))
        width = max(120.0, max(_width(t, s, b) for t, s, b in lines) + 2 * _BOX_PAD)
        node = _Node(("step", step), step, row[step], width, 14 + sum(s + 5 for _, s, _ in lines), lines)
        nodes[node.key] = node
        rows[node.row].append(node)
    for chain in chains:
        for key in chain[1:-1]:
            if key not in nodes:
                nodes[key] = _Node(key, None, key[2], _PASS_WIDTH)
                rows[key[2]].append(nodes[key])
    ins: dict[tuple, set[tuple]] = {}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            ins.setdefault(b, set()).add(a)
    for node in nodes.values():  # room for distinct arrow ends when many edges come in
        if node.step:
            node.width = max(node.width, _PORT_GAP * (len(ins.get(node.key, ())) + 1))
    _order(rows, chains)
    _place(rows)
    left = min((n.x for n in nodes.values()), default=0.0)
    right = max((n.x + n.width for n in nodes.values()), default=120.0)
    y = top
    for nodes_in_row in rows:
        height = max((n.height for n in nodes_in_row if n.step), default=30.0)
        for node in nodes_in_row:
            node.x, node.y, node.height = node.x - left + _MARGIN, y, height
        y += height + _LAYER_GAP
    return nodes, rows, right - left, y - _LAYER_GAP


def _place(rows: list[list[_Node]]) -> None:
    """Horizontal places: each row packed in its order, centred on the widest."""
    widths = [sum(n.width + (_BOX_GAP if n.step else _PASS_GAP) for n in r) - (_BOX_GAP if r else 0) for r in rows]
    total = max(widths, default=0.0)
    for nodes, width in zip(rows, widths):
        x = (total - width) / 2
        for node in nodes:
            node.x = x
            x += node.width + (_BOX_GAP if node.step else _PASS_GAP)


def _ports(nodes: dict[tuple, _Node], chains: list[list[tuple]]) -> dict[tuple, float]:
    """Where each hop leaves its node and enters the next: hops out of (into) a box are spread along
    its bottom (top), left to right as their other ends lie, so that fanning edges keep distinct ends."""
    port: dict[tuple, float] = {}
    outs: dict[tuple, set[tuple]] = {}
    ins: dict[tuple, set[tuple]] = {}
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            outs.setdefault(a, set()).add(b)
            ins.setdefault(b, set()).add(a)
    for ends, side in ((outs, "out"), (ins, "in")):
        for key, others in ends.items():
            node = nodes[key]
            ordered = sorted(others, key=lambda k: nodes[k].center)
            for i, other in enumerate(ordered):
                x = node.x + node.width * (i + 1) / (len(ordered) + 1) if node.step else node.center
                port[(side, key, other)] = x
    return port


def _legend(x: float, y: float, parameters: bool) -> tuple[str, float]:
    """The legend (data edge, prev: edge, parameters) as one row; return it and its width."""
    items = [("data", "data edge: the variables it carries"), ("prev", "prev: edge: runs after, no data")]
    if parameters:
        items.append(("parameters", "pipeline parameters"))
    out = ['<g class="legend">']
    start = x
    for kind, text in items:
        if kind == "parameters":
            out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="22" height="12" rx="2" fill="#fffbea" '
                       'stroke="#c9a227"/>')
        else:
            dashed = ' stroke-dasharray="5,4"' if kind == "prev" else ""
            out.append(f'<path class="legend-{kind}" d="M{x:.1f},{y - 3:.1f} L{x + 22:.1f},{y - 3:.1f}" '
                       f'stroke="#555" stroke-width="1.4"{dashed} marker-end="url(#arrow)"/>')
        out.append(f'<text x="{x + 28:.1f}" y="{y:.1f}" font-size="{_DETAIL_SIZE}" fill="#444">{_xml(text)}</text>')
        x += 28 + _width(text, _DETAIL_SIZE) + 20
    out.append("</g>")
    return "".join(out), x - start - 20


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def svg(source: GraphLike) -> str:
    """The pipeline as a standalone SVG document: steps in rows (a wide layer wraps into several),
    edges that go around the boxes, a legend and the parameters."""
    g = _graph(source)
    title = f"pipeline {g.name}"
    y = _MARGIN + 28.0
    legend, legend_width = _legend(_MARGIN, y + 6, bool(g.parameters))
    y += 24
    parameters: list[str] = []
    parameters_width = 0.0
    if g.parameters:
        rows = [f"{n}: {t} = {v}" for n, t, v in g.parameters]
        parameters_width = max(_width(r, _DETAIL_SIZE) for r in rows + ["parameters"]) + 2 * _BOX_PAD
        height = 26 + 16 * len(rows)
        parameters.append(f'<g class="parameters"><rect x="{_MARGIN}" y="{y:.1f}" width="{parameters_width:.1f}" '
                          f'height="{height}" rx="4" fill="#fffbea" stroke="#c9a227"/>')
        parameters.append(f'<text x="{_MARGIN + _BOX_PAD}" y="{y + 17:.1f}" font-size="{_DETAIL_SIZE}" '
                          f'font-weight="bold">parameters</text>')
        for i, row in enumerate(rows):
            parameters.append(f'<text class="parameter" x="{_MARGIN + _BOX_PAD}" y="{y + 34 + 16 * i:.1f}" '
                              f'font-size="{_DETAIL_SIZE}">{_xml(row)}</text>')
        parameters.append("</g>")
        y += height + 24
    else:
        y += 8
    nodes, _, total, bottom = _layout(g, y)
    row = {key[1]: node.row for key, node in nodes.items() if node.step}
    chains = _chains(g, row)
    port = _ports(nodes, chains)
    width = max(total, _width(title, 15, True), legend_width, parameters_width) + 2 * _MARGIN
    if total < width - 2 * _MARGIN:  # center the steps under a wider title, legend or parameters
        for node in nodes.values():
            node.x += (width - 2 * _MARGIN - total) / 2
        port = _ports(nodes, chains)
    height = (bottom if g.steps else y) + _MARGIN

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" {_FONT} role="img">',
           f"<title>{_xml(title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{_MARGIN}" y="{_MARGIN + 12}" font-size="15" font-weight="bold">{_xml(title)}</text>',
           legend, *parameters]
    labels: list[str] = []
    placed: list[tuple[float, float, float, float]] = []
    for edge, chain in zip(g.edges, chains):
        points = []
        for a, b in zip(chain, chain[1:]):
            start, end = nodes[a], nodes[b]
            if not points:
                points.append((port["out", a, b], start.y + start.height))
            elif start.step is None:
                points.append((start.center, start.y + start.height))
            points.append((port["in", b, a], end.y))
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
        dashed = "" if edge.variables else ' stroke-dasharray="5,4"'
        out.append(f'<g class="edge" data-source={_attr(edge.source)} data-target={_attr(edge.target)}>'
                   f'<path d="{path}" fill="none" stroke="#555" stroke-width="1.4"{dashed} '
                   f'marker-end="url(#arrow)"/>'
                   f"<title>{_xml(edge.source)} → {_xml(edge.target)}"
                   f"{': ' + _xml(', '.join(edge.variables)) if edge.variables else ' (runs after, no data)'}"
                   "</title></g>")
        if edge.variables:
            text = _shorten(", ".join(edge.variables))
            w = _width(text, _DETAIL_SIZE) + 8
            (x1, y1), (x2, y2) = points[-2], points[-1]  # the hop into the target, in the gap above it
            for t in (0.5, 0.3, 0.7, 0.18, 0.82, 0.5):
                mx, my = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
                box = (mx - w / 2, my - 9, w, 16.0)
                if not any(_overlaps(box, other) for other in placed):
                    break
            placed.append(box)
            labels.append(f'<g class="edge-label"><rect x="{box[0]:.1f}" y="{box[1]:.1f}" width="{w:.1f}" '
                          f'height="16" rx="3" fill="white" fill-opacity="0.9"/>'
                          f'<text x="{mx:.1f}" y="{my + 3:.1f}" font-size="{_DETAIL_SIZE}" text-anchor="middle" '
                          f'fill="#1a5fb4">{_xml(text)}</text></g>')
    out += labels
    for step in g.steps:
        box = nodes["step", step]
        out.append(f'<g class="step" data-step={_attr(step)}><title>{_xml(step)}</title>'
                   f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" '
                   f'rx="6" fill="#eef4fb" stroke="#3465a4" stroke-width="1.4"/>')
        text_height = sum(size + 4 for _, size, _ in box.lines)
        line_y = box.y + (box.height - text_height) / 2 - 1
        for text, size, bold in box.lines:
            line_y += size + 4
            weight = ' font-weight="bold"' if bold else ' fill="#444"'
            out.append(f'<text x="{box.center:.1f}" y="{line_y:.1f}" font-size="{size}" text-anchor="middle"'
                       f"{weight}>{_xml(text)}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
