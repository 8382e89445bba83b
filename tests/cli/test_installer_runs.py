"""A step's install lines run with a fake python3: uv first, pip when uv is missing or fails, a failed install stops the step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import SHARED_TASK
from installercase import HOST, INDEXES, KFP_PIN, REQUIREMENTS, compiled_commands
from installercase import command  # noqa: F401 (the fixture)

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


def _executed(calls: list[list[str]]) -> bool:
    return any(call[:2] == ["-m", "kfp.dsl.executor_main"] for call in calls)


def test_an_image_with_uv_installs_with_uv_only_and_every_value_is_one_argument(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_IMAGE_HAS_UV="1")
    assert result.returncode == 0, result.stderr
    assert calls[0] == ["-m", "uv", "-V"]
    assert calls[1:3] == [UV + REQUIREMENTS, UV + ["--no-deps", KFP_PIN]]
    assert not any(call[:2] == ["-m", "pip"] for call in calls)
    assert _executed(calls[3:]) and not list(tmp_path.glob("canary*"))


def test_pip_installs_uv_when_the_image_lacks_it(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_INDEX_HAS_UV="1")
    assert result.returncode == 0, result.stderr
    assert calls[:2] == [["-m", "uv", "-V"], PIP + ["uv"]]
    assert calls[2:4] == [UV + REQUIREMENTS, UV + ["--no-deps", KFP_PIN]]
    assert _executed(calls[4:])


def test_pip_installs_everything_when_uv_cannot_be_had(tmp_path, command):
    result, calls = _run_step(tmp_path, command)  # no uv in the image, none on the index
    assert result.returncode == 0, result.stderr
    installs = [call for call in calls if call[:3] == ["-m", "pip", "install"] and call[-1] != "uv"]
    assert installs == [PIP + REQUIREMENTS, PIP + ["--no-deps", KFP_PIN]]
    assert _executed(calls)


def test_pip_takes_over_an_install_uv_fails(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_IMAGE_HAS_UV="1", FAKE_UV_FAILS="1")
    assert result.returncode == 0, result.stderr
    assert calls[1:3] == [UV + REQUIREMENTS, PIP + REQUIREMENTS]
    assert _executed(calls)


def test_a_failed_install_stops_the_step_before_its_code_runs(tmp_path, command):
    result, calls = _run_step(tmp_path, command, FAKE_IMAGE_HAS_UV="1", FAKE_UV_FAILS="1", FAKE_PIP_FAILS="1")
    assert result.returncode != 0
    assert calls[-1] == PIP + REQUIREMENTS and not _executed(calls)


def test_default_indexes_and_no_kfp_install(tmp_path):
    commands = compiled_commands(install_kfp_package=False)
    for name, command in commands.items():
        assert f"install --no-deps {KFP_PIN}" not in command[2], name
    assert commands[SHARED_TASK] == ["sh", "-ec", commands[SHARED_TASK][2], commands[SHARED_TASK][3]]
    assert "install" not in commands[SHARED_TASK][2]  # installs nothing: kfp's program as it is
    result, calls = _run_step(tmp_path, commands["a"], FAKE_IMAGE_HAS_UV="1")
    assert result.returncode == 0, result.stderr
    assert calls[1] == ["-m", "uv", "pip", "install", "--python", "python3", *REQUIREMENTS]
