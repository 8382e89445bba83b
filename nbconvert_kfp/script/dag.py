"""A picture of the pipeline: its steps, the variables on each edge, its parameters.

From a :class:`Graph` (``graph(model)`` builds one from the pipeline model,
``resources["kfp"]``; the generated script carries one as plain data) this module draws

- ``mermaid(graph)``: a Mermaid flowchart, which JupyterLab 4.1+ renders in a Markdown
  ```` ```mermaid ```` block (``markdown(graph)`` wraps it so);
- ``svg(graph)``: a standalone SVG image drawn here, with no graphviz: steps are laid
  out in layers (topological generations), edges carry the names of the variables
  that flow along them, and the parameters are listed.

Every text the user wrote (step names, variables, parameter defaults) is escaped. The
functions also take the pipeline model itself. Uses the standard library only; the
generated script carries this module.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union
from xml.sax.saxutils import escape, quoteattr

#: Longest step name or label shown in full; longer ones end with an ellipsis (the SVG's
#: tooltip still shows all of it).
MAX_LABEL = 48

_FONT = "font-family=\"-apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\""
_NAME_SIZE, _DETAIL_SIZE = 13, 11
_BOX_PAD, _BOX_GAP, _LAYER_GAP, _MARGIN = 12, 36, 64, 20


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
        """The graph as plain data (what a generated script carries)."""
        return {"name": self.name,
                "steps": [{"name": s, "task": self.tasks.get(s, ""), "parameters": self.step_parameters[s],
                           **self.outputs.get(s, {})} for s in self.steps],
                "edges": [[e.source, e.target, e.variables] for e in self.edges],
                "parameters": [list(p) for p in self.parameters]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Graph:
        """The graph from ``to_data``'s plain data."""
        steps = [s["name"] for s in data["steps"]]
        edges = [Edge(source, target, list(variables)) for source, target, variables in data["edges"]]
        return cls(name=data["name"], steps=steps,
                   step_parameters={s["name"]: list(s["parameters"]) for s in data["steps"]},
                   edges=edges, parameters=[tuple(p) for p in data["parameters"]],  # type: ignore[misc]
                   layers=_layers(steps, [(e.source, e.target) for e in edges]),
                   tasks={s["name"]: s["task"] for s in data["steps"]},
                   outputs={s["name"]: {k: s[k] for k in ("report", "metrics") if s.get(k)} for s in data["steps"]})


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


def write(source: GraphLike, path: Path) -> None:
    """Write the picture to ``path``: Mermaid for ``.mmd``, Markdown with Mermaid for ``.md``, else SVG."""
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
class _Box:
    x: float
    y: float
    width: float
    height: float
    lines: list[tuple[str, int, bool]]

    @property
    def center(self) -> float:
        return self.x + self.width / 2


