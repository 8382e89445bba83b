"""How a step installs its packages on a cluster: the compiled command run with a fake ``python3``.

No network: the fake records every call and answers as an image with or without uv would, so the
tests see which installer gets which arguments, and that the step's program runs only after them.
"""

from __future__ import annotations

import shlex

from kfp.local.subprocess_task_handler import replace_python_executable

from nbconvert_kfp.codegen.installer import pin_keys
from nbconvert_kfp.codegen.literal import python_literal
from nbconvert_kfp.exporters import KFPExporter

from helpers import build_notebook, script_constant
from installercase import CELLS, EXTRA, KFP_PIN, REQUIREMENTS, TAGGED, compiled_commands
from installercase import command  # noqa: F401 (the fixture)














def test_the_command_is_one_shell_program_that_installs_then_runs_the_component(command):
    assert command[:2] == ["sh", "-ec"] and len(command) == 4
    lines = command[2].splitlines()
    assert [line for line in lines if line.startswith("install ")] == [
        "install " + " ".join(f"'{r}'" if any(c in r for c in " ;<>\"[~@,") else r for r in REQUIREMENTS),
        f"install --no-deps {KFP_PIN}"]
    assert lines[-1].startswith("_KFP_RUNTIME=true python3 -m kfp.dsl.executor_main ")
    assert "def a(" in command[3]  # the component's source stays the program's $0



def test_kfp_locals_venv_runner_swaps_every_python3_of_the_installer(command):
    """SubprocessRunner(use_venv=True) replaces 'python3' in the command (not in the component's source)."""
    swapped = replace_python_executable([*command, "--executor_input", "{}"], "/tmp/venv/bin/python")
    assert "python3" not in swapped[2]
    assert "-m uv pip install --python /tmp/venv/bin/python " in swapped[2]
    assert swapped[3] == command[3]



def test_a_local_run_installs_nothing():
    commands = compiled_commands(env={"NBCONVERT_KFP_LOCAL_RUN": "1"})
    for name, command in commands.items():
        assert "pip" not in " ".join(command[:3]) and "install" not in command[2], name


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
    commands = compiled_commands(cells)
    assert shlex.join(["install", EXTRA, *other]) in commands["b"][2].splitlines()
    assert shlex.join(["install", *REQUIREMENTS]) in commands["a"][2].splitlines()
    assert pin_keys(["numpy==2.4.6", "numpy", "Numpy[x]<3", "https://example.com/x.whl"]) == {
        "numpy==2.4.6": "numpy==2.4.6", "numpy": "numpy", "Numpy[x]<3": "Numpy[x]<3",
        "https://example.com/x.whl": "https://example.com/x.whl"}


def test_installs_packages_off_keeps_no_install_lists():
    script, _ = KFPExporter(extra_packages=[EXTRA], install_packages=False).from_notebook_node(
        build_notebook(CELLS), {"metadata": {"name": "i"}})
    assert script_constant(script, "STEP_INSTALLS") is None and script_constant(script, "PINS") == {}
    assert shlex.join(["install", EXTRA, *TAGGED]) in compiled_commands(install_packages=False)["a"][2].splitlines()
