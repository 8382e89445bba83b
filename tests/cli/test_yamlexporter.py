"""The ``kfp_yaml`` exporter: the compiled KFP IR YAML, the file a user uploads in the KFP UI."""

from __future__ import annotations

import subprocess

import nbformat
import pytest
import yaml
from nbconvert.exporters import get_export_names, get_exporter
from traitlets.config import Config

from nbconvert_kfp.exporters import kfpyaml as yamlexporter
from nbconvert_kfp.errors import KFPExportError, TagError
from nbconvert_kfp.exporters import KFPExporter
from nbconvert_kfp.exporters import KFPYAMLExporter

from helpers import JUPYTER, step_tasks


CELLS = [
    (["imports"], "import math"),
    (["pipeline-parameters"], "SCALE = 2"),
    (["step:load"], "values = [1, 2, 3]"),
    (["step:double", "prev:load"], "doubled = [v * SCALE for v in values]"),
    (["step:report", "prev:double"], "total = math.fsum(doubled)\nprint(total)"),
]
BROKEN = [
    (["step:load"], "values = [1, 2, 3]"),
    (["step:train", "prev:lod"], "print(values)"),
]


def export_yaml(nb, name="sales", **kwargs):
    return KFPYAMLExporter(**kwargs).from_notebook_node(nb, {"metadata": {"name": name}})


def test_registered_as_kfp_yaml_next_to_kfp():
    names = get_export_names()
    assert {"kfp", "kfp_yaml"} <= set(names)
    assert get_exporter("kfp_yaml") is KFPYAMLExporter
    assert issubclass(KFPYAMLExporter, KFPExporter)
    assert KFPYAMLExporter.output_mimetype == "application/yaml"
    assert KFPYAMLExporter().file_extension == ".yaml"


def test_output_is_ir_yaml_that_names_the_pipeline(make_nb):
    output, resources = export_yaml(make_nb(CELLS))
    ir = yaml.safe_load(output)
    assert ir["pipelineInfo"]["name"] == "sales"
    assert set(step_tasks(ir)) == {"load", "double", "report"}
    assert ir["root"]["inputDefinitions"]["parameters"]["SCALE"]["defaultValue"] == 2
    assert resources["output_extension"] == "_pipeline.yaml"
    assert not resources.get("outputs"), "extra outputs would turn the server download into a zip"
    assert "pipeline" in resources["kfp"], "the pipeline model stays available to other tools"


def test_output_is_the_yaml_the_script_writes(tmp_path, make_nb, convert, run_script_compile):
    nb = make_nb(CELLS)
    script, _ = convert(nb, name="sales")
    script_path = tmp_path / "sales_pipeline.py"
    script_path.write_text(script, encoding="utf-8")
    run_script_compile(script_path)
    output, _ = export_yaml(nb)
    assert output == script_path.with_suffix(".yaml").read_text(encoding="utf-8")


def test_every_kfpexporter_option_applies(make_nb):
    config = Config({"KFPExporter": {"pipeline_name": "nightly-sales", "base_image": "python:3.12-slim",
                                     "script_suffix": "_kfp.py"}})
    output, resources = export_yaml(make_nb(CELLS), config=config)
    ir = yaml.safe_load(output)
    assert ir["pipelineInfo"]["name"] == "nightly-sales"
    images = {executor["container"]["image"] for executor in ir["deploymentSpec"]["executors"].values()}
    assert images == {"python:3.12-slim"}
    assert resources["output_extension"] == "_kfp.yaml"


def test_bad_notebook_raises_the_kfp_error(make_nb, convert):
    with pytest.raises(TagError) as script_error:
        convert(make_nb(BROKEN))
    with pytest.raises(TagError) as yaml_error:
        export_yaml(make_nb(BROKEN))
    assert str(yaml_error.value) == str(script_error.value)
    assert yaml_error.value.cell_index == 1


def test_compiler_failure_becomes_a_kfp_error(make_nb, monkeypatch):
    def fail(script):
        raise ValueError("no such input")

    monkeypatch.setattr(yamlexporter, "compile_script", fail)
    with pytest.raises(KFPExportError, match="could not compile .* ValueError: no such input"):
        export_yaml(make_nb(CELLS))


def test_cli_writes_stem_pipeline_yaml(tmp_path, make_nb):
    nbformat.write(make_nb(CELLS), tmp_path / "sales.ipynb")
    result = subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp_yaml", "sales.ipynb"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ir = yaml.safe_load((tmp_path / "sales_pipeline.yaml").read_text(encoding="utf-8"))
    assert ir["pipelineInfo"]["name"] == "sales"


def test_cli_on_bad_notebook_fails_cleanly_without_output(tmp_path, make_nb):
    nbformat.write(make_nb(BROKEN), tmp_path / "broken.ipynb")
    result = subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp_yaml", "broken.ipynb"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "tag 'prev:lod' names step 'lod'" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.ipynb"]
