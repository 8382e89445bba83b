"""Helpers shared by the test modules: paths, notebook building, subprocesses, generated-script reading."""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: The directory of the venv's executables (python, jupyter), and those two.
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable
JUPYTER = str(VENV_BIN / "jupyter")
#: The repository, its test notebooks and its examples.
REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "tests" / "notebooks"
EXAMPLES = REPO / "examples"
#: The notebooks whose generated scripts tests/golden keeps.
GOLDEN_NOTEBOOKS = {
    "model_comparison": EXAMPLES / "model_comparison.ipynb",
    "tuning": EXAMPLES / "tuning.ipynb",
    "passengers": EXAMPLES / "passengers" / "passengers.ipynb",
    "kale_v0_1_blocks": NOTEBOOKS / "kale_v0_1_blocks.ipynb",
    "kale_v2_steps": NOTEBOOKS / "kale_v2_steps.ipynb",
}

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def build_notebook(cells, metadata=None, *, markdown=False, dedent=False):
    """A v4 notebook from ``(tags, source)`` pairs; a ready-made cell node is used as is.

    ``tags`` may be a list, a single tag string, or ``None``/``[]`` for an untagged cell;
    with ``markdown=True`` a ``None`` tag makes a markdown cell instead. ``dedent=True``
    dedents and strips each source (for triple-quoted sources in tests).
    """
    built = []
    for cell in cells:
        if isinstance(cell, nbformat.NotebookNode):
            built.append(cell)
            continue
        tags, source = cell
        if dedent:
            source = textwrap.dedent(source).strip("\n")
        if tags is None and markdown:
            built.append(new_markdown_cell(source))
            continue
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        built.append(new_code_cell(source, metadata={"tags": tags} if tags else {}))
    nb = new_notebook(cells=built)
    nb.metadata.update({"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    nb.metadata.update(metadata or {})
    return nb


def script_constant(script: str | Path, name: str):
    """The literal value a generated script assigns to a module-level constant."""
    text = script.read_text(encoding="utf-8") if isinstance(script, Path) else script
    for node in ast.parse(text).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == name):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in the script")


def script_tasks(script: Path) -> dict[str, str]:
    """A generated script's notebook steps, in order: step name -> KFP task name (read from its pipeline)."""
    import runpy

    from nbconvert_kfp.script.dag import Graph

    graph = Graph.from_pipeline(runpy.run_path(str(script))["pipeline"])
    return {step: graph.tasks[step] for step in graph.steps}


def run(cmd, cwd, timeout=600, **env):
    """Run a command; stdout and stderr merged, decoded as UTF-8; ``env`` adds variables."""
    environment = dict(os.environ, PYTHONIOENCODING="utf-8", **env)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=environment, timeout=timeout, encoding="utf-8", errors="replace")


@contextlib.contextmanager
def _as_a_new_process(cwd, out: io.StringIO, err: io.StringIO, environment: dict[str, str] | None = None):
    """This process set up as a command's own would be: ``cwd`` its working folder, ``environment`` (if given) the
    whole of ``os.environ``, stdout and stderr written into ``out`` and ``err``; the folder and the environment
    are restored after, whatever the command changed."""
    before, saved = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        os.chdir(before)
        os.environ.clear()
        os.environ.update(saved)


def _exit_status(exit: SystemExit) -> int:
    """The status a process ending with this ``SystemExit`` would have."""
    return exit.code if isinstance(exit.code, int) else (1 if exit.code else 0)


def nbconvert(args, cwd, merge: bool = False) -> subprocess.CompletedProcess:
    """``jupyter nbconvert ARGS`` run in this process, in ``cwd``: the command line a user types, parsed and run by
    nbconvert's own application, with its exit status, stdout and stderr, without the seconds a new Python
    process spends importing nbconvert and kfp. The real ``jupyter`` process has contract tests of its own
    (tests/cli/test_exporter_cli.py); an exception that would print a traceback there propagates here.
    ``merge``: stderr goes to stdout, as ``run`` merges them."""
    from nbconvert.nbconvertapp import NbConvertApp

    out = io.StringIO()
    err = out if merge else io.StringIO()
    NbConvertApp.clear_instance()
    try:
        with _as_a_new_process(cwd, out, err):
            app = NbConvertApp.instance()
            try:
                app.initialize([str(a) for a in args])
                app.start()
                status = 0
            except SystemExit as exit:
                status = _exit_status(exit)
            finally:
                for handler in app.log.handlers if isinstance(app.log, logging.Logger) else []:
                    handler.flush()
    finally:
        NbConvertApp.clear_instance()
    return subprocess.CompletedProcess(["jupyter", "nbconvert", *map(str, args)], status, out.getvalue(),
                                       None if merge else err.getvalue())


def nbconvert_kfp(args, cwd, environment: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``nbconvert-kfp ARGS`` run in this process, in ``cwd``: the command's own ``main`` with its exit status,
    stdout and stderr, without the seconds a new Python process spends importing nbconvert and kfp.
    ``environment``, if given, is the whole of ``os.environ`` during the call. What processes the command starts
    print goes to this process's file descriptors, not into the result: tests of subcommands that start
    pipelines (``local``, ``tune``) run the real process. An exception that would print a traceback propagates;
    a thread the command leaves running (a process would end it at exit) fails the call."""
    from nbconvert_kfp.command import main

    out, err = io.StringIO(), io.StringIO()
    threads = set(threading.enumerate())
    with _as_a_new_process(cwd, out, err, environment):
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit:
            status = _exit_status(exit)
    # A process would end its threads at exit; here one left running could act in a later test.
    left = [t for t in threading.enumerate() if t not in threads and t.name.startswith("nbconvert-kfp")
            and (t.join(5) or t.is_alive())]
    assert not left, f"nbconvert-kfp {' '.join(map(str, args))} left threads running: {[t.name for t in left]}"
    return subprocess.CompletedProcess(["nbconvert-kfp", *map(str, args)], status, out.getvalue(), err.getvalue())


_NBCLIENT_EXEC = textwrap.dedent(r"""
    import json, os, sys
    import nbformat
    from nbclient import NotebookClient

    path, names = sys.argv[1], sys.argv[2].split(",")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\nprint('@@VALUES@@' + _json.dumps({_n: globals()[_n] for _n in %r}))" % names))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(path)}}).execute()
    for output in nb.cells[-1].outputs:
        if output.get("output_type") == "stream":
            for line in output["text"].splitlines():
                if line.startswith("@@VALUES@@"):
                    print(line)
""")


def nbclient_values(notebook: Path, names: list[str]) -> dict:
    """Run a notebook top to bottom with nbclient (in its folder); the JSON values of ``names`` at the end."""
    import json

    proc = run([PYTHON, "-c", _NBCLIENT_EXEC, notebook, ",".join(names)], cwd=notebook.parent)
    assert proc.returncode == 0, proc.stdout[-5000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@VALUES@@")]
    assert lines, proc.stdout[-5000:]
    return json.loads(lines[-1][len("@@VALUES@@"):])


def free_port() -> int:
    """A TCP port free on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a server the test started; kill it if it does not exit in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


#: The KFP task that ships the code every step shares (the step runtime, the imports and functions cells).
SHARED_TASK = "shared-code"


def step_tasks(spec: dict) -> dict:
    """The tasks of a compiled pipeline spec that run notebook steps (not the shared-code task)."""
    return {name: task for name, task in spec["root"]["dag"]["tasks"].items() if name != SHARED_TASK}


def processes_mentioning(text: str) -> list[str]:
    """The processes (but this one) whose command line contains ``text``: ``pid: command line``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found
