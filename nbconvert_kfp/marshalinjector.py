"""Marshal injector: the third preprocessor, wiring each step's variables to KFP artifacts."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode

from . import dag
from .errors import NotebookError
from .naming import Namer, kfp_name
from .packages import requirement, requirements
from .pyliteral import code_literal, python_literal
from .tagparser import RESOURCE_KEY
from .taskoption import (KUBERNETES_KINDS, create_volume, created_volume_calls, describe, effective_options,
                         task_calls, volume_calls)

#: Module-level names of the generated script that nothing else may take.
SCRIPT_NAMES = frozenset({
    "annotations", "argparse", "json", "os", "sys", "Path", "NamedTuple", "dsl", "kfp", "compiler", "local",
    "Artifact", "ClassificationMetrics", "Dataset", "HTML", "Input", "Model", "Output", "Metrics", "pipeline", "main", "parse_arguments", "run_local",
    "compile_pipeline", "comment_header", "parse_value", "re", "PipelineOutputs", "PIPELINE_NAME", "PIPELINE_DESCRIPTION", "BASE_IMAGE",
    "EXPERIMENT", "LOCAL_RUN", "LOCAL_IGNORED", "PIP_INDEX_URLS", "installs", "kubernetes", "PRELOAD_IMPORTS", "PARAMETER_TYPES", "STEP_NAMES", "_step_runtime", "_script_tools", "_install_modules", "_notebook_prelude", "_convert",
    "deploy", "write_dag",
})
#: Names a component function body uses for itself.
COMPONENT_LOCALS = frozenset({"step", "executor_input"})

#: The runtime modules carried into every step, in load order.
RUNTIME_MODULES = ("marshal", "report", "runtime")
#: Modules only the script itself uses (local runs, deployment), kept out of the steps.
SCRIPT_MODULES = ("launcher", "deployment")


@lru_cache(maxsize=2)
def runtime_sources(modules: tuple[str, ...] = RUNTIME_MODULES) -> tuple[tuple[str, str], ...]:
    """Return ``(module name, code literal)`` for each embedded module, read from this package."""
    package = Path(__file__).parent
    return tuple((name, code_literal((package / f"{name}.py").read_text(encoding="utf-8")))
                 for name in modules)


def _dsl_imports(steps: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> str:
    """The ``kfp.dsl`` names the script uses: annotations of the components and pipeline outputs."""
    names = {match for step in steps for argument in step["component"]["signature"]
             for match in re.findall(r"\b(Input|Output)\[(\w+)\]", argument) for match in match}
    names |= {output["type"] for output in outputs} | ({"Metrics"} if outputs else set())
    return ", ".join(sorted(names))


def _cell_literals(cell: dict[str, Any]) -> tuple[int, str, str | None]:
    """A cell's index, its Python source, and the text the user wrote when that differs (magics)."""
    original = cell.get("original")
    return cell["index"], code_literal(cell["source"]), code_literal(original) if original else None


