"""Step option tags (resources, image, caching, retries, timeout, env, secrets, pod metadata,
scheduling, packages): compiled to KFP IR for real and checked field by field; bad tags fail
the conversion naming the cell and the tag; local runs list what kfp.local ignores."""

from __future__ import annotations

import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Config

from compiledir import IR, compile_all
from helpers import build_notebook
from nbconvert_kfp.errors import TagError
from nbconvert_kfp.exporters import KFPExporter

TIMEOUT = 300
DEFAULT_IMAGE = f"python:{sys.version_info.major}.{sys.version_info.minor}"
NO_SUCH_DIST = "nbkfp-no-such-dist==0.0.1"

#: Notebook-wide defaults; every step gets them unless its own tags say otherwise.
STEPS_DEFAULTS = ["label:team:platform", "limit:memory:512Mi", "timeout:1d", "env:STAGE:dev", "retry:1"]

OPTIONS_CELLS = [
    (["imports"], "import os"),
    # 'big': options spread over two cells of the same step
    (["step:big", "limit:cpu:2", "limit:memory:4Gi", "request:cpu:500m", "request:memory:1Gi",
      "limit:nvidia.com/gpu:1", "image:python:3.11-slim", "cache:disabled", "retry:3:30s:2:5m", "timeout:2h"],
     "a = 1"),
    (["step:big", "env:MODE:a:b", "secret:creds:token:API_TOKEN", "label:team:ml", "annotation:note:x:y",
      "node-selector:disktype:ssd", "toleration:gpu=present:NoSchedule", f"package:{NO_SUCH_DIST}"],
     "a2 = 2"),
    (["step:amd", "limit:amd.com/gpu:2", "timeout:90", "retry:2", "toleration:dedicated", "cache:enabled",
      "env:STAGE:prod"],
     "b = 2"),
    # 'last': the last option for each setting wins, across the step's cells
    (["step:last", "limit:memory:1Gi", "image:python:3.10", "env:LEVEL:1", "retry:1:10s", "timeout:30s",
      "limit:nvidia.com/gpu:1", "label:team:a"],
     "c = 3"),
    (["step:last", "limit:memory:2Gi", "image:python:3.13-slim", "env:LEVEL:2", "retry:4", "timeout:5m",
      "limit:google.com/tpu:4", "label:team:b", "toleration:nvidia.com/gpu:NoExecute"],
     "c2 = 4"),
    (["step:quick", "timeout:30s"], "e = 5"),
    (["step:plain"], "d = 4"),
]
OPTIONS_METADATA = {"kubeflow_notebook": {"enable_caching": False, "steps_defaults": STEPS_DEFAULTS}}
STEPS = ["big", "amd", "last", "quick", "plain"]


# --- helpers -------------------------------------------------------------------------------------

def write_script(directory: Path, nb, name: str, **kwargs) -> Path:
    script, _ = KFPExporter(**kwargs).from_notebook_node(nb, {"metadata": {"name": name}})
    path = directory / f"{name}_pipeline.py"
    path.write_text(script, encoding="utf-8")
    return path


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=script.parent,
                          capture_output=True, text=True, timeout=TIMEOUT)


# --- the compiled options notebook (one compile and one local run for the whole module) ---------

@pytest.fixture(scope="module")
def options_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("knobs_options")
    nb = build_notebook(OPTIONS_CELLS, metadata=OPTIONS_METADATA)
    script = write_script(directory, nb, "knobs_options")
    with ThreadPoolExecutor(2) as pool:
        compiled = pool.submit(compile_all, script)
        local = pool.submit(run_script, script, "--local", "--verbose")
        (compile_result, docs), local_result = compiled.result(), local.result()
    return {"script": script, "compile": compile_result, "docs": docs, "local": local_result}


@pytest.fixture(scope="module")
def ir(options_run):
    result = options_run["compile"]
    assert result.returncode == 0, result.stderr[-4000:]
    return IR(options_run["docs"])