def svg(source: GraphLike) -> str:
    """The pipeline as a standalone SVG document."""
    g = _graph(source)
    boxes: dict[str, _Box] = {}
    for step in g.steps:
        lines = [(_shorten(step), _NAME_SIZE, True)]
        if g.step_parameters[step]:
            lines.append((_shorten("params: " + ", ".join(g.step_parameters[step])), _DETAIL_SIZE, False))
        width = max(120.0, max(_width(t, s, b) for t, s, b in lines) + 2 * _BOX_PAD)
        height = 14 + sum(s + 5 for _, s, _ in lines)
        boxes[step] = _Box(0, 0, width, height, lines)

    title = f"pipeline {g.name}"
    y = _MARGIN + 28.0
    legend: list[str] = []
    if g.parameters:
        rows = [f"{n}: {t} = {v}" for n, t, v in g.parameters]
        width = max(_width(r, _DETAIL_SIZE) for r in rows + ["parameters"]) + 2 * _BOX_PAD
        height = 26 + 16 * len(rows)
        legend.append(f'<g class="parameters"><rect x="{_MARGIN}" y="{y:.1f}" width="{width:.1f}" '
                      f'height="{height}" rx="4" fill="#fffbea" stroke="#c9a227"/>')
        legend.append(f'<text x="{_MARGIN + _BOX_PAD}" y="{y + 17:.1f}" font-size="{_DETAIL_SIZE}" '
                      f'font-weight="bold">parameters</text>')
        for i, row in enumerate(rows):
            legend.append(f'<text class="parameter" x="{_MARGIN + _BOX_PAD}" y="{y + 34 + 16 * i:.1f}" '
                          f'font-size="{_DETAIL_SIZE}">{_xml(row)}</text>')
        legend.append("</g>")
        y += height + 24

    # An edge label sits next to the box at the end of the edge that has no other edge (just
    # above the target, or just below the source), else on the edge's middle; each box gets
    # room for the labels placed next to it.
    incoming = {step: sum(e.target == step for e in g.edges) for step in g.steps}
    outgoing = {step: sum(e.source == step for e in g.edges) for step in g.steps}
    anchor = {}
    slot = {step: box.width for step, box in boxes.items()}
    for edge in g.edges:
        end = ("target" if incoming[edge.target] == 1 else "source" if outgoing[edge.source] == 1
               else "middle") if edge.variables else None
        anchor[edge.source, edge.target] = end
        if end in ("source", "target"):
            step = getattr(edge, end)
            slot[step] = max(slot[step], _width(_shorten(", ".join(edge.variables)), _DETAIL_SIZE) + 16)
    layer_widths = [sum(slot[s] for s in layer) + _BOX_GAP * (len(layer) - 1) for layer in g.layers]
    total = max(layer_widths + [_width(title, 15, True)], default=200.0)
    for layer, layer_width in zip(g.layers, layer_widths):
        x = _MARGIN + (total - layer_width) / 2
        height = max(boxes[s].height for s in layer)
        for step in layer:
            box = boxes[step]
            box.x, box.y = x + (slot[step] - box.width) / 2, y + (height - box.height) / 2
            x += slot[step] + _BOX_GAP
        y += height + _LAYER_GAP
    width = total + 2 * _MARGIN
    if g.parameters:
        width = max(width, _MARGIN * 2 + max(_width(f"{n}: {t} = {v}", _DETAIL_SIZE) for n, t, v in g.parameters)
                    + 2 * _BOX_PAD)
    height = y - _LAYER_GAP + _MARGIN if g.layers else y + _MARGIN

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" {_FONT} role="img">',
           f"<title>{_xml(title)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{_MARGIN}" y="{_MARGIN + 12}" font-size="15" font-weight="bold">{_xml(title)}</text>',
           *legend]
    labels = []
    for edge in g.edges:
        source, target = boxes[edge.source], boxes[edge.target]
        x1, y1 = source.center, source.y + source.height
        x2, y2 = target.center, target.y
        bend = max(24.0, (y2 - y1) / 2)
        dashed = "" if edge.variables else ' stroke-dasharray="5,4"'
        out.append(f'<g class="edge" data-source={_attr(edge.source)} data-target={_attr(edge.target)}>'
                   f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} '
                   f'{x2:.1f},{y2:.1f}" fill="none" stroke="#555" stroke-width="1.4"{dashed} '
                   f'marker-end="url(#arrow)"/>'
                   f"<title>{_xml(edge.source)} → {_xml(edge.target)}"
                   f"{': ' + _xml(', '.join(edge.variables)) if edge.variables else ' (runs after, no data)'}"
                   "</title></g>")
        if edge.variables:
            text = _shorten(", ".join(edge.variables))
            # On a white backing, so that crossing edges leave it legible.
            end = anchor[edge.source, edge.target]
            mx, my = ((x2, y2 - 14) if end == "target" else (x1, y1 + 16) if end == "source"
                      else ((x1 + x2) / 2, (y1 + y2) / 2))
            w = _width(text, _DETAIL_SIZE) + 8
            labels.append(f'<g class="edge-label"><rect x="{mx - w / 2:.1f}" y="{my - 9:.1f}" width="{w:.1f}" '
                          f'height="16" rx="3" fill="white" fill-opacity="0.9"/>'
                          f'<text x="{mx:.1f}" y="{my + 3:.1f}" font-size="{_DETAIL_SIZE}" text-anchor="middle" '
                          f'fill="#1a5fb4">{_xml(text)}</text></g>')
    out += labels
    for step in g.steps:
        box = boxes[step]
        out.append(f'<g class="step" data-step={_attr(step)}><title>{_xml(step)}</title>'
                   f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" height="{box.height:.1f}" '
                   f'rx="6" fill="#eef4fb" stroke="#3465a4" stroke-width="1.4"/>')
        line_y = box.y + 7
        for text, size, bold in box.lines:
            line_y += size + 4
            weight = ' font-weight="bold"' if bold else ' fill="#444"'
            out.append(f'<text x="{box.center:.1f}" y="{line_y:.1f}" font-size="{size}" text-anchor="middle"'
                       f"{weight}>{_xml(text)}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
