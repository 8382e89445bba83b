"""The ``nbconvert-kfp`` command line: Kale's flags, the exporter's options on every converting subcommand,
and errors shown with this command's own usage (in process, except where the fake KFP server is reached)."""

from __future__ import annotations

import nbformat
import pytest
import yaml

import fakekfp
from nbconvert_kfp import command

from helpers import EXAMPLES, build_notebook, script_constant

fake_kfp = fakekfp.fake_kfp  # the fixture


@pytest.fixture
def mc(tmp_path, monkeypatch):
    """examples/model_comparison.ipynb as mc.ipynb, in the current folder."""
    (tmp_path / "mc.ipynb").write_bytes((EXAMPLES / "model_comparison.ipynb").read_bytes())
    monkeypatch.chdir(tmp_path)
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_TOKEN", "NB_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_kales_command_line_writes_the_script_with_that_name_and_image_and_compiles_it(mc, capsys):
    status = command.main(["--nb", "mc.ipynb", "--pipeline_name", "kale-style", "--docker_image", "python:3.12-slim",
                           "--pipeline_descr", "from Kale", "--experiment_name", "kale-exp"])
    assert status == 0, capsys.readouterr()
    script = mc / "mc_pipeline.py"
    assert script_constant(script, "PIPELINE_NAME") == "kale-style"
    assert script_constant(script, "BASE_IMAGE") == "python:3.12-slim"
    assert script_constant(script, "PIPELINE_DESCRIPTION") == "from Kale"
    assert script_constant(script, "EXPERIMENT") == "kale-exp"
    spec = yaml.safe_load((mc / "mc_pipeline.yaml").read_text())
    assert spec["pipelineInfo"]["name"] == "kale-style"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"python:3.12-slim"}


def test_kales_volume_flags_override_the_notebook_metadata(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    nb = build_notebook([("step:a", "x = 1")], {"kubeflow_notebook": {
        "volumes": [{"type": "new_pvc", "name": "scratch", "mount_point": "/scratch", "size": 1, "size_type": "Gi"}]}})
    nbformat.write(nb, tmp_path / "vol.ipynb")
    assert command.main(["--nb", "vol.ipynb", "--storage-class-name", "fast-ssd", "--volume-access-mode", "rwm"]) == 0
    text = (tmp_path / "vol_pipeline.py").read_text()
    assert "storage_class_name='fast-ssd'" in text.replace('"', "'") and "ReadWriteMany" in text


def test_kales_upload_and_run_flags_reach_the_kfp_host(mc, fake_kfp, capsys):
    host = fake_kfp.url.split("://", 1)[1]  # Kale's <host>:<port>, without a scheme
    assert command.main(["--nb", "mc.ipynb", "--upload_pipeline", "--kfp_host", host]) == 0, capsys.readouterr()
    assert fake_kfp.pipelines and not fake_kfp.runs
    assert command.main(["--nb", "mc.ipynb", "--run_pipeline", "--kfp_host", host]) == 0
    assert len(fake_kfp.runs) == 1


def test_a_kale_flag_that_means_nothing_here_is_one_line(mc, capsys):
    assert command.main(["--nb", "mc.ipynb", "--katib"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nbconvert-kfp: unrecognized argument '--katib'") and err.count("\n") == 1
    assert not (mc / "mc_pipeline.py").exists()


@pytest.mark.parametrize("options, image, name", [
    (["--KFPExporter.base_image=python:3.10-slim"], "python:3.10-slim", "mc"),
    (["--image", "python:3.13-slim", "--pipeline-name", "short-forms"], "python:3.13-slim", "short-forms"),
    (["--KFPExporter.pipeline_name=long-form", "--image", "python:3.12"], "python:3.12", "long-form"),
])
def test_compile_takes_the_exporters_options(mc, capsys, options, image, name):
    assert command.main(["compile", "mc.ipynb", *options]) == 0, capsys.readouterr()
    spec = yaml.safe_load((mc / "mc_pipeline.yaml").read_text())
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {image}
    assert spec["pipelineInfo"]["name"] == name


def test_other_preprocessors_options_pass_through(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    nbformat.write(build_notebook([("step:a", "x = 1"), ("step:b", "y = x + mystery")]), tmp_path / "dyn.ipynb")
    assert command.main(["compile", "dyn.ipynb"]) == 1
    assert "did you mean" not in capsys.readouterr().err
    assert command.main(["compile", "dyn.ipynb", "--DependencyAnalyzer.undefined_names=warn"]) == 0
    assert "warning: cell 2: step 'b' reads 'mystery'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["compile", "mc.ipynb", "--Bogus.x=1"], "unrecognized argument '--Bogus.x=1'"),
    (["compile", "mc.ipynb", "--KFPExporter.install_packages=maybe"], "bad exporter option"),
    (["compile", "mc.ipynb", "--data-files", "sometimes"], "bad exporter option"),
    (["local", "mc.ipynb", "-p", "N_ESTIMATORS", "lots"], "parameter N_ESTIMATORS: expected an integer, got 'lots'"),
    (["status", "run-1", "--KFPExporter.base_image=x"], "unrecognized arguments: --KFPExporter.base_image=x"),
    (["status", "run-1", "-p", "C", "-1"], "unrecognized arguments: -p C -1"),
])
def test_bad_options_and_values_are_one_line_of_this_command(mc, capsys, argv, words):
    assert command.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nbconvert-kfp {argv[0]}: ") and err.count("\n") == 1, err
    assert words in err and "THIS_SCRIPT" not in err and "Traceback" not in err


def test_a_negative_value_in_scientific_notation_reaches_the_pipeline(mc, capsys):
    assert command.main(["compile", "mc.ipynb", "-p", "C", "-1e-3", "--output", "out.yaml"]) == 0, capsys.readouterr()
    spec = yaml.safe_load((mc / "out.yaml").read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["C"]["defaultValue"] == -0.001