class MarshalInjector(Preprocessor):
    """Give every step a KFP component: parameters in, one artifact per variable in and out.

    Stores in ``resources["kfp"]`` the identifiers and source literals the template
    prints: ``steps[i]["component"]``, ``script`` (pipeline-level names) and the
    runtime sources the steps carry.
    """

    output_suffix = Unicode(
        "_out", help="Suffix of output artifact names: variable 'df' is saved as artifact 'df_out'.",
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Compute component signatures, call arguments and literals for the template."""
        model = resources[RESOURCE_KEY]
        self._reported: set[str] = set()
        namer = Namer(SCRIPT_NAMES)
        parameters = []
        param_ident = {}
        for parameter in model["parameters"]:
            ident = namer.take(parameter["name"], "param")
            param_ident[parameter["name"]] = ident
            parameters.append({
                "ident": ident, "name": python_literal(parameter["name"]), "annotation": parameter["type"],
                "default": python_literal(parameter["default"]),
            })
        param_type = {p["name"]: p["type"] for p in model["parameters"]}
        functions = {step["name"]: namer.take(step["name"], "step") for step in model["steps"]}
        tasks = {name: namer.take(f"{function}_task") for name, function in functions.items()}

        pipeline = model["pipeline"]
        setup, claims = self._volumes(pipeline["volumes"], model["steps"], namer)
        modules_behind: dict[str, set[str]] = {}
        ignored: list[str] = []
        outputs_by_step: dict[str, dict[str, str]] = {}
        pipeline_outputs = []
        for step in model["steps"]:
            component = self._component(step, functions, tasks, param_ident, param_type, outputs_by_step)
            options = effective_options(step["options"])
            unapplied = self._apply_options(component, step, options, pipeline, claims)
            if unapplied:
                ignored.append(python_literal(f"step {step['name']!r}: {', '.join(unapplied)}"))
            modules_behind[step["name"]] = set(step["modules"]).union(
                *(modules_behind[p] for p in step["input_sources"].values()))
            component["packages"] = [python_literal(r) for r in self._packages(
                step, options, modules_behind[step["name"]], pipeline)]
            reports = [o["enabled"] for o in options if o["kind"] == "report"]
            if (reports[-1] if reports else pipeline["reports"]):
                component["report"] = self._report_output(component)
                pipeline_outputs.append({"ident": namer.take(f"{component['function']}_report"), "type": "HTML",
                                         "task": component["task"], "output": component["report"]})
            component["ipython"] = step["displays"]
            step["component"] = component
            if component["metrics"]:
                pipeline_outputs.append({"ident": namer.take(f"{component['function']}_metrics"), "type": "Metrics",
                                         "task": component["task"], "output": component["metrics"]["ident"]})
        uses_kubernetes = any("kubernetes." in call for step in model["steps"]
                              for call in step["component"]["options"]) or bool(setup)
        model["script"] = {
            "setup": setup,
            "uses_kubernetes": uses_kubernetes,
            "pip_index_urls": python_literal(pipeline["pip_index_urls"]),
            "local_ignored": ignored,
            "name": python_literal(pipeline["name"]),
            "description": python_literal(pipeline["description"]) if pipeline["description"] else None,
            "base_image": python_literal(pipeline["base_image"]),
            "experiment": python_literal(pipeline["experiment"]),
            "notebook": python_literal(pipeline["notebook"]),
            "docstring": python_literal(f"Notebook {pipeline['notebook']!r} as a pipeline; "
                                        "data flows between its steps as KFP artifacts."),
            "parameters": parameters,
            "outputs": pipeline_outputs,
            "prelude": [_cell_literals(cell) for cell in model["prelude"]],
            "runtime": runtime_sources(RUNTIME_MODULES),
            "tools": runtime_sources(SCRIPT_MODULES),
            "preload": [python_literal(statement) for statement in model["imports"]],
            "reports": any("report" in s["component"] for s in model["steps"]),
            "dsl_imports": _dsl_imports(model["steps"], pipeline_outputs),
            "step_names": [(python_literal(kfp_name(s["component"]["function"], "step")),
                            python_literal(s["name"])) for s in model["steps"]],
            # The picture of the DAG, precomputed: the script writes it with --dag.
            "dag": {"svg": code_literal(dag.svg(model)), "mermaid": code_literal(dag.mermaid(model))},
        }
        return nb, resources

    @staticmethod
    def _apply_options(component, step, options, pipeline, claims) -> list[str]:
        """Set the step's image, task calls and volume mounts; return what a local run cannot apply."""
        task = component["task"]
        image = [o["image"] for o in options if o["kind"] == "image"]
        component["base_image"] = python_literal(image[-1]) if image else "BASE_IMAGE"
        component["options"] = task_calls(options, task, pipeline["enable_caching"])
        mounted = [v for v in pipeline["volumes"] if v["steps"] is None or step["name"] in v["steps"]]
        for volume in mounted:
            component["options"] += volume_calls(volume, task, *claims[volume["name"]])
        unapplied = [describe(o) for o in options if o["kind"] in ("limit", "request") or o["kind"] in
                     KUBERNETES_KINDS] + [f"volume {v['name']} at {v['mount_point']}" for v in mounted]
        return unapplied + [f"image {image[-1]}"] if image else unapplied

    @staticmethod
    def _report_output(component: dict[str, Any]) -> str:
        """Add the step's HTML report to its component signature; return the parameter name."""
        taken = {argument.partition(":")[0] for argument in component["signature"]}
        ident = Namer(COMPONENT_LOCALS | taken).take("report")
        component["signature"].append(f"{ident}: Output[HTML]")
        return ident

    @staticmethod
    def _volumes(volumes, steps, namer) -> tuple[list[str], dict[str, tuple[str, str | None]]]:
        """Statements creating per-run PVCs; per volume its claim-name expression and PVC variable."""
        names = {step["name"] for step in steps}
        setup, claims = [], {}
        for volume in volumes:
            unknown = [s for s in volume["steps"] or [] if s not in names]
            if unknown:
                raise NotebookError(f"volume {volume['name']!r} names steps that do not exist: "
                                    f"{', '.join(unknown)}", None, "volumes")
            if volume["type"] == "new_pvc":
                variable = namer.take(f"{volume['name']}_pvc", "volume")
                setup.append(create_volume(volume, variable))
                setup += created_volume_calls(variable)
                claims[volume["name"]] = (f'{variable}.outputs["name"]', variable)
            else:
                claims[volume["name"]] = (python_literal(volume["name"]), None)
        return setup, claims

    def _packages(self, step, options, modules, pipeline) -> list[str]:
        """What the step pip-installs on a cluster: its imports' distributions, pinned, plus extras."""
        found: list[str] = []
        if pipeline["install_packages"]:
            found, unknown = requirements(modules)
            for module in unknown:
                if module not in self._reported:
                    self._reported.add(module)
                    self.log.warning("module %r is imported but no installed distribution provides it; "
                                     "add it with a 'package:<requirement>' tag or "
                                     "--KFPExporter.extra_packages", module)
            extras = [requirement(name) for name in ("dill", "ipython" if step["uses_ipython"] else "")
                      if name and requirement(name)]
            found += [r for r in extras if r.partition("==")[0].lower() not in
                      {f.partition("==")[0].lower() for f in found}]
        found += pipeline["extra_packages"] + [o["requirement"] for o in options if o["kind"] == "package"]
        return list(dict.fromkeys(found))

    def _component(self, step, functions, tasks, param_ident, param_type, outputs_by_step) -> dict[str, Any]:
        namer = Namer(COMPONENT_LOCALS | set(param_ident.values()))
        function = functions[step["name"]]
        signature = [f"{param_ident[p]}: {param_type[p]}" for p in step["parameters"]]
        arguments = [f"{param_ident[p]}={param_ident[p]}" for p in step["parameters"]]
        loads, saves = [], []
        data_parents = set()
        for var in step["inputs"]:
            ident = namer.take(var, "value")
            source = step["input_sources"][var]
            data_parents.add(source)
            signature.append(f"{ident}: Input[Artifact]")
            arguments.append(f'{ident}={tasks[source]}.outputs[{python_literal(outputs_by_step[source][var])}]')
            loads.append((python_literal(var), ident))
        outputs_by_step[step["name"]] = {}
        for var in step["outputs"]:
            ident = namer.take(f"{var}{self.output_suffix}", "value")
            outputs_by_step[step["name"]][var] = ident
            signature.append(f"{ident}: Output[{step['output_types'][var]}]")
            saves.append((python_literal(var), ident))
        metrics = None
        if step["metrics"]:
            ident = namer.take("metrics")
            classification = namer.take("classification_metrics")
            signature.append(f"{ident}: Output[Metrics]")
            signature.append(f"{classification}: Output[ClassificationMetrics]")
            metrics = {"ident": ident, "classification": classification,
                       "names": [python_literal(m) for m in step["metrics"]]}
        upstream = [("upstream imports", code_literal("\n".join(step["imports"])))] if step["imports"] else []
        upstream += [("upstream definitions", code_literal(d)) for d in step["definitions"]]
        cells = ", ".join(str(c["index"]) for c in step["cells"])
        component_name = kfp_name(function, "step")
        return {
            "function": function,
            "task": tasks[step["name"]],
            "name": python_literal(step["name"]),
            "docstring": python_literal(f"Step {step['name']!r} (notebook cells {cells})."),
            "display_name": python_literal(step["name"]) if step["name"] != component_name else None,
            "signature": signature,
            "arguments": arguments,
            "after": [tasks[p] for p in step["parents"] if p not in data_parents],
            "define": [(python_literal(p), param_ident[p]) for p in step["parameters"]],
            "loads": loads,
            "saves": saves,
            "metrics": metrics,
            "upstream": [(python_literal(label), code) for label, code in upstream],
            "cells": [_cell_literals(c) for c in step["cells"]],
        }

