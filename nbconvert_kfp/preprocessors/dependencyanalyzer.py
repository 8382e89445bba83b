"""Dependency analyzer: the second preprocessor, finding the data each step loads and saves."""

from __future__ import annotations

import ast
import bisect
import builtins
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Enum

from ..analysis import datafiles
from ..analysis.ancestry import Ancestry
from ..script.cluster.datastore import file_digest
from ..analysis.artifacttype import ARTIFACT, imports_of, value_kinds
from ..analysis.lazydependency import LazyDependency
from ..analysis.metricvalue import not_a_number
from ..analysis.parsedcell import Notebook, ParsedCell, collector_paused, module
from ..analysis.spelling import close_names
from ..analysis.scope import NOTEBOOK_BUILTINS, Definition, Symbols, analyse
from ..errors import MetricError, PipelineGraphError, TagError
from ..model import RESOURCE_KEY, DataItem, LazyUse, Pipeline, PipelineOutput, Step, cell_number


#: Code that may define names the analysis cannot see: an undefined name there is a warning, not an error.
DYNAMIC_DEFINITIONS = re.compile(r"\b(exec|eval|globals|locals|vars|__import__)\s*\(|run_line_magic\(\s*['\"](run|store|"
                                 r"load|macro)\b|\bsetattr\s*\(\s*(sys\.modules|builtins)")


#: Code that reads names by their text (``globals()["LR"]``, ``eval("LR")``): such a step gets every parameter.
READS_NAMES_AT_RUN_TIME = re.compile(r"\b(exec|eval|globals|locals|vars)\s*\(")


@dataclass
class _Index:
    """What the analysis of each step looks up about the others, built once per notebook, so that a
    pipeline of many steps costs time in proportion to its size, not to its square."""

    ancestry: Ancestry
    #: name -> the steps analysed so far that write it (data, imports, definitions), in topological order
    writers: dict[str, list[str]] = field(default_factory=dict)
    #: name -> the steps that bind it, in topological order
    binders: dict[str, list[str]] = field(default_factory=dict)
    #: every name a step binds
    bound: set[str] = field(default_factory=set)
    #: the steps with a star import, in topological order
    star_steps: list[str] = field(default_factory=list)
    #: the classes each step that defines one defines, in topological order
    classes: list[tuple[str, list[str]]] = field(default_factory=list)
    #: a definition's source -> the definitions with that source, numbered in topological order
    definitions: dict[str, list[tuple[int, Definition]]] = field(default_factory=dict)
    #: an import statement -> the top-level modules it imports
    import_modules: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, graph: nx.DiGraph, topo: list[str], symbols: dict[str, Symbols]) -> "_Index":
        """The index of the steps ``topo`` orders."""
        index = cls(Ancestry(graph, topo))
        number = 0
        for name in topo:
            own = symbols[name]
            for var in own.bound:
                index.binders.setdefault(var, []).append(name)
            index.bound |= own.bound
            if any(key.startswith("*") for key in own.imports):
                index.star_steps.append(name)
            classes = [var for var, definition in own.definitions.items() if definition.is_class]
            if classes:
                index.classes.append((name, classes))
            for definition in own.definitions.values():
                index.definitions.setdefault(definition.source, []).append((number, definition))
                number += 1
            for var, statement in own.imports.items():
                index.import_modules.setdefault(statement, set()).add(own.import_modules[var])
        return index

    def rerun(self, sources: list[str]) -> list[Definition]:
        """The definitions whose source is one of ``sources``, in topological order."""
        return [definition for _, definition in sorted(
            (entry for source in set(sources) for entry in self.definitions.get(source, ())),
            key=lambda entry: entry[0])]


