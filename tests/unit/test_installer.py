"""How a step installs its packages on a cluster: the compiled command run with a fake ``python3``.

No network: the fake records every call and answers as an image with or without uv would, so the
tests see which installer gets which arguments, and that the step's program runs only after them.
"""

from __future__ import annotations


import pytest
from kfp.local.subprocess_task_handler import replace_python_executable


from installercase import HOST, INDEXES, KFP_PIN, REQUIREMENTS, compiled_commands










@pytest.fixture(scope="module")
def command():
    commands = compiled_commands(pip_index_urls=INDEXES, pip_trusted_hosts=[HOST])
    return commands["a"]




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
