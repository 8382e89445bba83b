"""No process or temporary folder outlives a local run, however it is stopped: SIGTERM, SIGINT or SIGKILL of
``nbconvert-kfp local``, and SIGKILL of the generated script itself (the warm process notices and cleans up)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from helpers import PYTHON, VENV_BIN, build_notebook, processes_mentioning as _processes_mentioning

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local runs fork (Linux)")

COMMAND = VENV_BIN / "nbconvert-kfp"


def _start(tmp_path: Path, argv: list[str]) -> tuple[subprocess.Popen, Path]:
    if not (tmp_path / "slow.ipynb").exists():
        nbformat.write(build_notebook([("step:prep", "x = 1"), ("step:nap", "import time\ntime.sleep(300 + x)")]),
                       tmp_path / "slow.ipynb")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), PYTHONIOENCODING="utf-8")
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if "started   nap" in line:
            return process, scratch
        assert time.monotonic() < deadline, "the step did not start"
    raise AssertionError(f"the run ended before its step started (exit {process.wait()})")


def _gone(tmp_path: Path, scratch: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left, folders = _processes_mentioning(str(tmp_path)), list(scratch.iterdir())
        if not left and not folders:
            return
        time.sleep(0.2)
    raise AssertionError(f"left behind: processes {left}, temporary folders {folders}")


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_stopping_nbconvert_kfp_local_stops_everything_it_started(tmp_path, signum, status):
    process, scratch = _start(tmp_path, [str(COMMAND), "local", "slow.ipynb"])
    process.send_signal(signum)
    assert process.wait(timeout=60) == status
    _gone(tmp_path, scratch)


def test_killing_the_script_of_a_local_run_leaves_no_warm_process_or_folder(tmp_path):
    nbformat.write(build_notebook([("step:prep", "x = 1"), ("step:nap", "import time\ntime.sleep(300 + x)")]),
                   tmp_path / "slow.ipynb")
    subprocess.run([str(VENV_BIN / "jupyter"), "nbconvert", "--to", "kfp", "slow.ipynb"], cwd=tmp_path,
                   capture_output=True, check=True)
    process, scratch = _start(tmp_path, [PYTHON, "slow_pipeline.py", "--local"])
    process.kill()
    process.wait(timeout=30)
    _gone(tmp_path, scratch)
