"""The launcher between kfp.local and the steps of a --local run: step logs, events, the warm process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nbconvert_kfp.script.local import launcher
from nbconvert_kfp.script.local.launcher import StepLauncher

from helpers import JUPYTER, NOTEBOOKS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the warm launcher forks (Linux)")

FIXTURES = NOTEBOOKS


def test_launcher_replaces_and_restores_the_python_executable():
    real = sys.executable
    with StepLauncher([]) as warm:
        assert warm.warm and warm.warm_pid
        assert sys.executable != real
        assert os.access(sys.executable, os.X_OK)
        directory = Path(sys.executable).parent
    assert sys.executable == real
    assert not directory.exists()


def test_a_cold_launcher_starts_no_warm_process_but_still_stands_in_for_python():
    real = sys.executable
    with StepLauncher(["import json"], warm=False) as cold:
        assert cold.warm_pid is None
        assert sys.executable != real
        proc = subprocess.run([sys.executable, "-c", "print(40 + 2)"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "42"
    assert sys.executable == real


def test_a_long_temporary_directory_still_gives_the_sockets_a_path_that_fits(tmp_path, monkeypatch):
    """A UNIX socket path holds 107 bytes: with a TMPDIR too long for one, the sockets go to /tmp (a local run
    failed with 'AF_UNIX path too long' before)."""
    import tempfile

    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    with StepLauncher(warm=False) as started:
        folder = started._directory
        assert folder.startswith("/tmp/nbconvert-kfp-") and os.path.exists(os.path.join(folder, "events.sock"))
        assert len(os.path.join(folder, "events.sock").encode()) <= launcher.SOCKET_PATH_LIMIT
    assert not os.path.exists(folder) and list(deep.iterdir()) == []  # nothing left in either place


def test_executor_runs_in_the_warm_process_with_the_callers_streams_and_status(tmp_path):
    with StepLauncher([]):
        proc = subprocess.run([sys.executable, "-m", "kfp.dsl.executor_main", "--no-such-flag"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60)
    # argparse's usage error reaches the caller's stderr, and its exit status 2 comes back.
    assert proc.returncode == 2
    assert "usage: executor_main" in proc.stderr
    assert "error: the following arguments are required" in proc.stderr


def test_the_forked_step_sees_the_callers_working_directory_and_environment(tmp_path):
    module = tmp_path / "component.py"
    module.write_text("import os\n"
                      "def probe():\n"
                      "    print('CWD', os.getcwd())\n"
                      "    print('ENV', os.environ.get('NBKFP_PROBE'))\n", encoding="utf-8")
    env = {**os.environ, "NBKFP_PROBE": "from-the-caller"}
    with StepLauncher([]):
        proc = subprocess.run(
            [sys.executable, "-m", "kfp.dsl.executor_main", "--component_module_path", str(module),
             "--executor_input", '{"outputs": {"outputFile": "%s"}}' % (tmp_path / "out.json"),
             "--function_to_execute", "probe"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"CWD {tmp_path}" in proc.stdout
    assert "ENV from-the-caller" in proc.stdout


def test_other_commands_run_the_real_interpreter():
    with StepLauncher([]):
        proc = subprocess.run([sys.executable, "-c", "import sys; print(sys.executable)"],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == os.path.realpath(sys.executable) or "python" in proc.stdout


def test_without_the_warm_process_the_launcher_falls_back_to_a_new_interpreter():
    with StepLauncher([]) as warm:
        os.killpg(warm._pid, 9)
        os.waitpid(warm._pid, 0)
        warm._pid = None
        proc = subprocess.run([sys.executable, "-m", "kfp.dsl.executor_main", "--no-such-flag"],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage" in proc.stderr


def test_fork_unsafe_libraries_are_not_preloaded(monkeypatch):
    monkeypatch.setattr(launcher, "FORK_UNSAFE", frozenset({"colorsys"}))
    monkeypatch.setattr(launcher, "EXECUTOR_DEPENDENCIES", ())
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    launcher._preload(["import colorsys", "import wave", "import module_that_does_not_exist"])
    assert "colorsys" not in sys.modules
    assert "wave" in sys.modules


def _metrics(output: str) -> dict[str, float]:
    return {m[0]: float(m[1]) for m in re.findall(r"^  metric (\S+) = (\S+)$", output, re.MULTILINE)}


def test_warm_and_cold_start_give_the_same_results(tmp_path):
    notebook = tmp_path / "sklearn_fan.ipynb"
    notebook.write_bytes((FIXTURES / "sklearn_fan.ipynb").read_bytes())
    subprocess.run([str(JUPYTER), "nbconvert", "--to", "kfp", str(notebook)], check=True,
                   capture_output=True, timeout=120)
    script = tmp_path / "sklearn_fan_pipeline.py"
    runs = {}
    for mode in ([], ["--cold-start"]):
        proc = subprocess.run([sys.executable, str(script), "--local", "--no-cache", *mode], capture_output=True,
                              text=True, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        runs[tuple(mode)] = _metrics(proc.stdout)
    assert runs[()] == runs[("--cold-start",)]
    assert set(runs[()]) == {"tree_acc", "knn_acc"}


def test_stopping_a_run_removes_the_step_code_folders_its_launchers_left(tmp_path):
    """kfp's command writes each step's code to a ``mktemp -d`` folder; a launcher stopped before it removed
    its folder leaves it: ``terminate`` removes it once that launcher has ended."""
    import threading

    left = tmp_path / "tmp.AbCdEf1234"
    left.mkdir()
    (left / "ephemeral_component.py").write_text("x = 1\n")
    other = tmp_path / "tmp.GhIjKl5678"  # a folder that holds more than kfp wrote: not ours to remove
    other.mkdir()
    (other / "ephemeral_component.py").write_text("x = 1\n")
    (other / "notes.txt").write_text("keep\n")
    # a launcher that takes 0.5 s to end after SIGTERM, and removes nothing
    client = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                               "lambda *_: None); print('ready', flush=True); time.sleep(0.5)"],
                              stdout=subprocess.PIPE, text=True)
    assert client.stdout.readline() == "ready\n"
    seen = []
    reaper = threading.Thread(target=lambda: seen.append((client.wait(), left.exists())))  # as its shell reaps it
    reaper.start()
    with StepLauncher([], warm=False) as cold:
        with cold._lock:
            cold._running = {"a": {"kind": "start", "client": client.pid, "code_folder": str(left)},
                             "b": {"kind": "start", "client": None, "code_folder": str(other)}}
        cold.terminate()
    reaper.join(5)
    assert seen == [(0, True)]  # it ended on its own, its folder still there
    assert not left.exists() and other.exists()


def test_settle_returns_once_every_event_sent_before_it_was_handled():
    """A launcher shared by several runs (tuning trials) is not closed after each: a run that ends waits for its
    last step's end event with ``settle``, or its summary could miss that step's outcome and metrics."""
    import json
    import socket
    import time

    handled = []

    def slow(event):
        time.sleep(0.3)
        handled.append(event["kind"])

    with StepLauncher([], warm=False, on_event=slow) as cold:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            for kind in ("start", "end"):
                sender.sendto(json.dumps({"kind": kind, "task_dir": "t"}).encode(),
                              str(Path(sys.executable).parent / "events.sock"))
        cold.settle()
        assert handled == ["start", "end"]