def test_compiles_to_a_pipeline_and_a_platform_spec(ir, options_run):
    assert len(options_run["docs"]) == 2
    assert set(ir.tasks) == set(STEPS)
    assert "kubernetes" in ir.platform["platforms"]


def test_resource_limits_and_requests(ir):
    big = ir.resources("big")
    assert big["cpuLimit"] == 2.0
    assert big["resourceCpuLimit"] == "2"
    assert big["memoryLimit"] == pytest.approx(4 * 2**30 / 1e9)
    assert big["resourceMemoryLimit"] == "4Gi"
    assert big["cpuRequest"] == 0.5
    assert big["resourceCpuRequest"] == "500m"
    assert big["memoryRequest"] == pytest.approx(2**30 / 1e9)
    assert big["resourceMemoryRequest"] == "1Gi"


def test_accelerators(ir):
    big = ir.resources("big")["accelerator"]
    assert big["resourceType"] == "nvidia.com/gpu" and big["resourceCount"] == "1"
    amd = ir.resources("amd")["accelerator"]
    assert amd["resourceType"] == "amd.com/gpu" and amd["resourceCount"] == "2"
    # the last accelerator limit wins: any accelerator type is accepted
    last = ir.resources("last")["accelerator"]
    assert last["resourceType"] == "google.com/tpu" and last["resourceCount"] == "4"
    for task in ("quick", "plain"):
        assert "accelerator" not in ir.resources(task), task


def test_steps_defaults_apply_to_steps_without_their_own_setting(ir):
    for task in ("amd", "quick", "plain"):
        resources = ir.resources(task)
        assert resources["resourceMemoryLimit"] == "512Mi", task
        assert "resourceCpuLimit" not in resources and "cpuLimit" not in resources, task
        assert ir.k8s(task)["podMetadata"]["labels"] == {"team": "platform"}, task
    assert ir.k8s("plain")["activeDeadlineSeconds"] == "86400"
    assert ir.tasks["plain"]["retryPolicy"]["maxRetryCount"] == 1
    assert ir.env("plain") == {"STAGE": "dev"}


def test_step_tags_override_steps_defaults(ir):
    assert ir.resources("big")["resourceMemoryLimit"] == "4Gi"
    assert ir.k8s("big")["podMetadata"]["labels"] == {"team": "ml"}
    assert ir.env("amd")["STAGE"] == "prod"
    assert ir.env("big")["STAGE"] == "dev"
    assert ir.tasks["amd"]["retryPolicy"]["maxRetryCount"] == 2


def test_last_option_wins(ir):
    assert ir.resources("last")["resourceMemoryLimit"] == "2Gi"
    assert ir.container("last")["image"] == "python:3.13-slim"
    assert ir.env("last") == {"STAGE": "dev", "LEVEL": "2"}
    assert ir.tasks["last"]["retryPolicy"]["maxRetryCount"] == 4
    assert ir.tasks["last"]["retryPolicy"].get("backoffDuration") != "10s"  # retry:4 replaces retry:1:10s
    assert ir.k8s("last")["activeDeadlineSeconds"] == "300"
    assert ir.k8s("last")["podMetadata"]["labels"] == {"team": "b"}


def test_images(ir):
    assert ir.container("big")["image"] == "python:3.11-slim"
    assert ir.container("last")["image"] == "python:3.13-slim"
    for task in ("amd", "quick", "plain"):
        assert ir.container(task)["image"] == DEFAULT_IMAGE, task


def test_caching(ir):
    # notebook metadata enable_caching: false; 'cache:' tags override it per step
    assert ir.caching("big") is False
    assert ir.caching("amd") is True
    for task in ("last", "quick", "plain"):
        assert ir.caching(task) is False, task