class DependencyAnalyzer(Preprocessor):
    """Build the step DAG and decide, per step, what it loads, saves and re-imports.

    A step loads each variable it reads from the upstream step that last wrote it,
    re-runs the imports and definitions (functions, classes) it uses from upstream
    steps, and receives the pipeline parameters it reads. Steps without ``prev:``
    tags get a dependency on the earlier step whose variables they read. Each cell
    is parsed once; every analysis shares its tree.
    """

    undefined_names = Enum(
        ["error", "warn"], "error",
        help="What a name that no step, import, parameter or builtin defines is: 'error' stops the conversion "
        "naming the cell and the closest defined names; 'warn' converts, for code that defines names at run "
        "time (a step using exec, %run or globals() is only warned about in any case).",
    ).tag(config=True)
    infer_dependencies = Bool(
        True,
        help="Give a step that has no 'prev:' tag a dependency on the earlier steps whose "
        "variables it reads. When off, such a read is an error, as for steps with 'prev:' tags.",
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Analyse every step and store parents, inputs, outputs, parameters and metrics."""
        # nbconvert gives the notebook's folder ('' for the current one) when it converts a file
        folder = (resources.get("metadata") or {}).get("path")
        with collector_paused():
            self._analyse(resources[RESOURCE_KEY], Path(folder or ".") if folder is not None else None)
        return nb, resources

    def _analyse(self, model: Pipeline, folder: Path | None) -> None:
        steps: dict[str, Step] = {s["name"]: s for s in model["steps"]}
        order = {name: i for i, name in enumerate(steps)}

        notebook = Notebook()
        prelude_cells = [notebook.parse(cell) for cell in model["prelude"]]
        parsed: dict[str, list[ParsedCell]] = {
            name: [notebook.parse(cell) for cell in step["cells"]] for name, step in steps.items()}
        prelude = analyse(prelude_cells) if prelude_cells else Symbols()
        symbols = {name: analyse(cells) for name, cells in parsed.items()}
        binding = Counter(var for own in symbols.values() for var in own.bound)
        for name, own in symbols.items():
            # a variable named like a builtin (id, input, max) that another step binds is a read of it
            for var, cell in own.builtin_reads.items():
                if binding[var] > (var in own.bound) and var not in own.reads:
                    own.reads.append(var)
                    own.read_cells[var] = cell

        graph = self._graph(steps, symbols, order, prelude, model)
        topo = list(nx.lexicographical_topological_sort(graph, key=order.__getitem__))
        index = _Index.build(graph, topo, symbols)
        parameters = {p["name"] for p in model["parameters"]}
        available = prelude.bound | parameters
        writes: dict[str, set[str]] = {}
        for name in topo:
            step = steps[name]
            self._resolve(step, symbols[name], index, symbols, parameters, prelude, steps)
            mutated_data = {n for n in symbols[name].mutated & set(symbols[name].reads)
                            if n in step["inputs"] or n in parameters or n in prelude.data}
            writes[name] = symbols[name].data | mutated_data | set(symbols[name].imports) | set(
                symbols[name].definitions)
            for var in writes[name]:
                index.writers.setdefault(var, []).append(name)
            step["parents"] = sorted(graph.predecessors(name), key=index.ancestry.position.__getitem__)
        self._assign_metrics(model, steps, topo, writes, symbols, parameters, available)
        marked = self._marked_outputs(steps, topo, symbols, writes)
        prelude_sources = [cell["source"] for cell in model["prelude"]]
        for name, step in steps.items():
            step["outputs"] = sorted(step["outputs"])
            modules = prelude.modules | symbols[name].modules | self._upstream_modules(step, index)
            step["modules"] = sorted(modules)
            step["lazy"] = self._lazy(step, index, symbols, prelude)
            runs = [*prelude_sources, *step["imports"], *step["definitions"], *(c["source"] for c in step["cells"])]
            step["uses_ipython"] = any("get_ipython" in source for source in runs)
            step["displays"] = any(word in source for source in runs for word in ("display", "IPython", "get_ipython"))
        self._type_outputs(steps, topo, prelude_cells, parsed, symbols)
        model["outputs"] = self._pipeline_outputs(model, steps, topo, parsed, symbols, marked)
        model["data"] = self._data(folder, steps, prelude_cells, parsed) if folder is not None else []
        model["steps"] = [steps[name] for name in topo]
        model["imports"] = list(dict.fromkeys(
            statement for own in [prelude, *(symbols[name] for name in topo)]
            for statement in own.imports.values()))

    def _data(self, folder: Path, steps: dict[str, Step], prelude_cells: list[ParsedCell],
              parsed: dict[str, list[ParsedCell]]) -> list[DataItem]:
        """The files next to the notebook that the steps read (see :mod:`nbconvert_kfp.analysis.datafiles`); each
        step's ``data`` names the items it reads, in notebook order."""
        names: dict[str, str] = {}
        prelude = datafiles.path_use(prelude_cells, names)
        written = set(prelude.written)
        local = {f"{m.partition('.')[0]}.py" for step in steps.values() for m in step["modules"]}
        items: dict[str, DataItem] = {}
        too_many: set[str] = set()
        shared = datafiles.existing(folder, prelude, set(), local)
        for name, step in steps.items():  # notebook order: what an earlier step writes is not an input
            use = datafiles.path_use(parsed[name], names)
            step["data"] = []
            for found in shared + datafiles.existing(folder, use, written, local):
                item = items.get(found.path)
                if item is None:
                    if found.too_many:
                        if found.path not in too_many:
                            too_many.add(found.path)
                            self.log.warning("cell %d: %r names more than %d files; they do not travel with the "
                                             "pipeline: put them on a volume the steps mount",
                                             cell_number(found.cell), found.path, datafiles.MOST_FILES)
                        continue
                    item = items[found.path] = self._data_item(folder, found)
                if item["path"] not in step["data"]:
                    step["data"].append(item["path"])
                    item["steps"].append(name)
            written |= set(use.written)
        return list(items.values())

    @staticmethod
    def _data_item(folder: Path, found: datafiles.FoundData) -> DataItem:
        files = [{"path": f, "size": (folder / f).stat().st_size, "sha256": file_digest(folder / f)}
                 for f in found.files]
        return {"path": found.path, "kind": found.kind, "files": files,  # type: ignore[typeddict-item]
                "size": sum(f["size"] for f in files),
                "digest": datafiles.item_digest({f["path"]: f["sha256"] for f in files}),
                "cell": found.cell, "steps": []}

    @staticmethod
    def _cell_of(step: Step, symbols: Symbols, name: str) -> int:
        """The index of the step's first cell that reads ``name``."""
        return symbols.read_cells.get(name, step["cells"][0]["index"])

    @staticmethod
    def _upstream_modules(step: Step, index: _Index) -> set[str]:
        """Modules that the imports and definitions a step re-runs from upstream steps import."""
        modules: set[str] = set()
        for statement in set(step["imports"]):
            modules.update(index.import_modules.get(statement, ()))
        for definition in index.rerun(step["definitions"]):
            modules.update(definition.modules)
        return modules

    @staticmethod
    def _lazy(step: Step, index: _Index, symbols: dict[str, Symbols], prelude: Symbols) -> list[LazyUse]:
        """The lazy dependencies of the code a step runs (its cells, the prelude, the definitions it re-runs):
        each with the first cell using it."""
        found: dict[LazyDependency, int] = {**prelude.lazy}
        for definition in index.rerun(step["definitions"]):
            for entry in definition.lazy:
                found.setdefault(entry, definition.cell)
        for entry, cell in symbols[step["name"]].lazy.items():
            found.setdefault(entry, cell)
        return [{"use": entry.use, "library": list(entry.library), "distributions": list(entry.distributions),
                 "cell": cell} for entry, cell in found.items()]

    def _graph(self, steps: dict[str, Step], symbols: dict[str, Symbols], order: dict[str, int],
               prelude: Symbols, model: Pipeline) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(steps)
        for name, step in steps.items():
            for prev in step["prev"]:
                graph.add_edge(prev["step"], name, explicit=True)
        if self.infer_dependencies:
            outside = prelude.bound | {p["name"] for p in model["parameters"]}
            # name -> the steps that bind it or change it in place, in notebook order
            producing: dict[str, list[str]] = {}
            for name, own in symbols.items():
                for var in own.bound | own.mutated:
                    producing.setdefault(var, []).append(name)
            for name, step in steps.items():
                if step["prev"]:
                    continue
                inferred: dict[str, list[str]] = {}
                for var in symbols[name].reads:
                    # the step that last binds the variable, or changes it in place, before this one
                    producers = producing.get(var, [])
                    last = bisect.bisect_left(producers, order[name], key=order.__getitem__) - 1
                    if last >= 0 and var not in outside:
                        source = producers[last]
                        if not graph.has_edge(source, name) or source in inferred:
                            self.log.debug("step %r reads %r from step %r: it runs after it", name, var, source)
                            inferred.setdefault(source, []).append(var)
                            graph.add_edge(source, name, explicit=False)
                if inferred:
                    self.log.info("step %r runs after %s", name, "; ".join(
                        f"{source!r} (reads {', '.join(sorted(names))})" for source, names in inferred.items()))
        self._file_edges(steps, symbols, order, graph, model)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            return graph
        names = [edge[0] for edge in cycle]
        tail, head = cycle[0]
        tag = next((p for p in steps[head]["prev"] if p["step"] == tail), None)
        index, text = (tag["cell"], tag["tag"]) if tag else (steps[head]["cells"][0]["index"], f"prev:{tail}")
        raise PipelineGraphError(
            f"the 'prev:' tags form a cycle: {' -> '.join(names + [names[0]])}", index, text)

    def _file_edges(self, steps: dict[str, Step], symbols: dict[str, Symbols], order: dict[str, int],
                    graph: nx.DiGraph, model: Pipeline) -> None:
        """A step that reads a file an earlier step writes (by the same literal path) runs after it; on a
        cluster the two run in different pods, so the handover needs a shared volume."""
        warned: set[str] = set()
        volumes = [v["mount_point"] for v in model["pipeline"]["volumes"]]
        writing: dict[str, list[str]] = {}  # path -> the steps that write it, in notebook order
        for name, own in symbols.items():
            for path in own.files_written:
                writing.setdefault(path, []).append(name)
        for name, step in steps.items():
            for path, read_cell in symbols[name].files_read.items():
                writers = writing.get(path, [])
                last = bisect.bisect_left(writers, order[name], key=order.__getitem__) - 1
                if last < 0:
                    continue
                writer = writers[last]
                write_cell = symbols[writer].files_written[path]
                if not nx.has_path(graph, writer, name):
                    if self.infer_dependencies and not step["prev"]:
                        graph.add_edge(writer, name, explicit=False)
                    else:
                        self.log.warning("cell %d: step %r reads %r, which step %r writes (cell %d), but does not "
                                         "run after it: tag the cell with 'prev:%s'", cell_number(read_cell), name, path,
                                         writer, cell_number(write_cell), writer)
                if path not in warned and not any(path.startswith(mount) for mount in volumes):
                    warned.add(path)
                    self.log.warning("cell %d: step %r reads the file %r that step %r writes (cell %d): on a KFP "
                                     "cluster steps run in separate pods, so the file does not reach it; pass the "
                                     "data as a variable, or write it to a volume both steps mount",
                                     cell_number(read_cell), name, path, writer, cell_number(write_cell))

    def _resolve(self, step: Step, own: Symbols, index: _Index, symbols: dict[str, Symbols], parameters: set[str],
                 prelude: Symbols, steps: dict[str, Step]) -> None:
        name = step["name"]
        ancestry = index.ancestry
        step.update(inputs=[], input_sources={}, parameters=[], imports=[], definitions=[], outputs=[],
                    metrics=step.get("metrics", []))
        pending = list(own.reads)
        seen: set[str] = set()
        while True:
            if not pending:
                # Loaded values may be instances of upstream classes: unpickling needs them.
                pending = [c for c in self._classes_behind(step, index) if c not in seen]
                if not pending:
                    break
            var = pending.pop(0)
            if var in seen:
                continue
            seen.add(var)
            writer = next((w for w in reversed(index.writers.get(var, ())) if ancestry.precedes(w, name)), None)
            if writer is not None:
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
            others = [o for o in index.binders.get(var, ()) if o != name]
            if others:
                definer = others[-1]
                if ancestry.precedes(name, definer):  # a prev: tag would make a cycle: the cell must move
                    where = self._binding_cell(steps[definer], var)
                    raise PipelineGraphError(
                        f"step {name!r} reads {var!r}, which only step {definer!r} defines"
                        + (f" (cell {cell_number(where)})" if where is not None else "")
                        + f", and {definer!r} runs after {name!r}: move the cell that defines {var!r} into "
                        f"{name!r} or a step before it (a 'prev:{definer}' tag would make a cycle)",
                        self._cell_of(step, own, var), var)
                suggestion = ";".join([*(p["step"] for p in step["prev"]), definer])
                raise PipelineGraphError(
                    f"step {name!r} reads {var!r}, which only step {definer!r} defines, and "
                    f"{definer!r} does not run before {name!r}: tag the cell with "
                    f"'prev:{suggestion}'", self._cell_of(step, own, var), var)
            upstream = (symbols[a] for a in index.star_steps if ancestry.precedes(a, name))
            stars = [statement for source in [prelude, own, *upstream]
                     for key, statement in source.imports.items() if key.startswith("*")]
            if stars:
                # a name a star import may bind: the step re-runs the star imports of its upstream steps
                step["imports"].extend(s for s in stars if s not in own.imports.values()
                                       and s not in prelude.imports.values())
                continue
            self._undefined(step, own, var, index.bound, prelude, parameters)
        if self._dynamic(step) and READS_NAMES_AT_RUN_TIME.search(" ".join(c["source"] for c in step["cells"])):
            # globals()["LR"], eval("LR"): which parameters such a step reads shows only when it runs
            step["parameters"] = sorted(parameters)
        step["imports"] = list(dict.fromkeys(step["imports"]))
        step["definitions"].reverse()
        step["parameters"].sort()

    def _undefined(self, step: Step, own: Symbols, var: str, bound: set[str], prelude: Symbols,
                   parameters: set[str]) -> None:
        """A name nothing defines: an error naming the cell, with the closest names the step could mean; a
        warning where the code defines names at run time (``exec``, ``%run``, ``globals()``) or the user said so
        with ``undefined_names``."""
        cell = self._cell_of(step, own, var)
        known = set(own.bound) | prelude.bound | parameters | set(dir(builtins)) | NOTEBOOK_BUILTINS
        known |= bound
        close = close_names(var, known)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        message = f"step {step['name']!r} reads {var!r}, which no cell of the pipeline defines{hint}"
        if self.undefined_names == "warn" or self._dynamic(step):
            self.log.warning("cell %d: %s", cell_number(cell), message)
            return
        raise PipelineGraphError(
            f"{message} (if the code defines it at run time, convert with "
            "--DependencyAnalyzer.undefined_names=warn)", cell, var)

    @staticmethod
    def _dynamic(step: Step) -> bool:
        """Whether the step's code may define names the analysis cannot see (``exec``, ``%run``, ``globals()``...)."""
        return any(DYNAMIC_DEFINITIONS.search(c["source"]) for c in step["cells"])

    @staticmethod
    def _binding_cell(step: Step, var: str) -> int | None:
        """The first of the step's cells that binds ``var`` at its top level."""
        from ..analysis.parsedcell import parse, top_level_statements

        for cell in step["cells"]:
            tree = parse(cell).tree
            for node in top_level_statements(tree.body):
                names = {t.id for target in getattr(node, "targets", [getattr(node, "target", None)])
                         if target is not None for t in ast.walk(target) if isinstance(t, ast.Name)}
                if getattr(node, "name", None) == var or var in names or any(
                        (a.asname or a.name.partition(".")[0]) == var for a in getattr(node, "names", [])
                        if isinstance(a, ast.alias)):
                    return cell["index"]
        return None

    def _type_outputs(self, steps: dict[str, Step], topo: list[str], prelude_cells: list[ParsedCell],
                      parsed: dict[str, list[ParsedCell]], symbols: dict[str, Symbols]) -> None:
        """Give each saved variable a KFP artifact type from the code that assigns it (Dataset, Model,
        Artifact), and warn where a step reads a value that cannot be saved (open file, generator...)."""
        prelude_imports = {name: value for p in prelude_cells for name, value in p.imports.items()}
        kinds: dict[str, dict[str, str]] = {}
        unsaveable: dict[str, dict[str, str]] = {}
        for name in topo:
            step = steps[name]
            imports = dict(prelude_imports)
            for statement in step["imports"]:
                imports.update(imports_of(statement))
            for p in parsed[name]:
                imports.update(p.imports)
            inputs = {var: kinds[source].get(var, ARTIFACT) for var, source in step["input_sources"].items()}
            types: dict[str, str] = {}
            unsaveable[name] = {}
            if step["outputs"]:  # only what a step saves needs a type, or may be unsaveable
                walrus = any(":=" in p.cell["source"] for p in parsed[name])
                types, unsaveable[name] = value_kinds(module(parsed[name]), imports, inputs, walrus)
            kinds[name] = {**inputs, **types}
            for var, source in step["input_sources"].items():
                reason = unsaveable[source].get(var)
                if reason:
                    self.log.warning(
                        "cell %d: step %r reads %r from step %r, which cannot pass it on (%s); create it "
                        "in step %r, or in a 'functions' cell", cell_number(self._cell_of(step, symbols[name], var)),
                        name, var, source, reason, name)
        for name in topo:
            steps[name]["output_types"] = {var: kinds[name].get(var, ARTIFACT) for var in steps[name]["outputs"]}

    @staticmethod
    def _classes_behind(step: Step, index: _Index) -> list[str]:
        """Classes that values this step loads may be instances of, so unpickling finds them.

        A loaded value comes from its producer, which only knows the classes that it
        or its own upstream steps define.
        """
        scope = index.ancestry.scope(set(step["input_sources"].values()))
        return [name for s, names in index.classes if index.ancestry.within(scope, s) for name in names]

    def _assign_metrics(self, model: Pipeline, steps: dict[str, Step], topo: list[str], writes: dict[str, set[str]],
                        symbols: dict[str, Symbols], parameters: set[str], available: set[str]) -> None:
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

    @staticmethod
    def _marked_outputs(steps: dict[str, Step], topo: list[str], symbols: dict[str, Symbols],
                        writes: dict[str, set[str]]) -> list[tuple[str, str, int]]:
        """The variables ``output:`` tags mark, as (step, variable, cell); each step saves its own."""
        marked: list[tuple[str, str, int]] = []
        by_variable: dict[str, str] = {}
        for name in topo:
            step = steps[name]
            for option in step["options"]:
                if option["kind"] != "output":
                    continue
                var, cell, text = option["variable"], option["cell"], f"output:{option['variable']}"
                if var not in writes[name] or var in symbols[name].imports or var in symbols[name].definitions:
                    close = close_names(var, symbols[name].data)
                    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
                    raise TagError(f"tag {text!r}: step {name!r} does not assign a variable {var!r}{hint}", cell, text)
                if var in by_variable and by_variable[var] != name:
                    raise TagError(f"tag {text!r}: step {by_variable[var]!r} already gives {var!r} as a pipeline "
                                   "output; mark it in one step only", cell, text)
                if var in by_variable:
                    continue
                by_variable[var] = name
                marked.append((name, var, cell))
                if var not in step["outputs"]:
                    step["outputs"].append(var)
        return marked

    def _pipeline_outputs(self, model: Pipeline, steps: dict[str, Step], topo: list[str],
                          parsed: dict[str, list[ParsedCell]], symbols: dict[str, Symbols],
                          marked: list[tuple[str, str, int]]) -> list[PipelineOutput]:
        """What the pipeline returns: each metric that may be a number (from the step that logs it), then each
        variable an ``output:`` tag marks (its artifact)."""
        cells = {m["name"]: m["cell"] for m in model["metrics"]}
        kinds = {p["name"]: p["type"] for p in model["parameters"]}
        outputs: list[PipelineOutput] = []
        numbers: set[str] = set()
        for name in topo:
            for var in steps[name]["metrics"]:
                if var in kinds and var not in symbols[name].data:  # the parameter's value
                    what = None if kinds[var] in ("int", "float") else f"a parameter of type {kinds[var]}"
                else:
                    what = not_a_number(module(parsed[name]), var)
                if what is not None:
                    self.log.info("metric %r is %s, not a number: it is logged, and the pipeline does not return "
                                  "it", var, what)
                    continue
                numbers.add(var)
                outputs.append({"variable": var, "step": name, "kind": "metric", "type": "float",
                                "cell": cells[var]})
        for name, var, cell in marked:
            if var in numbers:
                raise TagError(f"tag 'output:{var}': {var!r} is a metric of the pipeline-metrics cell, which the "
                               "pipeline already returns as a number", cell, f"output:{var}")
            outputs.append({"variable": var, "step": name, "kind": "artifact",
                            "type": steps[name]["output_types"][var], "cell": cell})
        return outputs
