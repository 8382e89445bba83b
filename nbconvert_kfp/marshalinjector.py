"""Marshal injector: the third preprocessor, wiring each step's variables to KFP artifacts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode

from .naming import Namer, kfp_name
from .pyliteral import code_literal, python_literal
from .tagparser import RESOURCE_KEY

#: Module-level names of the generated script that nothing else may take.
SCRIPT_NAMES = frozenset({
    "annotations", "argparse", "json", "os", "sys", "Path", "NamedTuple", "dsl", "kfp", "compiler", "local",
    "Artifact", "Input", "Output", "Metrics", "pipeline", "main", "parse_arguments", "run_local",
    "compile_pipeline", "comment_header", "parse_value", "re", "PipelineOutputs", "PIPELINE_NAME", "PIPELINE_DESCRIPTION", "BASE_IMAGE",
    "EXPERIMENT", "INSTALL_KFP", "PRELOAD_IMPORTS", "PARAMETER_TYPES", "STEP_NAMES", "_step_runtime", "_notebook_prelude", "_convert",
})
#: Names a component function body uses for itself.
COMPONENT_LOCALS = frozenset({"step", "executor_input"})

#: The runtime modules carried into every step, in load order.
RUNTIME_MODULES = ("marshal", "runtime", "launcher")


@lru_cache(maxsize=1)
def runtime_sources() -> tuple[tuple[str, str], ...]:
    """Return ``(module name, code literal)`` for each runtime module the steps carry."""
    package = Path(__file__).parent
    return tuple((name, code_literal((package / f"{name}.py").read_text(encoding="utf-8")))
                 for name in RUNTIME_MODULES)


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

        outputs_by_step: dict[str, dict[str, str]] = {}
        pipeline_outputs = []
        for step in model["steps"]:
            component = self._component(step, functions, tasks, param_ident, param_type, outputs_by_step)
            step["component"] = component
            if component["metrics"]:
                pipeline_outputs.append({"ident": namer.take(f"{component['function']}_metrics"),
                                         "task": component["task"], "output": component["metrics"]["ident"]})
        pipeline = model["pipeline"]
        model["script"] = {
            "name": python_literal(pipeline["name"]),
            "description": python_literal(pipeline["description"]) if pipeline["description"] else None,
            "base_image": python_literal(pipeline["base_image"]),
            "experiment": python_literal(pipeline["experiment"]),
            "notebook": python_literal(pipeline["notebook"]),
            "parameters": parameters,
            "outputs": pipeline_outputs,
            "prelude": [(cell["index"], code_literal(cell["source"])) for cell in model["prelude"]],
            "runtime": runtime_sources(),
            "preload": [python_literal(statement) for statement in model["imports"]],
            "step_names": [(python_literal(kfp_name(s["component"]["function"], "step")),
                            python_literal(s["name"])) for s in model["steps"]],
        }
        return nb, resources

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
            signature.append(f"{ident}: Output[Artifact]")
            saves.append((python_literal(var), ident))
        metrics = None
        if step["metrics"]:
            ident = namer.take("metrics")
            signature.append(f"{ident}: Output[Metrics]")
            metrics = {"ident": ident, "names": [python_literal(m) for m in step["metrics"]]}
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
            "cells": [(c["index"], code_literal(c["source"])) for c in step["cells"]],
        }

