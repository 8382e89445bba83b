"""Compiled IR: compile a generated script and read its pipeline and platform specs by task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from helpers import step_tasks

TIMEOUT = 300


def compile_all(script: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Compile with ``--output``; return the process and every YAML document it wrote."""
    output = script.with_name(script.stem + "_ir.yaml")
    result = subprocess.run([sys.executable, str(script), "--output", str(output)], cwd=script.parent,
                            capture_output=True, text=True, timeout=TIMEOUT)
    docs = list(yaml.safe_load_all(output.read_text(encoding="utf-8"))) if output.exists() else []
    return result, docs


class IR:
    """The compiled pipeline spec and the kfp-kubernetes platform spec, looked up by task."""

    def __init__(self, docs: list[dict]):
        assert docs, "no YAML documents"
        self.spec = docs[0]
        self.platform = docs[1] if len(docs) > 1 else None
        self.all_tasks = self.spec["root"]["dag"]["tasks"]
        #: the tasks of the notebook's steps (not the shared-code task)
        self.tasks = step_tasks(self.spec)

    def executor(self, task):
        return self.spec["components"][self.all_tasks[task]["componentRef"]["name"]]["executorLabel"]

    def container(self, task):
        return self.spec["deploymentSpec"]["executors"][self.executor(task)]["container"]

    def containers(self):
        return {task: self.container(task) for task in self.tasks}

    def resources(self, task):
        return self.container(task).get("resources", {})

    def env(self, task):
        return {e["name"]: e["value"] for e in self.container(task).get("env", [])}

    def k8s(self, task):
        assert self.platform is not None, "no platform spec document"
        executors = self.platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        return executors.get(self.executor(task), {})

    def caching(self, task):
        return self.tasks[task].get("cachingOptions", {}).get("enableCache", False)

    def mounts(self, task):
        """mount path -> ('pvc', claim name) for an existing claim, ('task', producer task) for a created one."""
        found = {}
        for mount in self.k8s(task).get("pvcMount", []):
            parameter = mount.get("pvcNameParameter", {})
            constant = mount.get("constant") or parameter.get("runtimeValue", {}).get("constant")
            produced = mount.get("taskOutputParameter") or parameter.get("taskOutputParameter")
            if constant:
                found[mount["mountPath"]] = ("pvc", constant)
            else:
                assert produced["outputParameterKey"] == "name", mount
                found[mount["mountPath"]] = ("task", produced["producerTask"])
        return found

    def constant_inputs(self, task):
        parameters = self.tasks[task].get("inputs", {}).get("parameters", {})
        return {k: v["runtimeValue"]["constant"] for k, v in parameters.items() if "runtimeValue" in v}
