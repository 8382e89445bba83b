"""Pipeline-wide settings: trait / CLI option > notebook metadata ``kubeflow_notebook`` > default,
Kale 0.x/1.x and 2.x keys, warnings for unknown and unapplied keys, and volumes (existing and
per-run PVCs) compiled to KFP IR and run locally."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from traitlets.config import Config

from compiledir import IR, compile_all
from helpers import NOTEBOOKS, VENV_BIN, build_notebook, script_constant
from nbconvert_kfp.errors import NotebookError
from nbconvert_kfp.exporters import KFPExporter

TIMEOUT = 300
DEFAULT_IMAGE = f"python:{sys.version_info.major}.{sys.version_info.minor}"
CELLS = [(["imports"], "import os"), (["step:load"], "x = 1"), (["step:train"], "y = x + 1")]


# --- helpers -------------------------------------------------------------------------------------

def convert_nb(nb, name="settings_nb", config=None):
    exporter = KFPExporter(config=config) if config is not None else KFPExporter()
    return exporter.from_notebook_node(nb, {"metadata": {"name": name}})


def settings_of(metadata=None, traits=None, cells=CELLS):
    nb = build_notebook(cells, metadata={"kubeflow_notebook": metadata} if metadata is not None else None)
    script, resources = convert_nb(nb, config=Config({"KFPExporter": traits}) if traits else None)
    return resources["kfp"]["pipeline"], script


def run(cmd, cwd):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def warnings_in(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# --- precedence: trait > metadata > default ------------------------------------------------------

#: setting -> (model key, metadata key, metadata value, trait value, expected model value from
#: metadata, expected from trait, default)
SETTINGS = {
    "pipeline_name": ("name", "pipeline_name", "from-metadata", "from-trait",
                      "from-metadata", "from-trait", "settings-nb"),
    "pipeline_description": ("description", "pipeline_description", "described in metadata",
                             "described by trait", "described in metadata", "described by trait", None),
    "base_image": ("base_image", "base_image", "python:3.12", "python:3.11-slim",
                   "python:3.12", "python:3.11-slim", DEFAULT_IMAGE),
    "experiment": ("experiment", "experiment_name", "exp-metadata", "exp-trait",
                   "exp-metadata", "exp-trait", "Default"),
    "enable_caching": ("enable_caching", "enable_caching", False, True, False, True, None),
    "steps_defaults": ("steps_defaults", "steps_defaults", ["label:from:metadata"], ["label:from:trait"],
                       ["label:from:metadata"], ["label:from:trait"], []),
    "volumes": ("volumes", "volumes", [{"type": "pvc", "name": "meta-pvc", "mount_point": "/meta"}],
                [{"type": "pvc", "name": "trait-pvc", "mount_point": "/trait"}],
                "meta-pvc", "trait-pvc", None),
}


def _value(setting, pipeline):
    key = SETTINGS[setting][0]
    if setting == "volumes":
        return pipeline["volumes"][0]["name"] if pipeline["volumes"] else None
    return pipeline[key]


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_trait_overrides_metadata(setting):
    _, meta_key, meta_value, trait_value, _, from_trait, _ = SETTINGS[setting]
    pipeline, _ = settings_of({meta_key: meta_value}, {setting: trait_value})
    assert _value(setting, pipeline) == from_trait


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_metadata_applies_when_the_trait_is_unset(setting):
    _, meta_key, meta_value, _, from_metadata, _, _ = SETTINGS[setting]
    pipeline, _ = settings_of({meta_key: meta_value})
    assert _value(setting, pipeline) == from_metadata


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_unset_trait_never_overrides_metadata_even_when_other_traits_are_set(setting):
    _, meta_key, meta_value, _, from_metadata, _, _ = SETTINGS[setting]
    others = {"install_packages": False, "extra_packages": ["six"], "pip_index_urls": ["https://example.org/simple"]}
    pipeline, _ = settings_of({meta_key: meta_value}, others)
    assert _value(setting, pipeline) == from_metadata


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_default_without_trait_or_metadata(setting):
    pipeline, _ = settings_of()
    assert _value(setting, pipeline) == SETTINGS[setting][6]


def test_settings_reach_the_generated_script():
    pipeline, script = settings_of({"pipeline_name": "meta-name", "pipeline_description": "meta description",
                                    "base_image": "python:3.12", "experiment_name": "meta-exp"},
                                   {"pipeline_name": "trait-name"})
    assert script_constant(script, "PIPELINE_NAME") == "trait-name"
    assert script_constant(script, "PIPELINE_DESCRIPTION") == "meta description"
    assert script_constant(script, "BASE_IMAGE") == "python:3.12"
    assert script_constant(script, "EXPERIMENT") == "meta-exp"


def test_all_unset_traits_keep_every_metadata_setting():
    metadata = {
        "pipeline_name": "all-meta", "pipeline_description": "all from metadata", "base_image": "python:3.12",
        "experiment_name": "meta-exp", "enable_caching": False, "steps_defaults": ["label:k:v"],
        "volumes": [{"type": "pvc", "name": "meta-pvc", "mount_point": "/meta"}],
    }
    pipeline, _ = settings_of(metadata, {"install_packages": True})
    assert pipeline["name"] == "all-meta"
    assert pipeline["description"] == "all from metadata"
    assert pipeline["base_image"] == "python:3.12"
    assert pipeline["experiment"] == "meta-exp"
    assert pipeline["enable_caching"] is False
    assert pipeline["steps_defaults"] == ["label:k:v"]
    assert [v["name"] for v in pipeline["volumes"]] == ["meta-pvc"]


# --- Kale 0.x / 1.x / 2.x keys and warnings ------------------------------------------------------

def test_kale1_docker_image_and_experiment_object():
    pipeline, _ = settings_of({"docker_image": "python:3.11-slim", "experiment": {"id": "new", "name": "old-exp"}})
    assert pipeline["base_image"] == "python:3.11-slim"
    assert pipeline["experiment"] == "old-exp"


def test_kale2_experiment_name_and_base_image():
    pipeline, _ = settings_of({"base_image": "python:3.12", "experiment_name": "new-exp"})
    assert pipeline["base_image"] == "python:3.12"
    assert pipeline["experiment"] == "new-exp"


def test_unknown_metadata_keys_warn_but_do_not_fail(caplog):
    with caplog.at_level(logging.WARNING):
        pipeline, _ = settings_of({"pipeline_name": "still-works", "shiny_new_key": 1})
    assert pipeline["name"] == "still-works"
    assert any("shiny_new_key" in w for w in warnings_in(caplog)), warnings_in(caplog)


def test_rok_keys_are_recognised_but_not_applied_and_katib_keys_are_read(caplog):
    with caplog.at_level(logging.WARNING):
        settings_of({"katib_run": False, "katib_metadata": {"maxTrialCount": 3}, "autosnapshot": True,
                     "snapshot_volumes": True})
    warnings = [w for w in warnings_in(caplog) if "recognised but not applied" in w]
    assert warnings, warnings_in(caplog)
    for key in ("autosnapshot", "snapshot_volumes"):
        assert any(key in w for w in warnings), (key, warnings)
    assert not any("katib" in w for w in warnings), warnings
    # (tests/test_tuning.py covers what happens to the search)
    assert not any("unknown" in w for w in warnings_in(caplog)), warnings_in(caplog)


def test_kale1_fixture_metadata_in_process(caplog):
    with caplog.at_level(logging.WARNING):
        _, resources = KFPExporter().from_filename(str(NOTEBOOKS / "knobs_kale1_metadata.ipynb"))
    pipeline = resources["kfp"]["pipeline"]
    assert pipeline["name"] == "knobs-kale-one"
    assert pipeline["description"] == "Kale 1.x metadata fixture"
    assert pipeline["base_image"] == "python:3.11-slim"
    assert pipeline["experiment"] == "knobs-experiment"
    assert pipeline["steps_defaults"] == ["label:access-ml-pipeline:true", "limit:memory:1Gi"]
    assert [v["name"] for v in pipeline["volumes"]] == ["data-pvc", "workspace"]
    assert not any("unknown" in w for w in warnings_in(caplog)), warnings_in(caplog)
    assert any("recognised but not applied" in w and "autosnapshot" in w for w in warnings_in(caplog))


@pytest.mark.parametrize("mode, expected", [("rwo", "ReadWriteOnce"), ("rwm", "ReadWriteMany"),
                                            ("rom", "ReadOnlyMany")])
def test_volume_access_mode_of_created_pvcs(mode, expected):
    volume = {"type": "new_pvc", "name": "scratch", "mount_point": "/scratch", "size": 2, "size_type": "Gi"}
    pipeline, script = settings_of({"volumes": [volume], "volume_access_mode": mode,
                                    "storage_class_name": "standard"})
    assert pipeline["volumes"][0]["access_modes"] == [expected]
    create = [line for line in script.splitlines() if "kubernetes.CreatePVC(" in line]
    assert len(create) == 1 and expected in create[0] and "standard" in create[0] and "2Gi" in create[0], create


# --- bad volumes ---------------------------------------------------------------------------------

BAD_VOLUMES = {
    "missing mount_point": {"type": "pvc", "name": "v"},
    "relative mount_point": {"type": "pvc", "name": "v", "mount_point": "data"},
    "unknown type": {"type": "nfs", "name": "v", "mount_point": "/data"},
    "missing name": {"type": "pvc", "mount_point": "/data"},
    "unknown step": {"type": "pvc", "name": "v", "mount_point": "/data", "steps": ["nowhere"]},
}


@pytest.mark.parametrize("case", list(BAD_VOLUMES))
@pytest.mark.parametrize("where", ["metadata", "trait"])
def test_bad_volume_is_a_notebook_error(case, where):
    volumes = [BAD_VOLUMES[case]]
    with pytest.raises(NotebookError) as caught:
        if where == "metadata":
            settings_of({"volumes": volumes})
        else:
            settings_of(None, {"volumes": volumes})
    if case == "unknown step":
        assert "nowhere" in str(caught.value)


def test_volumes_must_be_a_list():
    with pytest.raises(NotebookError):
        settings_of({"volumes": {"type": "pvc", "name": "v", "mount_point": "/data"}})


# --- compiled notebooks: one module-wide batch of subprocesses -----------------------------------

VOLUME_CELLS = [
    (["imports"], "import os"),
    (["step:load"], 'data_path = "/data/input.csv"'),
    (["step:train"], "model = len(data_path)"),
    (["step:report"], "print(model)"),
]
VOLUME_METADATA = {"kubeflow_notebook": {
    "enable_caching": False,
    "volumes": [
        {"type": "pvc", "name": "raw-data", "mount_point": "/data", "expose_as_env_var": True},
        {"type": "pvc", "name": "models", "mount_point": "/models", "steps": ["train"]},
        {"type": "new_pvc", "name": "scratch", "mount_point": "/scratch", "size": 5, "size_type": "Gi"},
    ],
}}
CLI_TRAITS = ["--KFPExporter.pipeline_name=from-cli", "--KFPExporter.base_image=python:3.12-alpine",
              "--KFPExporter.pipeline_description=described on the command line",
              "--KFPExporter.experiment=cli-experiment", "--KFPExporter.enable_caching=False",
              "--KFPExporter.steps_defaults=label:team:cli", "--KFPExporter.steps_defaults=limit:cpu:1"]


def _cli_job(directory: Path):
    shutil.copy(NOTEBOOKS / "knobs_kale1_metadata.ipynb", directory)
    converted = run([VENV_BIN / "jupyter", "nbconvert", "--to", "kfp", *CLI_TRAITS, "knobs_kale1_metadata.ipynb"],
                    directory)
    script = directory / "knobs_kale1_metadata_pipeline.py"
    if converted.returncode != 0 or not script.exists():
        return converted, None, []
    return (converted, script, *compile_all(script))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("knobs_settings")
    scripts = {}
    for stem in ("kale2_pvc", "kale2_pvc_env_var"):
        directory = root / stem
        directory.mkdir()
        script, _ = KFPExporter().from_filename(str(NOTEBOOKS / f"{stem}.ipynb"))
        scripts[stem] = directory / f"{stem}_pipeline.py"
        scripts[stem].write_text(script, encoding="utf-8")
    (root / "volumes").mkdir()
    script, _ = convert_nb(build_notebook(VOLUME_CELLS, metadata=VOLUME_METADATA), name="knobs_volumes")
    scripts["volumes"] = root / "volumes" / "knobs_volumes_pipeline.py"
    scripts["volumes"].write_text(script, encoding="utf-8")
    (root / "cli").mkdir()
    pool = ThreadPoolExecutor(3)
    jobs = {"cli": pool.submit(_cli_job, root / "cli")}
    for key, path in scripts.items():
        jobs[f"{key}:compile"] = pool.submit(compile_all, path)
        jobs[f"{key}:local"] = pool.submit(run, [sys.executable, path, "--local", "--verbose"], path.parent)
    yield {key: job for key, job in jobs.items()}
    pool.shutdown(wait=True, cancel_futures=True)


def compiled(lab, key):
    result, docs = lab[f"{key}:compile"].result()
    assert result.returncode == 0, result.stderr[-4000:]
    return IR(docs)


def local(lab, key):
    result = lab[f"{key}:local"].result()
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    return result.stdout


# CLI options override the Kale 1.x metadata; what they leave unset still comes from it.

def test_cli_options_override_kale1_metadata(lab):
    converted, script, result, docs = lab["cli"].result()
    assert converted.returncode == 0, converted.stderr
    assert result.returncode == 0, result.stderr[-4000:]
    assert script_constant(script.read_text(encoding="utf-8"), "EXPERIMENT") == "cli-experiment"
    ir = IR(docs)
    assert ir.spec["pipelineInfo"]["name"] == "from-cli"
    assert ir.spec["pipelineInfo"]["description"] == "described on the command line"
    for task in ("prepare", "summarise"):
        assert ir.container(task)["image"] == "python:3.12-alpine", task
        assert ir.caching(task) is False, task
        # the trait's steps_defaults replace the metadata's (label access-ml-pipeline, memory 1Gi)
        assert ir.k8s(task)["podMetadata"]["labels"] == {"team": "cli"}, task
        resources = ir.container(task).get("resources", {})
        assert resources.get("resourceCpuLimit") == "1", task
        assert "resourceMemoryLimit" not in resources and "memoryLimit" not in resources, task


def test_cli_leaves_kale1_volumes_storage_class_and_access_mode_from_metadata(lab):
    _, _, result, docs = lab["cli"].result()
    assert result.returncode == 0, result.stderr[-4000:]
    ir = IR(docs)
    assert "createpvc" in ir.tasks
    inputs = ir.constant_inputs("createpvc")
    assert inputs["access_modes"] == ["ReadWriteMany"]  # volume_access_mode: rwm
    assert inputs["storage_class_name"] == "fast-ssd"
    assert inputs["size"] == "5Gi"
    assert inputs["pvc_name_suffix"] == "-workspace"
    assert inputs["annotations"] == {"backup": "nightly"}
    # a per-run PVC is created on every run: KFP must never serve its name from the cache
    assert ir.caching("createpvc") is False
    for task in ("prepare", "summarise"):
        assert ir.mounts(task) == {"/home/jovyan/data": ("pvc", "data-pvc"),
                                   "/workspace": ("task", "createpvc")}, task


# A Kale 2.x metadata notebook with existing, per-step and per-run volumes.

def test_existing_pvc_mounted_into_every_step_with_env_var(lab):
    ir = compiled(lab, "volumes")
    for task in ("load", "train", "report"):
        assert ir.mounts(task)["/data"] == ("pvc", "raw-data"), task
        assert ir.env(task).get("KALE_VOLUME_RAW_DATA") == "/data", task
        assert "KALE_VOLUME_MODELS" not in ir.env(task), task


def test_volume_with_steps_is_mounted_only_there(lab):
    ir = compiled(lab, "volumes")
    assert ir.mounts("train")["/models"] == ("pvc", "models")
    for task in ("load", "report"):
        assert "/models" not in ir.mounts(task), task


def test_new_pvc_is_created_per_run_and_mounted(lab):
    ir = compiled(lab, "volumes")
    assert "createpvc" in ir.tasks
    inputs = ir.constant_inputs("createpvc")
    assert inputs["size"] == "5Gi"
    assert inputs["access_modes"] == ["ReadWriteOnce"]
    assert inputs["pvc_name_suffix"] == "-scratch"
    assert "storage_class_name" not in inputs
    for task in ("load", "train", "report"):
        assert ir.mounts(task)["/scratch"] == ("task", "createpvc"), task
        assert "createpvc" in ir.tasks[task].get("dependentTasks", []), task
        assert "KALE_VOLUME_SCRATCH" not in ir.env(task), task


def test_new_pvc_is_deleted_after_the_steps_that_mount_it(lab):
    ir = compiled(lab, "volumes")
    [delete] = [name for name in ir.tasks if name.startswith("deletepvc")]
    assert set(ir.tasks[delete]["dependentTasks"]) >= {"createpvc", "load", "train", "report"}
    parameter = ir.tasks[delete]["inputs"]["parameters"]["pvc_name"]["taskOutputParameter"]
    assert parameter == {"outputParameterKey": "name", "producerTask": "createpvc"}


def test_new_pvc_without_a_storage_class_is_warned_about_and_kept_when_asked(make_nb, caplog):
    volume = {"type": "new_pvc", "name": "scratch", "mount_point": "/scratch", "size": 1, "keep": True}
    nb = build_notebook([(["step:a"], "x = 1")], metadata={"kubeflow_notebook": {"volumes": [volume]}})
    with caplog.at_level(logging.WARNING):
        script, _ = convert_nb(nb, name="kept")
    assert "volume 'scratch' has no storage_class_name" in caplog.text and "'standard'" in caplog.text
    assert "DeletePVC" not in script
    volume.update(keep=False, storage_class_name="fast")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        script, _ = convert_nb(build_notebook([(["step:a"], "x = 1")],
                                              metadata={"kubeflow_notebook": {"volumes": [volume]}}), name="deleted")
    assert "storage_class_name" not in caplog.text and "kubernetes.DeletePVC(" in script


def test_metadata_enable_caching_false_reaches_every_step(lab):
    ir = compiled(lab, "volumes")
    for task in ("load", "train", "report"):
        assert ir.caching(task) is False, task


def test_local_run_with_volumes_succeeds_and_lists_them(lab):
    out = local(lab, "volumes")
    assert "Pipeline 'knobs-volumes' succeeded" in out
    assert out.count("kfp.local does not apply these settings") == 1
    ignored = out[out.index("kfp.local does not apply these settings"):].splitlines()[1:]
    for step, volumes in (("load", ("/data", "/scratch")), ("train", ("/data", "/models", "/scratch")),
                          ("report", ("/data", "/scratch"))):
        lines = [line for line in ignored if f"'{step}'" in line]
        assert lines, (step, ignored[:6])
        for mount in volumes:
            assert mount in lines[0], (step, mount, lines[0])
    load = [line for line in ignored if "'load'" in line][0]
    assert "/models" not in load


# The Kale 2.x fixture notebooks.

@pytest.mark.parametrize("stem", ["kale2_pvc", "kale2_pvc_env_var"])
def test_kale2_fixture_compiles_with_volume_and_caching(lab, stem):
    ir = compiled(lab, stem)
    assert ir.spec["pipelineInfo"]["name"] == stem.replace("_", "-")
    assert ir.spec["pipelineInfo"]["description"].startswith("Kale 2.x notebook with an existing volume")
    assert set(ir.tasks) == {"load", "train"}
    # train reads load's data_path without a prev: tag
    assert ir.tasks["train"]["inputs"]["artifacts"]["data_path"]["taskOutputArtifact"]["producerTask"] == "load"
    for task in ("load", "train"):
        assert ir.container(task)["image"] == "python:3.12", task
        assert ir.caching(task) is True, task
        assert ir.mounts(task) == {"/data": ("pvc", "raw-data")}, task
        env = ir.env(task)
        if stem.endswith("env_var"):
            assert env.get("KALE_VOLUME_RAW_DATA") == "/data", task
        else:
            assert "KALE_VOLUME_RAW_DATA" not in env, task


@pytest.mark.parametrize("stem", ["kale2_pvc", "kale2_pvc_env_var"])
def test_kale2_fixture_runs_locally(lab, stem):
    out = local(lab, stem)
    assert f"Pipeline {stem.replace('_', '-')!r} succeeded" in out
    assert "training on input.csv" in out
    ignored = out[out.index("kfp.local does not apply these settings"):].splitlines()[1:3]
    assert all("raw-data" in line and "/data" in line for line in ignored), ignored


def test_kale2_fixture_experiment_in_script():
    script, _ = KFPExporter().from_filename(str(NOTEBOOKS / "kale2_pvc.ipynb"))
    assert script_constant(script, "EXPERIMENT") == "kale2-volumes"
    assert script_constant(script, "BASE_IMAGE") == "python:3.12"



def test_kale1_clone_volumes_and_snapshots_warn_and_never_block(make_nb, caplog):
    metadata = {"volumes": [
        {"type": "clone", "name": "workspace-abc", "mount_point": "/home/jovyan", "size": 5, "size_type": "Gi",
         "snapshot": False, "snapshot_name": "", "annotations": []},
        {"type": "pvc", "name": "data", "mount_point": "/data", "snapshot": True, "snapshot_name": "nightly"}],
        "autosnapshot": True, "katib_run": False}
    with caplog.at_level(logging.WARNING):
        _, model_settings = convert_nb(build_notebook(CELLS, metadata={"kubeflow_notebook": metadata}), name="rok")
    volumes = model_settings["kfp"]["pipeline"]["volumes"]
    assert [v["name"] for v in volumes] == ["data"]
    assert "volume 'workspace-abc' is a Rok clone" in caplog.text and '"type": "pvc"' in caplog.text
    assert "volume 'data' asks for a Rok snapshot, which is not taken" in caplog.text
