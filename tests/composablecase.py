"""The composable test notebook converted and compiled, and a pipeline that uses it as a step."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from nbconvert_kfp.exporters import KFPExporter, compile_script

from helpers import NOTEBOOKS

#: A pipeline that uses the notebook's pipeline as a step, runs with kfp.local and prints its outputs.
OUTER = textwrap.dedent('''
    import importlib.util, json, os, sys
    from typing import NamedTuple
    from kfp import compiler, dsl, local
    from kfp.components import load_component_from_file
    from kfp.dsl import Artifact, Input

    how, path = sys.argv[1], sys.argv[2]
    if how == "yaml":
        inner = load_component_from_file(path)
    else:
        spec = importlib.util.spec_from_file_location("composable_pipeline", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        inner = module.pipeline


    @dsl.component
    def double(x: float) -> float:
        return 2 * x


    @dsl.component
    def mean_of(summary: Input[Artifact]) -> float:
        import os
        import pickle

        with open(os.path.join(summary.path, "value." + summary.metadata["format"]), "rb") as fh:
            return pickle.load(fh)["mean"]


    Outer = NamedTuple("Outer", [("doubled", float), ("mean", float)])


    @dsl.pipeline(name="outer")
    def outer(scale: float = 3.0) -> Outer:
        fitted = inner(SCALE=scale)
        return Outer(doubled=double(x=fitted.outputs["score"]).output,
                     mean=mean_of(summary=fitted.outputs["summary"]).output)


    compiler.Compiler().compile(outer, "outer.yaml")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=os.path.abspath("root"))
    print("@@" + json.dumps(outer(scale=3.0).outputs))
''')

@pytest.fixture(scope="module")
def composable(tmp_path_factory):
    """The test notebook converted (steps install nothing, so kfp.local runs them here) and compiled in-process."""
    folder = tmp_path_factory.mktemp("composable")
    shutil.copy(NOTEBOOKS / "composable.ipynb", folder)
    exporter = KFPExporter(install_packages=False, install_kfp_package=False)
    text, _ = exporter.from_filename(str(folder / "composable.ipynb"))
    script = folder / "composable_pipeline.py"
    script.write_text(text, encoding="utf-8")
    (folder / "composable_pipeline.yaml").write_text(compile_script(text), encoding="utf-8")
    (folder / "outer.py").write_text(OUTER, encoding="utf-8")
    return folder