def test_retry_policy(ir):
    big = ir.tasks["big"]["retryPolicy"]
    assert big["maxRetryCount"] == 3
    assert big["backoffDuration"] == "30s"
    assert big["backoffFactor"] == 2.0
    assert big["backoffMaxDuration"] == "300s"
    assert ir.tasks["amd"]["retryPolicy"]["maxRetryCount"] == 2


def test_timeouts(ir):
    expected = {"big": "7200", "amd": "90", "last": "300", "quick": "30", "plain": "86400"}
    assert {task: ir.k8s(task).get("activeDeadlineSeconds") for task in STEPS} == expected


def test_env_vars(ir):
    assert ir.env("big") == {"STAGE": "dev", "MODE": "a:b"}


def test_secret_as_env(ir):
    secrets = ir.k8s("big")["secretAsEnv"]
    assert len(secrets) == 1
    assert secrets[0]["secretName"] == "creds"
    assert secrets[0]["keyToEnv"] == [{"secretKey": "token", "envVar": "API_TOKEN"}]
    for task in ("amd", "last", "quick", "plain"):
        assert "secretAsEnv" not in ir.k8s(task), task


def test_labels_and_annotations(ir):
    pod = ir.k8s("big")["podMetadata"]
    assert pod["labels"] == {"team": "ml"}
    assert pod["annotations"] == {"note": "x:y"}
    assert "annotations" not in ir.k8s("plain")["podMetadata"]


def test_node_selector(ir):
    assert ir.k8s("big")["nodeSelector"]["labels"] == {"disktype": "ssd"}
    assert "nodeSelector" not in ir.k8s("amd")


