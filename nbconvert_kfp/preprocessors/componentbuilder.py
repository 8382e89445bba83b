"""Component builder: the third preprocessor, turning each step into a KFP component and the
pipeline into the statements the ``kfp`` template prints.

Every identifier, literal and statement of the generated script is made here, as text
that is valid Python for any input; the template only prints ``resources["kfp"]["script"]``.

How the steps get nbconvert-kfp's step runtime (``KFPExporter.runtime``):

- ``artifact`` (default): a first step, ``shared_code``, writes the runtime and the
  notebook's imports and functions cells as one zip archive to a KFP artifact; every
  step takes it as an input and imports from it. The runtime's source is in the
  pipeline once, so step commands stay small, and KFP's cache keys change only with
  the code each step runs;
- ``package``: each step installs the runtime distribution (``runtime_package``);
- ``image``: the step image already has it (``nbconvert-kfp-runtime``, or nbconvert-kfp);
- ``embedded``: every step carries the runtime in its own command (tiny pipelines).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode

from .. import __version__, runtime, script as script_package
from ..analysis.lazydependency import used_library
from ..analysis.localmodules import LIMIT as LOCAL_LIMIT
from ..analysis.localmodules import local_modules
from ..analysis.packages import (canonical_name, distribution_requirement, image_python, is_installed, local_builds,
                                 pin, requirements, unsupported_on)
from ..codegen import archive, installer
from ..codegen.identifier import Namer, kfp_name
from ..codegen.literal import code_literal, docstring, python_literal
from ..codegen.reserved import COMPONENT_LOCALS, RESERVED
from ..errors import NotebookError
from ..model import RESOURCE_KEY, Component, Pipeline, Settings, Step, StepOption, Volume, cell_number
from ..notebook import markdown
from ..notebook.parameter import LITERAL
from ..notebook.stepoption import describe, effective_options, ignored_locally, last_value, task_calls
from ..notebook.volume import create_calls, delete_calls, mount_calls, mounts_into
from ..runtime.step import PRELUDE_MEMBER
from ..script import dag
from ..script.tuning import searchspace as tuning
from ..script.parametervalue import literal_text, parse_value
from ..script.local.localrun import LOCAL_RUN_ENV
from ..script.tuning.search import LOCAL_ALGORITHMS

#: How steps get the step runtime.
RUNTIME_MODES = ("artifact", "package", "image", "embedded")
#: A step whose code literals are longer than this ships its cells packed (xz-compressed, base64).
PACK_ABOVE = 32 * 1024
#: The most a step's command may carry in one argument: Linux refuses a longer one (MAX_ARG_STRLEN is
#: 128 KiB) and the step cannot start; the rest of the component's source needs a few KB.
COMMAND_ARGUMENT_LIMIT = 120 * 1024
#: A data item rides inside the pipeline (a step of its own writes it) when its compressed payload is at most
#: this long; larger ones go through the object store. Each embedded step's command is stored in a run's Argo
#: Workflow (1 MiB at most), once and again when it runs.
EMBED_ITEM_LIMIT = 64 * 1024
#: The most all embedded data items together may add to the pipeline.
EMBED_TOTAL_LIMIT = 128 * 1024
#: Data items larger than this (uncompressed) are not tried for embedding.
EMBED_RAW_LIMIT = 4 * 1024 * 1024
#: The line the conversion says of each data item (the ``nbconvert-kfp`` command shows it too).
DATA_NOTICE = "%s %s (%s) read by step%s %s (cell %d): %s"
#: How data files reach a cluster's steps (``KFPExporter.data_files``).
DATA_MODES = ("auto", "embed", "store", "none")
#: Names used inside the pipeline function's body; parameters must not shadow them.
PIPELINE_BODY_NAMES = frozenset({"kubernetes", "LOCAL_RUN", "dsl", "None", "True", "False", "data_input"})
#: The pipeline function's return type, a NamedTuple of the pipeline's outputs (the script's module-level name).
OUTPUTS = "Outputs"
#: The one-line comment under the script's first line, and the usage lines after it.
USAGE = (
    "",
    "  python THIS_SCRIPT                   compile to KFP IR YAML next to this script",
    "  python THIS_SCRIPT --local           run on this machine with kfp.local (no cluster)",
    "  python THIS_SCRIPT -p NAME VALUE     override a pipeline parameter (repeatable)",
    "  python THIS_SCRIPT --run --host URL  upload to a KFP cluster and start a run (see --help)",
    "  python THIS_SCRIPT --dag dag.svg     draw the pipeline (.svg, or Mermaid for .md/.mmd)",
    "",
    "Change the notebook and convert it again rather than editing this file.",
)
#: The usage line of a script with a hyperparameter search.
TUNE_USAGE = "  python THIS_SCRIPT --tune            search the notebook's katib_metadata here (see --help)"


def _indent(text: str, spaces: int) -> str:
    """Indent the continuation lines of a statement (its first line is placed by the template)."""
    return text.replace("\n", "\n" + " " * spaces)


def _call(function: str, arguments: list[str], indent: int = 4) -> str:
    """``function(a, b)`` on one line when short, else one argument per line."""
    one_line = f"{function}({', '.join(arguments)})"
    if len(one_line) + indent <= 100 and "\n" not in one_line:
        return one_line
    pad = " " * (indent + 4)
    return f"{function}(\n" + "".join(f"{pad}{_indent(a, indent + 4)},\n" for a in arguments) + " " * indent + ")"


def _dict_lines(items: list[tuple[str, str]], indent: int) -> str:
    """A dict display: on one line when it fits, else one ``key: value`` per line."""
    one_line = "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if len(one_line) + indent <= 80:
        return one_line
    pad = " " * (indent + 4)
    return "{\n" + "".join(f"{pad}{k}: {v},\n" for k, v in items) + " " * indent + "}"


def _list_lines(items: list[str], indent: int) -> str:
    """A list display, one item per line when not empty (an item's own line breaks are kept as they
    are: they may be inside a string literal)."""
    if len(items) <= 1:
        return "[" + "".join(items) + "]"
    pad = " " * (indent + 4)
    return "[\n" + "".join(f"{pad}{item},\n" for item in items) + " " * indent + "]"


def _named_tuple(fields: list[tuple[str, str]], indent: int = 0) -> str:
    """``NamedTuple("Outputs", [("name", type), ...])``: a return annotation KFP reads as named outputs."""
    items = [f"({python_literal(name)}, {kind})" for name, kind in fields]
    return _call("NamedTuple", [python_literal(OUTPUTS), _list_lines(items, indent) if len(items) > 3
                                else "[" + ", ".join(items) + "]"], indent)


def _cell_entry(label: int | str, source: str, original: str | None = None) -> str:
    """One ``(label, source[, original])`` entry of ``step.run([...])``."""
    parts = [python_literal(label), code_literal(source)] + ([code_literal(original)] if original else [])
    return "(" + ", ".join(parts) + ")"


def _dsl_imports(components: list[Component]) -> str:
    """The ``kfp.dsl`` names the script uses: the annotations of the components."""
    names = {match for c in components for argument in c["signature"]
             for pair in re.findall(r"\b(Input|Output)\[(\w+)\]", argument) for match in pair}
    return ", ".join(sorted(names))


#: What the conversion says of a data item, by how it travels.
_VIA = {
    "embedded": "travels inside the pipeline",
    "store": "travels through the object store ({root}/<digest>/): --run, --upload and --push-data put it there",
    "none": "does not travel (data_files=none): a cluster's steps must find it themselves",
}


#: The script's function that makes the task giving the steps a data item.
DATA_INPUT_FUNCTION = '''def data_input(path, writer=None):
    """The task that gives the steps the data DATA[path]: a local run takes the files next to this script,
    with their digests now (a step reading a changed file runs again); on a cluster, `writer` writes the
    copy this script carries, or an importer brings the one under DATA_ROOT."""
    item = DATA[path]
    if LOCAL_RUN:
        import hashlib

        here = os.path.dirname(os.path.abspath(__file__))
        digests = {}
        for name in item["files"]:
            digest = hashlib.sha256()
            if os.path.isfile(os.path.join(here, name)):
                with open(os.path.join(here, name), "rb") as stream:
                    for block in iter(lambda: stream.read(1 << 20), b""):
                        digest.update(block)
            digests[name] = digest.hexdigest()
        return dsl.importer(artifact_uri=here, artifact_class=dsl.Dataset, reimport=False, metadata=digests)
    if writer is not None:
        return writer()
    return dsl.importer(artifact_uri=f"{DATA_ROOT}/{item['digest']}", artifact_class=dsl.Dataset, reimport=False)'''


def _data_noun(item: dict[str, Any]) -> str:
    """``data file`` or ``data folder`` (``data files`` for a glob's matches)."""
    return {"file": "data file", "folder": "data folder"}.get(item["kind"], "data files")


def _size(size: int) -> str:
    """A size for people: bytes, KiB or MiB."""
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KiB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MiB"


def _closure(imports: dict[str, set[str]], modules: set[str]) -> list[tuple[str, set[str]]]:
    """The local modules ``modules`` use, directly or through each other, with what each imports."""
    found: dict[str, set[str]] = {}
    pending = [m.partition(".")[0] for m in modules]
    while pending:
        top = pending.pop()
        if top in imports and top not in found:
            found[top] = imports[top]
            pending.extend(imports[top])
    return list(found.items())


class ComponentBuilder(Preprocessor):
    """Give every step a KFP component: parameters in, one artifact per variable in and out.

    Stores in ``resources["kfp"]`` each step's ``component`` and the ``script``: every
    identifier, literal and statement the template prints.
    """

    output_suffix = Unicode(
        "_out", help="Suffix of output artifact names: variable 'df' is saved as artifact 'df_out'.",
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Compute the components, the pipeline function and the script around them."""
        model: Pipeline = resources[RESOURCE_KEY]
        settings = model["pipeline"]
        if settings["runtime"] not in RUNTIME_MODES:
            raise NotebookError(f"runtime {settings['runtime']!r} is not one of {', '.join(RUNTIME_MODES)}",
                                None, "runtime")
        self._reported: set[str] = set()
        self._returned: dict[str, dict[str, str]] = {}
        self._settings = settings
        parameter_namer = Namer(PIPELINE_BODY_NAMES | COMPONENT_LOCALS)
        parameters = {p["name"]: parameter_namer.take(p["name"], "param") for p in model["parameters"]}
        model["tuning"] = self._tuning(nb, model, parameters)
        namer = Namer(RESERVED | set(parameters.values()))
        # nbconvert gives the notebook's folder ('' for the current one) when it converts a file
        folder = (resources.get("metadata") or {}).get("path")
        self._local, local_imports = local_modules(set().union(*(s["modules"] for s in model["steps"])),
                                                   Path(folder or ".") if folder is not None else None)
        if sum(map(len, self._local.values())) > LOCAL_LIMIT:
            raise NotebookError(f"the local modules the notebook imports ({', '.join(sorted(self._local))}) hold "
                                f"{sum(map(len, self._local.values())) // 1024} KB, more than a pipeline carries "
                                f"({LOCAL_LIMIT // 1024} KB): install them in the step image as a package", None,
                                "modules")
        shared, prelude = self._shared_files(model)
        bundle = ({"function": namer.take("shared_code"), "task": namer.take("shared_code_task"),
                   "payload": archive.payload(shared), "prelude": prelude} if shared or prelude else None)
        if bundle and len(bundle["payload"]) + sum(map(len, prelude)) > COMMAND_ARGUMENT_LIMIT:
            first = model["prelude"][0]["index"] if model["prelude"] else None
            raise NotebookError(
                f"the code every step shares (nbconvert-kfp's runtime and the imports and functions cells) is "
                f"{len(bundle['payload']) // 1024} KB even compressed: a KFP step's command holds at most 128 KiB. "
                "Move large functions into a module of your own that the step image installs", first, "functions")
        data = self._data_plan(model, Path(folder or ".") if folder is not None else None, namer)
        functions = {step["name"]: namer.take_task(step["name"], "step") for step in model["steps"]}
        tasks = {name: namer.take(f"{function}_task") for name, function in functions.items()}
        setup, claims = self._volumes(settings["volumes"], model["steps"], namer)

        components: list[Component] = [self._bundle_component(bundle)] if bundle else []
        statements: list[str] = []
        if bundle:
            statements += [f"{bundle['task']} = {bundle['function']}()",
                           f"{bundle['task']}.set_display_name({python_literal('shared code')})"]
        for path, plan in data.items():
            if plan["component"]:
                components.append(plan["component"])
            writer = plan["component"]["function"] if plan["component"] else None
            statements += [f"{plan['task']} = data_input({python_literal(path)}{', ' + writer if writer else ''})",
                           f"{plan['task']}.set_display_name({python_literal(path)})"]
        self._data = data
        statements += setup
        ignored: list[str] = []
        outputs_by_step: dict[str, dict[str, str]] = {}
        modules_behind: dict[str, set[str]] = {}
        for step in model["steps"]:
            options = effective_options(step["options"])
            own = set(step["modules"])
            own |= set().union(*(imported for top, imported in _closure(local_imports, own)))
            modules_behind[step["name"]] = own.union(*(modules_behind[p] for p in step["input_sources"].values()))
            component = self._component(step, options, functions, tasks, parameters, outputs_by_step, bundle,
                                        modules_behind[step["name"]], model)
            components.append(component)
            step["component"] = component
            statements += self._task_statements(component, step, options, tasks, bundle, claims)
            unapplied = [describe(o) for o in ignored_locally(options)]
            unapplied += [f"volume {v['name']} at {v['mount_point']}" for v in settings["volumes"]
                          if mounts_into(v, step["name"])]
            if unapplied:
                ignored.append(python_literal(f"step {step['name']!r}: {', '.join(unapplied)}"))
        for volume in settings["volumes"]:
            variable = claims[volume["name"]][1]
            if variable is not None and not volume.get("keep"):
                mounting = [tasks[s["name"]] for s in model["steps"] if mounts_into(volume, s["name"])]
                statements += delete_calls(variable, mounting, volume["name"])
        statements += self._return_statement(model, tasks, outputs_by_step)
        model["script"] = self._script(model, components, statements, parameters, ignored)
        return nb, resources

    # --- what the pipeline returns ------------------------------------------------------------------

    def _return_statement(self, model: Pipeline, tasks: dict[str, str],
                          outputs_by_step: dict[str, dict[str, str]]) -> list[str]:
        """Name each pipeline output (its variable, made a valid field name that no other output has) and give
        the pipeline function's ``return Outputs(...)`` statement (none when the pipeline returns nothing)."""
        namer = Namer()
        arguments = []
        for output in model.get("outputs", []):
            output["name"] = namer.take(output["variable"], "output")
            task, step = tasks[output["step"]], output["step"]
            source = (self._returned[step][output["variable"]] if output["kind"] == "metric"
                      else outputs_by_step[step][output["variable"]])
            arguments.append(f"{output['name']}={task}.outputs[{python_literal(source)}]")
        if not arguments:
            return []
        self.log.info("the pipeline returns %s", ", ".join(
            f"{o['name']} ({'a number' if o['kind'] == 'metric' else o['type']}, from step {o['step']!r})"
            for o in model["outputs"]))
        return [f"return {_call(OUTPUTS, arguments)}"]

    # --- the hyperparameter search ---------------------------------------------------------------

    def _tuning(self, nb: Any, model: Pipeline, parameters: dict[str, str]) -> dict[str, Any] | None:
        """The search of the notebook's ``katib_metadata``, checked against the parameters and metrics.

        A search that cannot run stops the conversion when ``katib_run`` asks for it; otherwise it is
        reported and the script gets no search (Kale wrote a search into many notebooks never tuned).
        """
        metadata = (nb.get("metadata") or {}).get("kubeflow_notebook") or {}
        if not isinstance(metadata, dict):
            return None
        katib, run = metadata.get("katib_metadata"), metadata.get("katib_run") is True
        if tuning.is_unset(katib):
            if run:
                raise NotebookError(f"kubeflow_notebook.katib_run is true but {tuning.METADATA_KEY} names no search "
                                    "(parameters and objective)", None, "katib_metadata")
            return None
        types = {p["name"]: (parameters[p["name"]], p["type"]) for p in model["parameters"]}
        metrics = [m["name"] for m in model["metrics"]]
        try:
            search = tuning.parse(katib, types, metrics, check_value=parse_value, warn=self.log.warning)
        except tuning.SearchError as err:
            if run:
                raise NotebookError(str(err), None, err.key or "katib_metadata") from None
            self.log.warning("%s; the pipeline has no hyperparameter search (--tune) until it is fixed", err)
            return None
        objective = search.objective
        if search.algorithm not in LOCAL_ALGORITHMS:
            self.log.warning("%s.algorithm.algorithmName: %s runs on a Katib cluster only (--katib-experiment); "
                             "--tune searches with %s", tuning.METADATA_KEY, search.algorithm,
                             ", ".join(LOCAL_ALGORITHMS))
        self.log.info("%s: %s search over %s, %s %s, up to %d trials: 'python SCRIPT --tune' runs it on this "
                      "machine, '--katib-experiment FILE --katib-image IMAGE' writes a Katib Experiment for a "
                      "cluster%s", tuning.METADATA_KEY, search.algorithm, ", ".join(p.name for p in search.parameters),
                      objective.type, objective.metric, search.max_trials,
                      " (katib_run: add --katib-submit to create it)" if run else "")
        return search.to_data()

    # --- data files ---------------------------------------------------------------------------

    def _data_plan(self, model: Pipeline, folder: Path | None, namer: Namer) -> dict[str, dict[str, Any]]:
        """How each data item reaches a cluster's steps (``data_files``), said in one line per item; per item
        path: the pipeline's task variable and the component that writes an embedded copy (or None)."""
        mode = self._settings["data_files"]
        if mode not in DATA_MODES:
            raise NotebookError(f"data_files {mode!r} is not one of {', '.join(DATA_MODES)}", None, "data_files")
        plan: dict[str, dict[str, Any]] = {}
        embedded_total = 0
        for item in model.get("data") or []:
            payload = None
            if mode in ("auto", "embed") and folder is not None and item["size"] <= EMBED_RAW_LIMIT:
                payload = archive.data_payload({f["path"]: (folder / f["path"]).read_bytes() for f in item["files"]})
                if len(payload) > EMBED_ITEM_LIMIT or embedded_total + len(payload) > EMBED_TOTAL_LIMIT:
                    payload = None
            if mode == "none":
                item["via"] = "none"
            elif payload is not None:
                item["via"] = "embedded"
                embedded_total += len(payload)
            elif mode == "embed":
                raise NotebookError(
                    f"{_data_noun(item)} {item['path']!r} ({_size(item['size'])}) is too large to travel inside "
                    f"the pipeline ({EMBED_ITEM_LIMIT // 1024} KiB compressed per item, {EMBED_TOTAL_LIMIT // 1024} "
                    "KiB in all): use --KFPExporter.data_files=store (the object store under data_root), or put it "
                    "on a volume the steps mount", item["cell"], item["path"])
            elif not self._settings["data_root"]:
                raise NotebookError(
                    f"{_data_noun(item)} {item['path']!r} ({_size(item['size'])}) is too large to travel inside "
                    "the pipeline and data_root names no object store: set --KFPExporter.data_root (e.g. "
                    "minio://mlpipeline/nbconvert-kfp/data), or put it on a volume the steps mount and tag "
                    "the notebook with data_files=none", item["cell"], item["path"])
            else:
                item["via"] = "store"
            task = namer.take(f"file_{item['path']}_task", "data_task")
            component = None
            if item["via"] == "embedded":
                function = namer.take_task(f"file_{item['path']}", "data")
                component = {
                    "function": function, "task": task, "decorator": self._common_decorator("BASE_IMAGE"),
                    "installs": self._installs([]), "signature": ["data: Output[Dataset]"],
                    "docstring": docstring(f"The {_data_noun(item)} {item['path']!r} next to the notebook "
                                           f"({_size(item['size'])}), for the steps that read it."),
                    "body": archive.extractor_statements(payload, "data.path", 4), "packages": [],
                }
            plan[item["path"]] = {"task": task, "component": component}
            self.log.info(DATA_NOTICE, _data_noun(item), item["path"],
                          _size(item["size"]), "s" if len(item["steps"]) > 1 else "", ", ".join(item["steps"]),
                          cell_number(item["cell"]), _VIA[item["via"]].format(root=self._settings["data_root"]))
        return plan

    def _data_constants(self, model: Pipeline) -> list[str]:
        """``DATA`` (the data items: how each travels, its size, digest and files) and ``DATA_ROOT``."""
        items = []
        for item in model["data"]:
            files = _dict_lines([(python_literal(f["path"]), python_literal(f["sha256"])) for f in item["files"]], 8)
            fields = [(python_literal("via"), python_literal(item["via"])), (python_literal("size"), str(item["size"])),
                      (python_literal("digest"), python_literal(item["digest"])), (python_literal("files"), files)]
            items.append((python_literal(item["path"]), _dict_lines(fields, 4)))
        return [
            "# Files next to the notebook that the steps read, by the path the code names (sizes in bytes, SHA-256",
            "# digests). On a cluster each comes \"embedded\" in this script, or from the object store under DATA_ROOT",
            "# (\"store\"), where --run, --upload and --push-data copy it; a local run reads the notebook's own files.",
            f"DATA = {_dict_lines(items, 0)}",
            f"DATA_ROOT = {python_literal(self._settings['data_root'])}",
        ]

    # --- what the steps share ------------------------------------------------------------------

    def _shared_files(self, model: Pipeline) -> tuple[dict[str, str], list[str]]:
        """The files of the ``shared_code`` archive that travel encoded (the runtime in artifact mode, the
        notebook's local modules), and the prelude cells as readable entries (none: no prelude, or one too
        large to read, which then travels encoded too)."""
        mode = self._settings["runtime"]
        if mode == "embedded":
            return {}, []
        files = {path: archive.minified(text) for path, text in runtime.sources().items()} if mode == "artifact" else {}
        files.update(self._local)
        cells = [(cell_number(c["index"]), c["source"], c.get("original")) for c in model["prelude"]]
        if sum(len(source) + len(original or "") for _, source, original in cells) <= PACK_ABOVE:
            return files, [_cell_entry(*cell) for cell in cells]
        files[PRELUDE_MEMBER] = json.dumps([list(cell) for cell in cells], ensure_ascii=False)
        return files, []

    @staticmethod
    def _common_decorator(image: str) -> list[str]:
        # kfp's own pip preamble is left out: the ``installs`` decorator gives the step its install lines
        return [f"base_image={image}", "install_kfp_package=False"]

    def _installs(self, packages: list[str], step: str | None = None) -> str | None:
        """The ``installs(...)`` decorator of a component, or None when its step installs nothing; a step's
        install list is read from ``STEP_INSTALLS``, its pins from ``PINS``, the one place the script spells them."""
        if not packages and not self._settings["install_kfp_package"]:
            return None
        if step is not None and packages and self._settings["install_packages"]:
            return f"{installer.DECORATOR}(*STEP_INSTALLS[{python_literal(step)}])"
        return _call(installer.DECORATOR, [python_literal(p) for p in packages], 0)

    def _bundle_component(self, bundle: dict[str, Any]) -> Component:
        return {
            "function": bundle["function"],
            "task": bundle["task"],
            "decorator": self._common_decorator("BASE_IMAGE"),
            "installs": self._installs([]),
            "signature": ["bundle: Output[Artifact]"],
            "docstring": docstring("The code every step shares, as one zip archive: nbconvert-kfp's step "
                                   "runtime and the notebook's imports and functions cells."),
            "body": archive.writer_statements(bundle["payload"], "bundle.path", 4, self._prelude_statements(bundle)),
        }

    @staticmethod
    def _prelude_statements(bundle: dict[str, Any]) -> list[str]:
        """The statements that add the notebook's imports and functions cells, readable, to the archive's files."""
        if not bundle["prelude"]:
            return []
        return [
            "# The notebook's imports and functions cells: every step runs them first.",
            f"prelude = {_list_lines(bundle['prelude'], 4)}",
            f"files[{python_literal(PRELUDE_MEMBER)}] = json.dumps(",
            "    [[cell[0], *(text[1:] for text in cell[1:]), None][:3] for cell in prelude])",
        ]

    # --- one step ------------------------------------------------------------------------------

    def _component(self, step: Step, options: list[StepOption], functions: dict[str, str], tasks: dict[str, str],
                   parameters: dict[str, str], outputs_by_step: dict[str, dict[str, str]],
                   bundle: dict[str, Any] | None, modules: set[str], model: Pipeline) -> Component:
        settings = self._settings
        namer = Namer(COMPONENT_LOCALS | set(parameters.values()))
        bundle_ident = namer.take("bundle") if bundle else None
        function = functions[step["name"]]
        signature = [f"{bundle_ident}: Input[Artifact]"] if bundle_ident else []
        arguments = [f'{bundle_ident}={bundle["task"]}.outputs["bundle"]'] if bundle else []
        signature += [f"{parameters[p]}: {self._parameter_type(model, p)}" for p in step["parameters"]]
        arguments += [f"{parameters[p]}={parameters[p]}" for p in step["parameters"]]
        loads, saves = [], []
        data_parents = set()
        for var in step["inputs"]:
            ident = namer.take(var, "value")
            source = step["input_sources"][var]
            data_parents.add(source)
            signature.append(f"{ident}: Input[Artifact]")
            arguments.append(f"{ident}={tasks[source]}.outputs[{python_literal(outputs_by_step[source][var])}]")
            loads.append((python_literal(var), ident))
        outputs_by_step[step["name"]] = {}
        for var in step["outputs"]:
            ident = namer.take(f"{var}{self.output_suffix}", "value")
            outputs_by_step[step["name"]][var] = ident
            signature.append(f"{ident}: Output[{step['output_types'][var]}]")
            saves.append((python_literal(var), ident))
        files = []
        for path in step.get("data") or []:
            ident = namer.take(path, "data")
            signature.append(f"{ident}: Input[Dataset]")
            arguments.append(f"{ident}={self._data[path]['task']}.output")
            files.append((python_literal(path), f"{ident}.path"))
        metrics = classification = None
        if step["metrics"]:
            metrics, classification = namer.take("metrics"), namer.take("classification_metrics")
            signature += [f"{metrics}: Output[Metrics]", f"{classification}: Output[ClassificationMetrics]"]
        report_switch = last_value(options, "report", "enabled")
        report = namer.take("report") if (settings["step_reports"] if report_switch is None else report_switch) \
            else None
        if report:
            signature.append(f"{report}: Output[HTML]")

        step_arguments = [python_literal(step["name"])]
        if bundle_ident:
            step_arguments.append(f"bundle={bundle_ident}.path")
        if report:
            step_arguments.append(f"report={report}")
            if step["displays"]:
                step_arguments.append("ipython=True")
        body = self._runtime_import(bundle_ident)
        body.append(f"with Step({', '.join(step_arguments)}) as step:")
        if report and step.get("markdown"):
            notes = [f"({cell_number(c['index'])}, {code_literal(markdown.to_html(c['source']))})"
                     for c in step["markdown"]]
            body.append(f"    step.markdown({_list_lines(notes, 8)})")
        if files:
            body.append(f"    step.files({_dict_lines(files, 8)})")
        kinds = {p["name"]: p["type"] for p in model["parameters"]}
        items = [(python_literal(p), f"Step.literal({parameters[p]})" if kinds[p] == LITERAL else parameters[p])
                 for p in step["parameters"]]
        define = f"    step.define({_dict_lines(items, 8)})" if items else None
        if define:
            body.append(define)
        if model["prelude"]:
            if bundle_ident:
                body.append("    step.run_prelude()")
            else:
                prelude = [(cell_number(c["index"]), c["source"], c.get("original")) for c in model["prelude"]]
                size = sum(len(source) + len(original or "") for _, source, original in prelude)
                body.append(self._run_statement(step, prelude, size > PACK_ABOVE, prelude=True))
            if define and any(c.get("role") == "parameters" for c in model["prelude"]):
                body.append(define)  # as papermill does: the overrides come after the parameters cell
        upstream = ([("upstream imports", "\n".join(step["imports"]), None)] if step["imports"] else [])
        upstream += [("upstream definitions", d, None) for d in step["definitions"]]
        cells = [(cell_number(c["index"]), c["source"], c.get("original")) for c in step["cells"]]
        packed = sum(len(source) + len(original or "") for _, source, original in upstream + cells) > PACK_ABOVE
        if upstream:
            body.append(self._run_statement(step, upstream, packed))
        if loads:
            body.append(f"    step.load({_dict_lines(loads, 8)})")
        body.append(self._run_statement(step, cells, packed))
        if saves:
            body.append(f"    step.save({_dict_lines(saves, 8)})")
        if metrics:
            names = ", ".join(python_literal(m) for m in step["metrics"])
            body.append(f"    step.log_metrics({metrics}, [{names}], {classification})")
        returned = [o["variable"] for o in model.get("outputs", []) if o["step"] == step["name"] and o["kind"] == "metric"]
        fields = {var: namer.take(var, "metric") for var in returned}
        self._returned[step["name"]] = fields
        if returned:
            body.append(f"    return step.numbers([{', '.join(python_literal(var) for var in returned)}])")

        image = last_value(options, "image", "image")
        decorator = self._common_decorator(python_literal(image) if image else "BASE_IMAGE")
        packages = self._packages(step, options, modules)
        self._check_image_python(step, image or settings["base_image"], packages)
        if settings["runtime"] == "embedded":
            decorator.append("additional_funcs=[_step_runtime]")
        component_name = kfp_name(function, "step")
        return {
            "function": function,
            "task": tasks[step["name"]],
            "name": step["name"],
            "docstring": docstring(dag.step_docstring(step["name"], [cell_number(c["index"]) for c in step["cells"]])),
            "display_name": step["name"] if step["name"] != component_name else None,
            "decorator": decorator,
            "installs": self._installs(packages, step["name"]),
            "signature": signature,
            "returns": _named_tuple([(field, "float") for field in fields.values()]) if fields else None,
            "arguments": arguments,
            "after": [tasks[p] for p in step["parents"] if p not in data_parents],
            "body": body,
            "packages": packages,
            "report": report,
            "metrics": metrics,
        }

    @staticmethod
    def _run_statement(step: Step, cells: list[tuple[int | str, str, str | None]], packed: bool,
                       prelude: bool = False) -> str:
        """``step.run([...])`` with the cells as readable literals, or ``step.run_packed("...")`` for a large step;
        ``prelude``: the cells every step runs."""
        flag = ", prelude=True" if prelude else ""
        if not packed:
            return f"    step.run({_list_lines([_cell_entry(*cell) for cell in cells], 8)}{flag})"
        data = json.dumps([list(cell) for cell in cells], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        too_large = archive.payload_size_at_least(data) > COMMAND_ARGUMENT_LIMIT
        text = "" if too_large else archive.payload_bytes(data)
        if too_large or len(text) > COMMAND_ARGUMENT_LIMIT:
            size = f"at least {archive.payload_size_at_least(data) // 1024}" if too_large else str(len(text) // 1024)
            raise NotebookError(
                f"step {step['name']!r} carries {len(data) // 1024} KB of code, {size} KB even "
                f"compressed: a KFP step's command holds at most 128 KiB. Split the step's cells into several "
                "steps, or keep large data in a file the step reads", step["cells"][0]["index"], step["name"])
        return "    step.run_packed(" + "\n".join(archive.literal_lines(text, 8)) + flag + ")"

    def _runtime_import(self, bundle_ident: str | None) -> list[str]:
        """The statements that make ``Step`` importable in the step."""
        if bundle_ident:
            return ["import sys", f"sys.path.insert(0, {bundle_ident}.path)",
                    "from nbconvert_kfp.runtime.step import Step"]
        if self._settings["runtime"] == "embedded":
            return ["_step_runtime()", "from nbconvert_kfp.runtime.step import Step"]
        return ["from nbconvert_kfp.runtime.step import Step"]

    @staticmethod
    def _parameter_type(model: Pipeline, name: str) -> str:
        kind = next(p["type"] for p in model["parameters"] if p["name"] == name)
        return "str" if kind == LITERAL else kind

    def _task_statements(self, component: Component, step: Step, options: list[StepOption], tasks: dict[str, str],
                         bundle: dict[str, Any] | None, claims: dict[str, tuple[str, str | None]]) -> list[str]:
        """The statements of the pipeline function that create the step's task and apply its options."""
        task = component["task"]
        statements = [f"{task} = {_call(component['function'], component['arguments'])}"]
        if component["after"]:
            statements.append(f"{task}.after({', '.join(component['after'])})")
        if component["display_name"]:
            statements.append(f"{task}.set_display_name({python_literal(component['display_name'])})")
        statements += task_calls(options, task, self._settings["enable_caching"])
        for volume in self._settings["volumes"]:
            if mounts_into(volume, step["name"]):
                statements += mount_calls(volume, task, *claims[volume["name"]])
        return statements

    def _volumes(self, volumes: list[Volume], steps: list[Step], namer: Namer) -> tuple[list[str], dict[str, tuple[str, str | None]]]:
        """Statements creating per-run PVCs; per volume its claim-name expression and PVC variable."""
        names = {step["name"] for step in steps}
        setup: list[str] = []
        claims: dict[str, tuple[str, str | None]] = {}
        for volume in volumes:
            unknown = [s for s in volume["steps"] or [] if s not in names]
            if unknown:
                raise NotebookError(f"volume {volume['name']!r} names steps that do not exist: "
                                    f"{', '.join(unknown)}", None, "volumes")
            if volume["type"] == "new_pvc":
                variable = namer.take(f"{volume['name']}_pvc", "volume")
                setup += create_calls(volume, variable)
                claims[volume["name"]] = (f'{variable}.outputs["name"]', variable)
                if not volume["storage_class"]:
                    self.log.warning(
                        "volume %r has no storage_class_name: KFP's backend creates it with the storage class "
                        "'standard', not the cluster's default (kubeflow/pipelines#11396), and the claim stays "
                        "Pending where no class has that name; set storage_class_name in the volume (or the "
                        "notebook metadata) to a class of the cluster (kubectl get storageclass)", volume["name"])
            else:
                claims[volume["name"]] = (python_literal(volume["name"]), None)
        return setup, claims

    def _packages(self, step: Step, options: list[StepOption], modules: set[str]) -> list[str]:
        """What the step installs on a cluster: its imports' distributions, pinned, plus extras."""
        settings = self._settings
        found: list[str] = []
        if settings["install_packages"]:
            found, unknown = requirements(modules)
            for module in unknown:
                if f"{module}.py" in self._local or f"{module}/__init__.py" in self._local:
                    continue  # a module next to the notebook: the pipeline carries it
                self._warn_once(module, "module %r is imported but no installed distribution provides it; add it "
                                "with a 'package:<requirement>' tag or --KFPExporter.extra_packages", module)
            have = {canonical_name(f.partition("==")[0]) for f in found}
            for distribution in self._extras(step, modules):
                if canonical_name(distribution) not in have:
                    have.add(canonical_name(distribution))
                    found.append(distribution_requirement(distribution))
            for name, version in local_builds(found).items():
                self._warn_once(f"local:{name}", "%s is installed here as %s, a local build no public index serves; "
                                "steps install %s from their package index (--KFPExporter.pip_index_urls names the "
                                "index the build came from, e.g. https://download.pytorch.org/whl/cpu for PyTorch's "
                                "CPU builds)", name, version, pin(name))
        if settings["runtime"] == "package":
            found.append(settings["runtime_package"] or f"nbconvert-kfp-runtime=={__version__}")
        found += settings["extra_packages"] + [o["requirement"] for o in options if o["kind"] == "package"]
        names = {r.partition("==")[0].lower() for r in found}
        if settings["install_kfp_package"] and "kfp" not in names and any(n.startswith("kfp") for n in names):
            # the SDK skips its own kfp install when a requirement starts with "kfp" (kfp-server-api, ...)
            found.append(pin("kfp"))
        return list(dict.fromkeys(found))

    def _extras(self, step: Step, modules: set[str]) -> list[str]:
        """The distributions a step needs beyond its imports' (by name): what the step runtime uses for it, and
        the lazy dependencies of the library calls its code makes; each one not installed here is reported."""
        wanted: list[tuple[str, str, int | None]] = []  # distribution, why, cell
        if (step["inputs"] or step["outputs"]) and is_installed("dill"):
            # dill saves and loads what pickle cannot (lambdas, closures): only steps that pass values need it, and
            # only where it is installed here (without it the values pass as pickles, here and on the cluster)
            wanted.append(("dill", "passing values between steps", None))
        if step["uses_ipython"]:
            cell = next((c["index"] for c in step["cells"] if "get_ipython" in c["source"]), None)
            wanted.append(("ipython", "IPython syntax (%magic, !shell)", cell))
        if any(module.partition(".")[0] == "kfp" for module in modules):
            # the SDK installs kfp without its dependencies: a step that uses kfp itself needs them
            wanted.append(("kfp", "importing kfp", None))
        for use in step.get("lazy", []):
            library = used_library(use["library"], modules)
            if library is not None:
                wanted += [(name, f"{use['use']} ({library})", use["cell"]) for name in use["distributions"]]
        for distribution, why, cell in wanted:
            if not is_installed(distribution):
                where = f"cell {cell_number(cell)}: " if cell is not None else ""
                self._warn_once(f"missing:{distribution}", "%sstep %r needs %s for %s, which is not installed here: "
                                "steps install it unpinned (pin it with a 'package:%s==<version>' tag)", where,
                                step["name"], distribution, why, distribution)
        return [distribution for distribution, _, _ in wanted]

    @staticmethod
    def _install_constants(components: list[Component], install_packages: bool) -> list[str]:
        """``PINS`` (each requirement a step installs, once, by a short key) and ``STEP_INSTALLS`` (step name ->
        the keys of its install list), or no pins and None when steps install only what the settings add."""
        steps = [c for c in components if "name" in c]
        keys = installer.pin_keys(p for c in steps for p in c["packages"]) if install_packages else {}
        pins = _dict_lines([(python_literal(key), python_literal(text)) for text, key in keys.items()], 0)
        installs = _dict_lines([(python_literal(c["name"]), python_literal([keys[p] for p in c["packages"]]))
                                for c in steps], 0) if install_packages else None
        return [
            "# The requirements the steps install on a cluster, each once, by a short key (its distribution's name):",
            "# pinned to the versions installed where the notebook was converted.",
            f"PINS = {pins}",
            "# What each step installs on a cluster, by PINS key (None: the image has everything): a local run",
            "# names the modules a step imported beyond them.",
            f"STEP_INSTALLS = {installs}",
        ]

    def _warn_once(self, key: str, message: str, *arguments: Any) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.log.warning(message, *arguments)

    def _check_image_python(self, step: Step, image: str, packages: list[str]) -> None:
        """Warn when a step's image runs another Python than the pins were taken under."""
        python = image_python(image)
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        if python is None or python == here:
            return
        failing = unsupported_on(python, packages)
        if failing:
            self.log.warning("step %r runs in image %s (Python %s), but its pins were taken under Python %s and %s "
                             "cannot be installed there; use an image with Python %s, or pin versions for Python %s "
                             "with 'package:' tags", step["name"], image, python, here, ", ".join(failing), here,
                             python)

    # --- the script ----------------------------------------------------------------------------

    def _script(self, model: Pipeline, components: list[Component], statements: list[str],
                parameters: dict[str, str], ignored: list[str]) -> dict[str, Any]:
        settings: Settings = model["pipeline"]
        uses_kubernetes = any("kubernetes." in statement for statement in statements)
        imports = ["import os", "import shlex", "import sys", ""]
        imports.append("import kfp")
        outputs = model.get("outputs") or []
        if outputs or any(c.get("returns") for c in components):
            imports.insert(3, "from typing import NamedTuple")
        imports.append("from kfp import dsl, kubernetes" if uses_kubernetes else "from kfp import dsl")
        dsl_names = _dsl_imports(components)
        if dsl_names:
            imports.append(f"from kfp.dsl import {dsl_names}")
        imports.append("")
        types = [(python_literal(parameters[p["name"]]), python_literal(LITERAL) if p["type"] == LITERAL else p["type"])
                 for p in model["parameters"]]
        constants = [
            f"PIPELINE_NAME = {python_literal(settings['name'])}",
            f"PIPELINE_DESCRIPTION = {python_literal(settings['description'])}",
            f"BASE_IMAGE = {python_literal(settings['base_image'])}",
            f"EXPERIMENT = {python_literal(settings['experiment'])}",
            f"PARAMETER_TYPES = {_dict_lines(types, 0)}",
        ]
        constants += [
            "# On a cluster a step first runs these lines: install() uses uv (pip installs it when the image lacks",
            "# it), else pip; both keep what the image already has at the pinned version. See installs().",
            installer.installer_constant(settings["pip_index_urls"], settings["pip_trusted_hosts"]),
            f"INSTALL_KFP = {settings['install_kfp_package']!r}",
            "# A local run (--local) runs the steps in this Python environment and installs nothing.",
            f'LOCAL_RUN = os.environ.get({python_literal(LOCAL_RUN_ENV)}) == "1" or (__name__ == "__main__" and '
            '"--local" in sys.argv[1:])',
            "# Settings that kfp.local does not apply; a local run lists them once.",
            f"LOCAL_IGNORED = {_list_lines(ignored, 0)}",
            "# Modules the notebook imports: --local loads them once in a warm process that forks the steps.",
            f"PRELOAD_IMPORTS = {_list_lines([python_literal(s) for s in model['imports']], 0)}",
            *self._install_constants(components, settings["install_packages"]),
            "# The hyperparameter search of the notebook's katib_metadata (--tune, --katib-experiment), or None.",
            f"TUNING = {python_literal(model.get('tuning'))}",
        ]
        if outputs:
            constants += [
                "# What the pipeline returns: the numbers its pipeline-metrics cell lists and the variables its",
                "# output: tags mark. A pipeline that uses this one as a step reads them as task.outputs[NAME].",
                f"{OUTPUTS} = {_named_tuple([(o['name'], o['type']) for o in outputs])}",
            ]
        functions = [installer.script_function()]
        if model.get("data"):
            constants += self._data_constants(model)
            functions.append(DATA_INPUT_FUNCTION)
        if settings["runtime"] == "embedded":
            functions.append(archive.loader_function(
                "_step_runtime", docstring("Put nbconvert-kfp's step runtime (a zip archive) on sys.path."),
                archive.payload({**{p: archive.minified(t) for p, t in runtime.sources().items()},
                                 **self._local})).rstrip("\n"))
        signature = [f"{parameters[p['name']]}: str = {python_literal(literal_text(p['default']))}"
                     if p["type"] == LITERAL else
                     f"{parameters[p['name']]}: {p['type']} = {python_literal(p['default'])}"
                     for p in model["parameters"]]
        tools = ('def main(argv=None):\n'
                 '    """This script\'s command line: compile, run locally, deploy, draw (--help lists the options)."""\n'
                 '    _script_tools()\n'
                 '    from nbconvert_kfp.script import cli\n\n'
                 '    return cli.main(globals(), argv)\n\n\n')
        tools += archive.loader_function(
            "_script_tools", docstring("Put nbconvert-kfp's script tools (command line, local runs, deployment, "
                                       "DAG picture) on sys.path."),
            archive.payload(script_package.sources()), __version__).rstrip("\n")
        return {
            "header": [f"Kubeflow Pipelines v2 pipeline generated by nbconvert-kfp {__version__} from the notebook "
                       f"{settings['notebook']!r}.".replace("\n", " "),
                       *(USAGE if not model.get("tuning") else (*USAGE[:-2], TUNE_USAGE, *USAGE[-2:]))],
            "imports": imports,
            "constants": constants,
            "functions": functions,
            "components": components,
            "parameters": signature,
            "returns": OUTPUTS if outputs else None,
            "docstring": docstring(f"Notebook {settings['notebook']!r} as a pipeline; "
                                   "data flows between its steps as KFP artifacts."),
            "pipeline": statements,
            "tools": tools,
            "parameter_names": parameters,
            "main": ["sys.exit(main())"],
        }


#: The name this preprocessor had before: ``--MarshalInjector.output_suffix`` keeps working.
class MarshalInjector(ComponentBuilder):
    """The component builder under its former name (configuration sections ``MarshalInjector``)."""
