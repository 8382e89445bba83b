"""Dependency analyzer: the second preprocessor, finding the data each step loads and saves."""

from __future__ import annotations

import ast
from typing import Any

import networkx as nx
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

from .artifacttype import ARTIFACT, imports_of, infer_artifact_types, unsaveable_values
from .errors import CellSourceError, MetricError, PipelineGraphError
from .packages import imported_modules
from .symbols import Symbols, analyse
from .tagparser import RESOURCE_KEY


def _check_syntax(cells: list[dict[str, Any]]) -> None:
    for cell in cells:
        try:
            ast.parse(cell["source"])
        except SyntaxError as err:
            line = f", line {err.lineno}" if err.lineno else ""
            raise CellSourceError(f"syntax error{line}: {err.msg}", cell["index"], err.msg) from None


def _joined(cells: list[dict[str, Any]]) -> str:
    return "\n".join(cell["source"] for cell in cells)


def _first_cell_reading(step: dict[str, Any], name: str) -> int:
    for cell in step["cells"]:
        tree = ast.parse(cell["source"])
        if any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree)):
            return cell["index"]
    return step["cells"][0]["index"]


class DependencyAnalyzer(Preprocessor):
    """Build the step DAG and decide, per step, what it loads, saves and re-imports.

    A step loads each variable it reads from the upstream step that last wrote it,
    re-runs the imports and definitions (functions, classes) it uses from upstream
    steps, and receives the pipeline parameters it reads. Steps without ``prev:``
    tags get a dependency on the earlier step whose variables they read.
    """

    infer_dependencies = Bool(
        True,
        help="Give a step that has no 'prev:' tag a dependency on the earlier steps whose "
        "variables it reads. When off, such a read is an error, as for steps with 'prev:' tags.",
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Analyse every step and store parents, inputs, outputs, parameters and metrics."""
        model = resources[RESOURCE_KEY]
        steps: dict[str, dict[str, Any]] = {s["name"]: s for s in model["steps"]}
        order = {name: i for i, name in enumerate(steps)}

        _check_syntax(model["prelude"])
        prelude = analyse(_joined(model["prelude"])) if model["prelude"] else Symbols()
        symbols: dict[str, Symbols] = {}
        for name, step in steps.items():
            _check_syntax(step["cells"])
            symbols[name] = analyse(_joined(step["cells"]))

        graph = self._graph(steps, symbols, order, prelude, model)
        topo = list(nx.lexicographical_topological_sort(graph, key=order.__getitem__))
        parameters = {p["name"] for p in model["parameters"]}
        available = prelude.bound | parameters
        writes: dict[str, set[str]] = {}
        for name in topo:
            step = steps[name]
            self._resolve(step, symbols[name], graph, topo, symbols, writes, parameters, prelude, steps)
            mutated_data = {n for n in symbols[name].mutated & set(symbols[name].reads)
                            if n in step["inputs"] or n in parameters or n in prelude.data}
            writes[name] = symbols[name].data | mutated_data | set(symbols[name].imports) | set(
                symbols[name].definitions)
            step["parents"] = sorted(graph.predecessors(name), key=topo.index)
        self._assign_metrics(model, steps, topo, writes, symbols, parameters, available)
        prelude_sources = [cell["source"] for cell in model["prelude"]]
        prelude_modules = imported_modules(prelude_sources)
        for step in steps.values():
            step["outputs"] = sorted(step["outputs"])
            step.pop("prev_cells", None)
            own = [*step["imports"], *step["definitions"], *(c["source"] for c in step["cells"])]
            runs = [*prelude_sources, *own]
            step["modules"] = sorted(prelude_modules | imported_modules(own))
            step["uses_ipython"] = any("get_ipython" in source for source in runs)
            step["displays"] = any(word in source for source in runs for word in ("display", "IPython", "get_ipython"))
        self._type_outputs(model, steps, topo)
        model["steps"] = [steps[name] for name in topo]
        model["imports"] = list(dict.fromkeys(
            statement for own in [prelude, *(symbols[name] for name in topo)]
            for statement in own.imports.values()))
        return nb, resources

    def _graph(self, steps, symbols, order, prelude, model) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(steps)
        for name, step in steps.items():
            for prev in step["prev"]:
                graph.add_edge(prev, name, explicit=True)
        if self.infer_dependencies:
            parameters = {p["name"] for p in model["parameters"]}
            for name, step in steps.items():
                if step["prev"]:
                    continue
                earlier = [other for other in steps if order[other] < order[name]]
                for var in symbols[name].reads:
                    producers = [o for o in earlier if var in symbols[o].bound]
                    if producers and var not in prelude.bound | parameters:
                        source = producers[-1]
                        if not graph.has_edge(source, name):
                            self.log.info("step %r reads %r from step %r: it runs after it", name, var, source)
                            graph.add_edge(source, name, explicit=False)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return graph
        names = [edge[0] for edge in cycle]
        tail, head = cycle[0]
        index, text = steps[head]["prev_cells"].get(tail, (steps[head]["cells"][0]["index"], f"prev:{tail}"))
        raise PipelineGraphError(
            f"the 'prev:' tags form a cycle: {' -> '.join(names + [names[0]])}", index, text)

    def _resolve(self, step, own: Symbols, graph, topo, symbols, writes, parameters, prelude, steps) -> None:
        name = step["name"]
        ancestors = sorted(nx.ancestors(graph, name), key=topo.index)
        step.update(inputs=[], input_sources={}, parameters=[], imports=[], definitions=[], outputs=[],
                    metrics=step.get("metrics", []))
        pending = list(own.reads)
        seen: set[str] = set()
        while True:
            if not pending:
                # Loaded values may be instances of upstream classes: unpickling needs them.
                pending = [c for c in self._classes_behind(step, graph, topo, symbols) if c not in seen]
                if not pending:
                    break
            var = pending.pop(0)
            if var in seen:
                continue
            seen.add(var)
            writers = [a for a in ancestors if var in writes[a]]
            if writers:
                writer = writers[-1]
                ws = symbols[writer]
                if var in ws.definitions:
                    definition = ws.definitions[var]
                    step["definitions"].append(definition.source)
                    pending.extend(sorted(definition.free_names))
                elif var in ws.imports:
                    step["imports"].append(ws.imports[var])
                else:
                    step["inputs"].append(var)
                    step["input_sources"][var] = writer
                    if var not in steps[writer]["outputs"]:
                        steps[writer]["outputs"].append(var)
                continue
            if var in parameters:
                step["parameters"].append(var)
                continue
            if var in prelude.bound:
                continue
            others = [o for o in topo if o != name and var in symbols[o].bound]
            if others:
                cell = _first_cell_reading(step, var)
                suggestion = ";".join([*step["prev"], others[-1]])
                raise PipelineGraphError(
                    f"step {name!r} reads {var!r}, which only step {others[-1]!r} defines, and "
                    f"{others[-1]!r} does not run before {name!r}: tag the cell with "
                    f"'prev:{suggestion}'", cell, var)
            self.log.warning("cell %d: step %r reads %r, which no cell of the pipeline defines",
                             _first_cell_reading(step, var), name, var)
        step["imports"] = list(dict.fromkeys(step["imports"]))
        step["definitions"].reverse()
        step["parameters"].sort()

    def _type_outputs(self, model, steps, topo) -> None:
        """Give each saved variable a KFP artifact type from the code that assigns it (Dataset, Model,
        Artifact), and warn where a step reads a value that cannot be saved (open file, generator...)."""
        prelude_imports = imports_of(_joined(model["prelude"]))
        kinds: dict[str, dict[str, str]] = {}
        unsaveable: dict[str, dict[str, str]] = {}
        for name in topo:
            step = steps[name]
            cells = _joined(step["cells"])
            imports = {**prelude_imports, **imports_of("\n".join([*step["imports"], cells]))}
            inputs = {var: kinds[source].get(var, ARTIFACT) for var, source in step["input_sources"].items()}
            kinds[name] = {**inputs, **infer_artifact_types(cells, imports, inputs)}
            unsaveable[name] = unsaveable_values(cells, imports, inputs)
            for var, source in step["input_sources"].items():
                reason = unsaveable[source].get(var)
                if reason:
                    self.log.warning(
                        "cell %d: step %r reads %r from step %r, which cannot pass it on (%s); create it "
                        "in step %r, or in a 'functions' cell", _first_cell_reading(step, var),
                        name, var, source, reason, name)
        for name in topo:
            steps[name]["output_types"] = {var: kinds[name].get(var, ARTIFACT) for var in steps[name]["outputs"]}

    @staticmethod
    def _classes_behind(step, graph, topo, symbols) -> list[str]:
        """Classes that values this step loads may be instances of, so unpickling finds them.

        A loaded value comes from its producer, which only knows the classes that it
        or its own upstream steps define.
        """
        producers = set(step["input_sources"].values())
        scope = producers.union(*(nx.ancestors(graph, p) for p in producers)) if producers else set()
        return [name for s in topo if s in scope for name, d in symbols[s].definitions.items() if d.is_class]

    def _assign_metrics(self, model, steps, topo, writes, symbols, parameters, available) -> None:
        for step in steps.values():
            step["metrics"] = []
        for metric in model["metrics"]:
            var = metric["name"]
            writers = [name for name in topo if var in symbols[name].data or var in writes[name]]
            if writers:
                steps[writers[-1]]["metrics"].append(var)
            elif var in available:
                last = steps[topo[-1]]
                last["metrics"].append(var)
                if var in parameters and var not in last["parameters"]:
                    last["parameters"] = sorted([*last["parameters"], var])
            else:
                raise MetricError(f"metric {var!r} is not a variable that any step or parameter defines",
                                  metric["cell"], var)
