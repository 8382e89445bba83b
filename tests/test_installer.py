"""How a step installs its packages on a cluster: the compiled command run with a fake ``python3``.

No network: the fake records every call and answers as an image with or without uv would, so the
tests see which installer gets which arguments, and that the step's program runs only after them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp.local.subprocess_task_handler import replace_python_executable

from nbconvert_kfp.codegen.installer import pin_keys
from nbconvert_kfp.codegen.literal import python_literal
from nbconvert_kfp.exporters import KFPExporter, compile_script

from helpers import SHARED_TASK, build_notebook, script_constant

#: Hostile-looking but valid: the setting's (a tag cannot hold a comma), then the tags'.
EXTRA = "a>=1,<2"
TAGGED = ['pkg[extra]==1.0; python_version>"3.8" and platform_system!="Windows"', "b~=1.0",
          "name @ https://example.com/name-1.0-py3-none-any.whl"]
REQUIREMENTS = [EXTRA, *TAGGED]
INDEXES = ["https://user:tok%40x@pypi.example.com:8443/simple/~a+b,c=d", "file:///srv/wheels"]
HOST = "pypi.example.com:8443"
CELLS = [(["step:a", *(f"package:{r}" for r in TAGGED)], "x = 1")]

#: A ``python3`` that appends its arguments (a JSON list) to $FAKE_LOG and answers as the image would:
#: uv present if $FAKE_IMAGE_HAS_UV, or once pip installed it (when $FAKE_INDEX_HAS_UV).
FAKE_PYTHON3 = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
flag = lambda name: os.environ.get(name) == "1"
installed = Path(os.environ["FAKE_LOG"] + ".uv")
if args[:3] == ["-m", "pip", "install"] and args[-1] == "uv":
    if flag("FAKE_INDEX_HAS_UV"):
        installed.touch()
    sys.exit(0 if flag("FAKE_INDEX_HAS_UV") else 1)
if args[:2] == ["-m", "uv"]:
    if not (flag("FAKE_IMAGE_HAS_UV") or installed.exists()):
        sys.exit(1)
    sys.exit(1 if args[2:3] == ["pip"] and flag("FAKE_UV_FAILS") else 0)
if args[:2] == ["-m", "pip"]:
    sys.exit(1 if flag("FAKE_PIP_FAILS") else 0)
"""


def _commands(cells=CELLS, env: dict[str, str] | None = None, **traits) -> dict[str, list[str]]:
    """Task name -> the command of its container in the compiled pipeline."""
    traits.setdefault("extra_packages", [EXTRA])
    script, _ = KFPExporter(**traits).from_notebook_node(build_notebook(cells), {"metadata": {"name": "inst"}})
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        spec = yaml.safe_load(compile_script(script))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    executors = spec["deploymentSpec"]["executors"]
    return {name: executors[spec["components"][task["componentRef"]["name"]]["executorLabel"]]["container"]["command"]
            for name, task in spec["root"]["dag"]["tasks"].items()}