def test_tolerations(ir):
    assert ir.k8s("big")["tolerations"] == [
        {"key": "gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]
    (amd,) = ir.k8s("amd")["tolerations"]
    assert amd["key"] == "dedicated" and amd["operator"] == "Exists"
    assert not amd.get("value") and not amd.get("effect")
    (last,) = ir.k8s("last")["tolerations"]
    assert last["key"] == "nvidia.com/gpu" and last["operator"] == "Exists" and last["effect"] == "NoExecute"
    assert "tolerations" not in ir.k8s("plain")


def test_package_tag_in_the_install_line(ir):
    [line] = [line for line in ir.container("big")["command"][2].splitlines() if line.startswith("install ")
              and "--no-deps" not in line]
    assert NO_SUCH_DIST in shlex.split(line)
    assert NO_SUCH_DIST not in "\n".join(ir.container("amd")["command"])


# --- local run ----------------------------------------------------------------------------------

def test_local_run_lists_ignored_settings_once_before_running(options_run):
    result = options_run["local"]
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    out = result.stdout
    assert "Pipeline 'knobs-options' succeeded" in out
    header = "kfp.local does not apply these settings"
    assert out.count(header) == 1, out[:3000]
    first_step = out.find("[nbconvert-kfp] step")
    running = out.find("Running pipeline")
    assert 0 <= out.index(header) < min(i for i in (first_step, running) if i >= 0)
    lines = out[out.index(header):].splitlines()[1:]
    by_step = {}
    for step in STEPS:
        matching = [line for line in lines if f"'{step}'" in line and "started" not in line
                    and "finished" not in line]
        assert matching, (step, lines[:10])
        by_step[step] = matching[0]
    big = by_step["big"]
    for fragment in ("cpu", "2", "4Gi", "500m", "1Gi", "nvidia.com/gpu", "7200", "creds", "team", "note",
                     "disktype", "gpu", "python:3.11-slim"):
        assert fragment in big, (fragment, big)
    assert "amd.com/gpu" in by_step["amd"] and "dedicated" in by_step["amd"]
    assert "google.com/tpu" in by_step["last"] and "python:3.13-slim" in by_step["last"]
    assert "512Mi" in by_step["plain"] and "86400" in by_step["plain"]


def test_local_run_does_not_pip_install_packages(options_run):
    # 'big' carries package:nbkfp-no-such-dist==0.0.1, which no index has: installing it would fail.
    result = options_run["local"]
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    assert "[nbconvert-kfp] step 'big' finished" in result.stdout
    assert "pip install" not in result.stdout + result.stderr


# --- malformed tags -----------------------------------------------------------------------------

BAD_TAGS = [
    "limit:memory:lots", "limit:disk:1", "limit:gpu:1", "limit:cpu:two", "limit:cpu:-1", "limit:memory", "limit:nvidia.com/gpu:0",
    "limit:nvidia.com/gpu:1.5", "request:nvidia.com/gpu:1", "request:cpu:",
    "image:", "cache:maybe",
    "retry:x", "retry:3:soon", "retry:3:30s:fast", "retry:3:30s:2:later", "retry:1:2:3:4:5",
    "timeout:soon", "timeout:5x", "timeout:0",
    "env:1A:x", "env:NOVALUE",
    "secret:a:b", "secret:Bad_Name:key:ENV", "secret:s:k:1ENV",
    "label:bad key:v", "annotation::x", "node-selector:novalue",
    "toleration:k:Bogus", "toleration:=v:NoSchedule",
    "package:not a req",
]


@pytest.mark.parametrize("tag", BAD_TAGS)
def test_malformed_step_option_is_a_tag_error(convert, make_nb, tag):
    nb = make_nb([(["imports"], "import os"), (["step:a"], "x = 1"), (["step:b", tag], "y = 2")])
    with pytest.raises(TagError) as caught:
        convert(nb)
    error = caught.value
    assert error.cell_index == 2
    assert error.subject == tag
    assert "cell 3:" in str(error) and tag in str(error)


@pytest.mark.parametrize("role", ["imports", "functions", "pipeline-parameters", "skip-free leftover"])
def test_step_option_on_a_cell_outside_any_step_is_a_tag_error(convert, make_nb, role):
    first = [] if role == "skip-free leftover" else [role]
    source = {"imports": "import os", "functions": "def f():\n    return 1",
              "pipeline-parameters": "N = 3"}.get(role, "z = 0")
    nb = make_nb([(first + ["limit:cpu:1"], source), (["step:a"], "x = 1"), (["step:b"], "y = x")])
    with pytest.raises(TagError) as caught:
        convert(nb)
    assert caught.value.cell_index == 0
    assert caught.value.subject == "limit:cpu:1"
    assert "cell 1:" in str(caught.value) and "limit:cpu:1" in str(caught.value)


@pytest.mark.parametrize("where", ["metadata", "trait"])
def test_malformed_steps_defaults_is_a_tag_error(convert, make_nb, where):
    cells = [(["step:a"], "x = 1")]
    if where == "metadata":
        nb, kwargs = make_nb(cells, metadata={"kubeflow_notebook": {"steps_defaults": ["timeout:soon"]}}), {}
    else:
        nb = make_nb(cells)
        kwargs = {"config": Config({"KFPExporter": {"steps_defaults": ["timeout:soon"]}})}
    with pytest.raises(TagError) as caught:
        convert(nb, **kwargs)
    assert "timeout:soon" in str(caught.value)


def test_options_on_a_continuation_cell_apply_to_its_step(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["limit:cpu:3"], "x += 1"), (["step:b"], "y = x")])
    kinds = {(o["kind"], o.get("amount")) for o in model["steps"]["a"]["options"]}
    assert ("limit", "3") in kinds
    assert not model["steps"]["b"]["options"]


def test_cli_malformed_option_fails_cleanly(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([(["imports"], "import os"), (["step:a"], "x = 1"), (["step:b", "retry:x"], "y = x")])
    path = tmp_path / "bad_option.ipynb"
    nbformat.write(nb, path)
    result = run_nbconvert(path)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "cell 3:" in result.stderr, result.stderr
    assert "retry:x" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.glob("*_pipeline.py")), list(tmp_path.iterdir())