def _run_step(tmp_path: Path, command: list[str], **answers: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run a step's command with the fake ``python3``; return the result and the calls, in order."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON3.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "FAKE_LOG": str(log), **answers}
    result = subprocess.run([*command, "--executor_input", "{}"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


UV = ["-m", "uv", "pip", "install", "--python", "python3", "--index-url", INDEXES[0], "--extra-index-url", INDEXES[1],
      "--allow-insecure-host", HOST, "--index-strategy", "unsafe-best-match"]
PIP = ["-m", "pip", "install", "-q", "--index-url", INDEXES[0], "--extra-index-url", INDEXES[1], "--trusted-host", HOST]
KFP_PIN = "kfp==" + __import__("kfp").__version__


@pytest.fixture(scope="module")
def command():
    commands = _commands(pip_index_urls=INDEXES, pip_trusted_hosts=[HOST])
    return commands["a"]


def _executed(calls: list[list[str]]) -> bool:
    return any(call[:2] == ["-m", "kfp.dsl.executor_main"] for call in calls)


def test_the_command_is_one_shell_program_that_installs_then_runs_the_component(command):
    assert command[:2] == ["sh", "-ec"] and len(command) == 4
    lines = command[2].splitlines()
    assert [line for line in lines if line.startswith("install ")] == [
        "install " + " ".join(f"'{r}'" if any(c in r for c in " ;<>\"[~@,") else r for r in REQUIREMENTS),
        f"install --no-deps {KFP_PIN}"]
    assert lines[-1].startswith("_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main ")
    assert "def a(" in command[3]  # the component's source stays the program's $0


@pytest.mark.slow
def test_an_image_with_uv_installs_with_uv_only_and_every_value_is_one_argument(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_IMAGE_HAS_UV="1")
    assert result.returncode == 0, result.stderr
    assert calls[0] == ["-m", "uv", "-V"]
    assert calls[1:3] == [UV + REQUIREMENTS, UV + ["--no-deps", KFP_PIN]]
    assert not any(call[:2] == ["-m", "pip"] for call in calls)
    assert _executed(calls[3:]) and not list(tmp_path.glob("canary*"))


@pytest.mark.slow
def test_pip_installs_uv_when_the_image_lacks_it(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_INDEX_HAS_UV="1")
    assert result.returncode == 0, result.stderr
    assert calls[:2] == [["-m", "uv", "-V"], PIP + ["uv"]]
    assert calls[2:4] == [UV + REQUIREMENTS, UV + ["--no-deps", KFP_PIN]]
    assert _executed(calls[4:])


@pytest.mark.slow
def test_pip_installs_everything_when_uv_cannot_be_had(tmp_path, command):
    result, calls = _run_step(tmp_path, command)  # no uv in the image, none on the index
    assert result.returncode == 0, result.stderr
    installs = [call for call in calls if call[:3] == ["-m", "pip", "install"] and call[-1] != "uv"]
    assert installs == [PIP + REQUIREMENTS, PIP + ["--no-deps", KFP_PIN]]
    assert _executed(calls)


@pytest.mark.slow
def test_pip_takes_over_an_install_uv_fails(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_IMAGE_HAS_UV="1", FAKE_UV_FAILS="1")
    assert result.returncode == 0, result.stderr
    assert calls[1:3] == [UV + REQUIREMENTS, PIP + REQUIREMENTS]
    assert _executed(calls)


@pytest.mark.slow
def test_a_failed_install_stops_the_step_before_its_code_runs(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_IMAGE_HAS_UV="1", FAKE_UV_FAILS="1", FAKE_PIP_FAILS="1")
    assert result.returncode != 0
    assert calls[-1] == PIP + REQUIREMENTS and not _executed(calls)


def test_each_pin_is_spelled_once_and_every_step_installs_its_own_list():
    """PINS holds each requirement once, by its distribution's name (another requirement of a named distribution
    is its own key); STEP_INSTALLS lists keys; each step's command installs its requirements as written."""
    other = ["pkg[extra]==2.0", "b~=1.0"]
    cells = [*CELLS, (["step:b", *(f"package:{r}" for r in other)], "y = 2")]
    script, _ = KFPExporter(extra_packages=[EXTRA]).from_notebook_node(build_notebook(cells), {"metadata": {"name": "i"}})
    pins, installs = script_constant(script, "PINS"), script_constant(script, "STEP_INSTALLS")
    assert installs == {"a": ["a", "pkg", "b", "name"], "b": ["a", "pkg[extra]==2.0", "b"]}
    assert [pins[key] for key in installs["a"]] == REQUIREMENTS
    assert [pins[key] for key in installs["b"]] == [EXTRA, *other]
    assert all(script.count(python_literal(text)) == 1 for key, text in pins.items() if key != text)
    commands = _commands(cells)
    assert shlex.join(["install", EXTRA, *other]) in commands["b"][2].splitlines()
    assert shlex.join(["install", *REQUIREMENTS]) in commands["a"][2].splitlines()
    assert pin_keys(["numpy==2.4.6", "numpy", "Numpy[x]<3", "https://example.com/x.whl"]) == {
        "numpy==2.4.6": "numpy==2.4.6", "numpy": "numpy", "Numpy[x]<3": "Numpy[x]<3",
        "https://example.com/x.whl": "https://example.com/x.whl"}


def test_installs_packages_off_keeps_no_install_lists():
    script, _ = KFPExporter(extra_packages=[EXTRA], install_packages=False).from_notebook_node(
        build_notebook(CELLS), {"metadata": {"name": "i"}})
    assert script_constant(script, "STEP_INSTALLS") is None and script_constant(script, "PINS") == {}
    assert shlex.join(["install", EXTRA, *TAGGED]) in _commands(install_packages=False)["a"][2].splitlines()


def test_kfp_locals_venv_runner_swaps_every_python3_of_the_installer(command):
    """SubprocessRunner(use_venv=True) replaces 'python3' in the command (not in the component's source)."""
    swapped = replace_python_executable([*command, "--executor_input", "{}"], "/tmp/venv/bin/python")
    assert "python3" not in swapped[2]
    assert "-m uv pip install --python /tmp/venv/bin/python " in swapped[2]
    assert swapped[3] == command[3]


@pytest.mark.slow
def test_default_indexes_and_no_kfp_install(tmp_path):
    commands = _commands(install_kfp_package=False)
    for name, command in commands.items():
        assert f"install --no-deps {KFP_PIN}" not in command[2], name
    assert commands[SHARED_TASK] == ["sh", "-ec", commands[SHARED_TASK][2], commands[SHARED_TASK][3]]
    assert "install" not in commands[SHARED_TASK][2]  # installs nothing: kfp's program as it is
    result, calls = _run_step(tmp_path, commands["a"], FAKE_IMAGE_HAS_UV="1")
    assert result.returncode == 0, result.stderr
    assert calls[1] == ["-m", "uv", "pip", "install", "--python", "python3", *REQUIREMENTS]


def test_a_local_run_installs_nothing():
    commands = _commands(env={"NBCONVERT_KFP_LOCAL_RUN": "1"})
    for name, command in commands.items():
        assert "pip" not in " ".join(command[:3]) and "install" not in command[2], name
