"""Adversarial sweep: hostile text at every place a notebook, a setting, ``-p`` or the server API takes text.

Run it from the repository root: ``python -m bench.adversarial`` (``--quick`` for a smaller sweep,
``--no-server`` / ``--no-cli`` to leave those parts out). Each case puts one payload at one
place and records what happened:

- **converted**: the conversion succeeded; then the generated script, its compiled YAML and
  every step's shell command are checked for **escapes**: a Python structure (AST node types)
  that differs from the same notebook with a benign value, YAML top-level keys that differ (or
  YAML that does not load), or a shell command that creates the ``canary`` file;
- **clean error**: one line, naming a cell (``cell N:``) or the tag, setting or field at fault
  (and, on the command line, exit 1 without a traceback);
- **unclear error**: an error without a location, or on several lines;
- **traceback**: any other exception (in process) or a Python traceback (command line);
- **server 500**: the Jupyter server API answered 500.

The hostile-KFP-host family (``--no-kfp`` leaves it out, ``--kfp-only`` runs only it) runs the
``nbconvert-kfp`` command's ``status``, ``logs`` and ``list`` against tests/fakekfp.py's hostile modes
(malformed answers, HTTP errors, escape sequences, echoed tokens, trickling, silent, huge and
gzip-bombed answers): **answered** (exit 0), **clean** (exit 1, one line), **unclear**, **traceback**,
**hang** (not done within ``KFP_WALL`` seconds); an **escape** is a raw terminal control character or
a form of the token in the output.

The figures go to stdout as a table per payload family and to ``bench/results/adversarial.json``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .common import RESULTS, progress

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: Hostile payloads by family. Shell payloads create a file named ``canary`` in the working directory.
PAYLOADS: dict[str, list[str]] = {
    "quotes": ["'", '"', "'''x'''", '"""', "a'b\"c\\"],
    "newlines": ["x\nsdkVersion: evil\ndefaultPipelineRoot: s3://attacker/loot\n#", "a\r\nb",
                 'x\n    import os\n    os.system("touch canary")'],
    "shell": ["$(touch canary)", "x==1'$(touch${IFS}canary)'", "`touch canary`", ";touch${IFS}canary", "'$(touch${IFS}canary)'",
              '"$(touch canary)"', "|| touch canary &&"],
    "control": ["a\x1b[31mb", "a\x00b", "\x07\x08\x7f", "a\x85b", "a\u2028b\u2029c"],
    "long": ["a" * 300, "x" * 20000],
    "unicode": ["é-ü", "ｓｔｅｐ", "🚀", "a\u202eb", "a\u200bb"],
    "code": ["__import__('os').system('touch canary')", "{{ x }}{% raw %}", "}}{{", "%s%d{0}", "\\", "#"],
    "yaml": [": ", "- a", "&a *a", '!!python/object/apply:os.system ["touch canary"]', "{a: b}"],
}
#: What every placement holds when it is not under attack.
BENIGN = "benign"
IR_KEYS = ("components", "deploymentSpec", "pipelineInfo", "root", "schemaVersion", "sdkVersion")


@dataclass(frozen=True)
class Notebook:
    """A notebook under test: ``(tags, source)`` cells, ``kubeflow_notebook`` metadata, exporter options."""

    cells: tuple[tuple[tuple[str, ...], str], ...]
    metadata: dict[str, Any] = field(default_factory=dict, hash=False)
    options: dict[str, Any] = field(default_factory=dict, hash=False)


def _cells(parameters: str = "S = 'benign'\nN = 1", step: str = "a", extra: tuple[str, ...] = (),
           source: str = "x = S + str(N)") -> tuple[tuple[tuple[str, ...], str], ...]:
    return (("pipeline-parameters",), parameters), ((f"step:{step}", *extra), source), \
        (("step:b", f"prev:{step}"), "print(x)")


#: Where a payload goes: name -> (notebook with the payload, the benign value of that place).
PLACEMENTS: dict[str, tuple[Callable[[str], Notebook], str]] = {
    "step name": (lambda p: Notebook(_cells(step=p)), "a"),
    "env tag value": (lambda p: Notebook(_cells(extra=(f"env:GREETING={p}",))), BENIGN),
    "label tag value": (lambda p: Notebook(_cells(extra=(f"label:team:{p}",))), BENIGN),
    "raw tag": (lambda p: Notebook(_cells(extra=(p,))), "x-benign"),
    "package tag": (lambda p: Notebook(_cells(extra=(f"package:{p}",))), "requests==2.0"),
    # the payload is the user's own source here: '#' turns the line into a comment, which is no escape
    "parameter name": (lambda p: Notebook(_cells(parameters=f"S = 'benign'\nN = 1\n{p} = 2" if p != "#" else
                                                 "S = 'benign'\nN = 1\n_ = 2  # = 2")), "BENIGN"),
    "parameter value": (lambda p: Notebook(_cells(parameters=f"S = {p!r}\nN = 1")), BENIGN),
    "string in a cell": (lambda p: Notebook(_cells(source=f"x = S + str(N) + {p!r}")), BENIGN),
    "description": (lambda p: Notebook(_cells(), {"pipeline_description": p}), BENIGN),
    "pipeline name": (lambda p: Notebook(_cells(), {"pipeline_name": p}), BENIGN),
    "experiment": (lambda p: Notebook(_cells(), {"experiment_name": p}), BENIGN),
    "base image": (lambda p: Notebook(_cells(), {"docker_image": p}), "python:3.11"),
    "steps_defaults": (lambda p: Notebook(_cells(), {"steps_defaults": [f"label:team:{p}"]}), BENIGN),
    "volume": (lambda p: Notebook(_cells(), {"volumes": [{"type": "pvc", "name": p, "mount_point": "/data"}]}),
               BENIGN),
    "extra_packages": (lambda p: Notebook(_cells(), options={"extra_packages": [p]}), "requests==2.0"),
    "pip_index_urls": (lambda p: Notebook(_cells(), options={"pip_index_urls": [p]}),
                       "https://pypi.example.com/simple"),
    "pip_trusted_hosts": (lambda p: Notebook(_cells(), options={"pip_index_urls": ["https://pypi.example.com/simple"],
                                                                  "pip_trusted_hosts": [p]}), "pypi.example.com"),
    "runtime_package": (lambda p: Notebook(_cells(), options={"runtime": "package", "runtime_package": p}),
                        "nbconvert-kfp-runtime==1.0"),
}


@dataclass
class Outcome:
    """What one case did."""

    surface: str
    family: str
    placement: str
    payload: str
    status: str  # converted, clean, unclear, traceback, server500, answered, hang
    escape: str = ""
    detail: str = ""


@dataclass
class Tally:
    """The figures of one payload family."""

    cases: int = 0
    converted: int = 0
    clean: int = 0
    unclear: int = 0
    tracebacks: int = 0
    escapes: int = 0
    server_500: int = 0
    hangs: int = 0


def _node(notebook: Notebook) -> Any:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell(source, metadata={"tags": list(tags)}) for tags, source in notebook.cells]
    metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"}}
    if notebook.metadata:
        metadata["kubeflow_notebook"] = dict(notebook.metadata)
    node = new_notebook(cells=cells, metadata=metadata)
    return nbformat.from_dict(json.loads(json.dumps(node)))


class _DisplayNames(ast.NodeTransformer):
    """Drops ``task.set_display_name("...")`` statements: the script adds one when a step's name is not a
    KFP name, which depends on the name but is not a change of structure."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        call = node.value
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr == "set_display_name" and all(isinstance(a, ast.Constant) for a in call.args)):
            return None
        return node


def skeleton(script: str) -> list[str]:
    """The AST node types of a script, in order: what a payload must never change."""
    tree = _DisplayNames().visit(ast.parse(script))
    return [type(node).__name__ for node in ast.walk(tree)]


def yaml_keys(text: str) -> list[list[str]]:
    """The top-level keys of each document of a YAML text."""
    import yaml

    return [sorted(document) if isinstance(document, dict) else [type(document).__name__]
            for document in yaml.safe_load_all(text)]


_FAKE_TOOL = "#!/bin/sh\nexit 0\n"


def shell_escape(yaml_text: str, workdir: Path) -> str:
    """Run every step's container command with a no-op python3 and pip; name the steps that made ``canary``."""
    import yaml

    fake = workdir / "bin"
    fake.mkdir(parents=True, exist_ok=True)
    for tool in ("python3", "python", "pip", "pip3"):
        (fake / tool).write_text(_FAKE_TOOL)
        (fake / tool).chmod(0o755)
    escaped = []
    documents = list(yaml.safe_load_all(yaml_text))
    executors = documents[0].get("deploymentSpec", {}).get("executors", {})
    for number, (name, executor) in enumerate(executors.items()):
        container = executor.get("container") or {}
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not argv:
            continue
        if any("\x00" in str(part) for part in argv):  # no shell can run that command
            escaped.append(f"{name[:40]} (NUL in the command)")
            continue
        run_dir = workdir / f"run-{number}"
        run_dir.mkdir(exist_ok=True)
        subprocess.run(argv, cwd=run_dir, capture_output=True, timeout=30,
                       env={"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(run_dir), "TMPDIR": str(run_dir)})
        if any(path.name == "canary" for path in run_dir.rglob("canary")):
            escaped.append(name[:40])
    return ", ".join(escaped)


def _clean_message(error: Any) -> bool:
    text = str(error)
    located = getattr(error, "cell_index", None) is not None or bool(getattr(error, "subject", None))
    return "\n" not in text and located


class Sweep:
    """The in-process sweep: conversion, compilation and the step commands, against a baseline."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.baselines: dict[str, tuple[list[str], list[list[str]]]] = {}

    def convert(self, notebook: Notebook) -> tuple[str, str]:
        """The script and its compiled YAML."""
        from nbconvert_kfp.exporters import KFPExporter, compile_script

        exporter = KFPExporter(**notebook.options)
        script, _ = exporter.from_notebook_node(_node(notebook), {"metadata": {"name": "nb"}})
        return script, compile_script(script)

    def baseline(self, placement: str) -> tuple[list[str], list[list[str]]]:
        """The AST skeleton and YAML keys of the placement with its benign value."""
        if placement not in self.baselines:
            build, benign = PLACEMENTS[placement]
            script, yaml_text = self.convert(build(benign))
            self.baselines[placement] = (skeleton(script), yaml_keys(yaml_text))
        return self.baselines[placement]

    def case(self, family: str, placement: str, payload: str) -> Outcome:
        """Convert one hostile notebook and check what came out."""
        from nbconvert_kfp.errors import KFPExportError

        outcome = Outcome("notebook/settings", family, placement, payload, "converted")
        build, _ = PLACEMENTS[placement]
        try:
            script, yaml_text = self.convert(build(payload))
        except KFPExportError as error:
            outcome.status = "clean" if _clean_message(error) else "unclear"
            outcome.detail = str(error)[:300]
            return outcome
        except Exception as error:  # what the sweep is looking for
            outcome.status, outcome.detail = "traceback", f"{type(error).__name__}: {str(error)[:300]}"
            return outcome
        python_shape, keys = self.baseline(placement)
        escapes = []
        if skeleton(script) != python_shape:
            escapes.append("python structure")
        try:
            loaded = yaml_keys(yaml_text)
        except Exception as error:  # YAML that does not load
            escapes.append(f"yaml unloadable ({type(error).__name__})")
        else:
            if loaded != keys:
                escapes.append("yaml keys")
            with tempfile.TemporaryDirectory(dir=self.workdir) as directory:
                shell = shell_escape(yaml_text, Path(directory))
            if shell:
                escapes.append(f"shell ({shell})")
        outcome.escape = "; ".join(escapes)
        return outcome


def _command_line_outcome(result: subprocess.CompletedProcess, outcome: Outcome, located: bool,
                          usage: bool = False) -> Outcome:
    """Classify a command's result; with ``usage``, argparse's usage lines before the error line are expected
    (and its exit status 2)."""
    output = result.stdout + result.stderr
    if result.returncode == 0:
        return outcome
    errors = [line for line in result.stderr.splitlines() if line.strip() and "Converting notebook" not in line]
    if usage and errors and ": error: " in errors[-1]:
        errors = errors[-1:]
    if "Traceback" in output:
        outcome.status = "traceback"
    elif result.returncode in ((1, 2) if usage else (1,)) and len(errors) == 1 and located:
        outcome.status = "clean"
    else:
        outcome.status = "unclear"
    outcome.detail = " | ".join(errors)[-300:]
    return outcome


def cli_cases(payloads: dict[str, list[str]], workdir: Path) -> list[Outcome]:
    """``jupyter nbconvert --to kfp`` at each placement, with a payload of a different family at each."""
    import nbformat

    outcomes = []
    families = list(payloads)
    for number, (placement, (build, _)) in enumerate(PLACEMENTS.items()):
        for family in (families[number % len(families)],):  # a different family at each place
            payload = next((v for v in payloads[family] if "\x00" not in v), None)
            if payload is None or any(o.placement == placement and o.family == family for o in outcomes):
                continue
            directory = Path(tempfile.mkdtemp(dir=workdir))
            notebook = build(payload)
            nbformat.write(_node(notebook), directory / "nb.ipynb")
            options = [f"--KFPExporter.{k}={v[0] if isinstance(v, list) else v}" for k, v in notebook.options.items()]
            result = subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "kfp", *options, "nb.ipynb"],
                                    cwd=directory, capture_output=True, text=True, timeout=300,
                                    env=dict(os.environ, PYTHONIOENCODING="utf-8"))
            errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
            located = bool(errors) and ("cell " in errors[0] or "KFPExporter." in errors[0]
                                        or "kubeflow_notebook" in errors[0] or "tag " in errors[0])
            outcome = _command_line_outcome(result, Outcome("jupyter nbconvert", family, placement, payload,
                                                            "converted"), located)
            if result.returncode == 0 and (directory / "canary").exists():
                outcome.escape = "shell (conversion)"
            outcomes.append(outcome)
            shutil.rmtree(directory, ignore_errors=True)
    return outcomes


def p_cases(payloads: dict[str, list[str]], workdir: Path) -> list[Outcome]:
    """``python X_pipeline.py -p S <payload>`` (a str) and ``-p N <payload>`` (an int): the compiled YAML."""
    import nbformat

    directory = Path(tempfile.mkdtemp(dir=workdir))
    nbformat.write(_node(Notebook(_cells())), directory / "nb.ipynb")
    subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "kfp", "nb.ipynb"], cwd=directory, check=True,
                   capture_output=True, timeout=300)
    outcomes = []
    for family, values in payloads.items():
        for payload in [v for v in values if "\x00" not in v][:1]:
            for name in ("S", "N"):
                output = directory / "out.yaml"
                output.unlink(missing_ok=True)
                result = subprocess.run([sys.executable, "nb_pipeline.py", "-p", name, payload, "--output", "out.yaml"],
                                        cwd=directory, capture_output=True, text=True, timeout=300,
                                        env=dict(os.environ, PYTHONIOENCODING="utf-8"))
                outcome = _command_line_outcome(result, Outcome("script -p", family, f"-p {name}", payload, "converted"),
                                                f"parameter {name}" in result.stderr, usage=True)
                if result.returncode == 0:
                    try:
                        keys = yaml_keys(output.read_text(encoding="utf-8"))
                        outcome.escape = "" if keys == [sorted(IR_KEYS)] else f"yaml keys {keys}"
                    except Exception as error:
                        outcome.escape = f"yaml unloadable ({type(error).__name__})"
                if (directory / "canary").exists():
                    outcome.escape = (outcome.escape + "; shell").strip("; ")
                outcomes.append(outcome)
    shutil.rmtree(directory, ignore_errors=True)
    return outcomes


class Server:
    """A Jupyter server with the extension, on a loopback port, for the API sweep."""

    def __init__(self, workdir: Path):
        base = workdir / "jupyter"
        config = base / "config" / "jupyter_server_config.d"
        config.mkdir(parents=True)
        shutil.copy(ROOT / "jupyter-config" / "jupyter_server_config.d" / "nbconvert_kfp.json", config)
        (base / "root").mkdir()
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_PIPELINES", "JUPYTER"))}
        env.update(HOME=str(base / "home"), JUPYTER_CONFIG_DIR=str(base / "config"),
                   JUPYTER_RUNTIME_DIR=str(base / "runtime"), KF_PIPELINES_ENDPOINT="http://127.0.0.1:9",
                   KF_PIPELINES_TOKEN="sweep-token")
        self.log = (base / "server.log").open("wb")
        self.process = subprocess.Popen(
            [str(BIN / "jupyter"), "server", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={base / 'root'}"], cwd=base, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.log.close()
                    raise RuntimeError("jupyter server did not start:\n"
                                       + (base / "server.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.3)

    def post(self, path: str, body: Any) -> int:
        """POST a JSON body (or raw bytes); the HTTP status."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + "/nbconvert-kfp/api/" + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _server_notebook(parameters: str = "S = 'benign'\nN = 1", tag: str | None = None) -> dict:
    notebook = Notebook(_cells(parameters=parameters, extra=(tag,) if tag else ()))
    return json.loads(json.dumps(_node(notebook)))


#: Server API fields: name -> (endpoint, body with the payload).
SERVER_FIELDS: dict[str, Callable[[str], tuple[str, Any]]] = {
    "name": lambda p: ("convert", {"notebook": _server_notebook(), "name": p}),
    "options.pipeline_name": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"pipeline_name": p}}),
    "options.pipeline_description": lambda p: ("convert", {"notebook": _server_notebook(),
                                                           "options": {"pipeline_description": p}}),
    "options.experiment": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"experiment": p}}),
    "options.base_image": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"base_image": p}}),
    "options.extra_packages": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"extra_packages": [p]}}),
    "options.pip_index_urls": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"pip_index_urls": [p]}}),
    "options.steps_defaults": lambda p: ("convert", {"notebook": _server_notebook(),
                                                     "options": {"steps_defaults": [f"env:X={p}"]}}),
    "parameters (str)": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"parameters": {"S": p}}}),
    "parameters (int)": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"parameters": {"N": p}}}),
    "parameters (name)": lambda p: ("convert", {"notebook": _server_notebook(), "options": {"parameters": {p: 1}}}),
    "notebook tag": lambda p: ("convert", {"notebook": _server_notebook(tag=f"step:{p}")}),
    "notebook parameter": lambda p: ("convert", {"notebook": _server_notebook(parameters=f"S = {p!r}\nN = 1")}),
    "deploy host": lambda p: ("deploy", {"notebook": _server_notebook(), "host": p}),
    "deploy host (url)": lambda p: ("deploy", {"notebook": _server_notebook(), "host": f"http://127.0.0.1:9/{p}"}),
    "deploy namespace": lambda p: ("deploy", {"notebook": _server_notebook(), "namespace": p}),
}
#: Bodies that are hostile as a whole.
SERVER_BODIES: dict[str, bytes] = {
    "nested 50,000 deep": b'{"notebook": ' + b"[" * 50000 + b"]" * 50000 + b"}",
    "NaN parameter": b'{"notebook": {}, "options": {"parameters": {"N": NaN}}}',
    "not JSON": b"{'notebook':",
    "notebook is a string": b'{"notebook": "x"}',
}


def server_cases(payloads: dict[str, list[str]], workdir: Path) -> list[Outcome]:
    """Every server field with the first payload of each family: the server must never answer 500."""
    server = Server(workdir)
    outcomes = []
    try:
        for field_name, build in SERVER_FIELDS.items():
            for family, values in payloads.items():
                for payload in values[:1]:
                    endpoint, body = build(payload)
                    status = server.post(endpoint, body)
                    outcomes.append(Outcome("server API", family, field_name, payload,
                                            "server500" if status >= 500 and status not in (502, 504) else "answered",
                                            detail=str(status)))
        for name, body in SERVER_BODIES.items():
            status = server.post("convert", body)
            outcomes.append(Outcome("server API", "body", name, name,
                                    "server500" if status >= 500 else "answered", detail=str(status)))
    finally:
        server.stop()
    return outcomes


#: Seconds a command may take against a hostile KFP host before it counts as a hang; the request deadline.
KFP_WALL = 30.0
KFP_DEADLINE = "2"
KFP_TOKEN = "kfp/Tok+en=5e1d7c3b9a2f4e6d8c0b"


def _kfp_escape(output: str) -> str:
    """What of the token or of a raw terminal control character a command's output shows."""
    import base64
    import re
    from urllib.parse import quote

    found = []
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", output.replace("\r\n", "\n")):
        found.append("control characters")
    forms = [KFP_TOKEN, quote(KFP_TOKEN, safe=""), KFP_TOKEN[:12], base64.b64encode(KFP_TOKEN.encode()).decode()[:16]]
    if any(form.lower() in output.lower() for form in forms):
        found.append("token")
    return ", ".join(found)


def kfp_cases(workdir: Path, quick: bool = False) -> list[Outcome]:
    """``nbconvert-kfp status``, ``logs`` and ``list`` against each hostile mode of tests/fakekfp.py."""
    import nbformat

    sys.path.insert(0, str(ROOT / "tests"))
    from fakekfp import ANSWER_MODES, TRANSPORT_MODES, FakeKFP
    from helpers import build_notebook

    folder = workdir / "kfp"
    folder.mkdir()
    nbformat.write(build_notebook([("parameters", "SEED = 1"), ("step:load", "data = [SEED]"),
                                   (["step:train", "prev:load"], "score = sum(data)"),
                                   ("pipeline-metrics", "print(score)")]), folder / "tiny.ipynb")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("KF_PIPELINES", "NBCONVERT_KFP"))}
    environment.update(HOME=str(folder / "home"), KF_PIPELINES_TOKEN=KFP_TOKEN, NBCONVERT_KFP_HTTP_DEADLINE=KFP_DEADLINE,
                       NBCONVERT_KFP_MAX_RESPONSE=str(1024 * 1024))
    command = [sys.executable, "-m", "nbconvert_kfp.command"]
    outcomes = []
    with FakeKFP() as server:
        server.require_token = KFP_TOKEN
        server.metric_values = {"train": {"score": 1.0}}
        subprocess.run([*command, "run", "tiny.ipynb", "--host", server.url, "--interval", "0.05"], cwd=folder,
                       env=environment, capture_output=True, timeout=300)
        run_id = list(server.runs)[-1]
        subcommands = [["status", run_id]] if quick else [["status", run_id], ["logs", run_id], ["list", "--all"]]
        for family, modes in (("kfp answers", ANSWER_MODES), ("kfp transport", TRANSPORT_MODES)):
            for mode in modes:
                server.hostile, server.transport = (mode, None) if family == "kfp answers" else (None, mode)
                for subcommand in subcommands:
                    outcome = Outcome("nbconvert-kfp vs a KFP host", family, f"{subcommand[0]} / {mode}", mode,
                                      "answered")
                    started = time.monotonic()
                    try:
                        result = subprocess.run([*command, *subcommand, "--host", server.url], cwd=folder,
                                                env=environment, capture_output=True, timeout=KFP_WALL)
                    except subprocess.TimeoutExpired:
                        outcome.status, outcome.detail = "hang", f"still running after {KFP_WALL:g} s"
                        outcomes.append(outcome)
                        continue
                    text = subprocess.CompletedProcess(result.args, result.returncode,
                                                       result.stdout.decode("utf-8", "replace"),
                                                       result.stderr.decode("utf-8", "replace"))
                    _command_line_outcome(text, outcome, located=True)
                    if outcome.status == "converted":
                        outcome.status = "answered"
                    outcome.escape = _kfp_escape(text.stdout + text.stderr)
                    outcome.detail = f"{time.monotonic() - started:.1f} s, exit {result.returncode}: {outcome.detail}"
                    outcomes.append(outcome)
        server.hostile = server.transport = None
    return outcomes


def tally(outcomes: list[Outcome]) -> dict[str, Tally]:
    """The figures per family (and a total)."""
    tallies: dict[str, Tally] = {family: Tally() for family in dict.fromkeys(o.family for o in outcomes)}
    tallies["total"] = Tally()
    for outcome in outcomes:
        for key in (outcome.family, "total"):
            entry = tallies[key]
            entry.cases += 1
            entry.converted += outcome.status in ("converted", "answered")
            entry.clean += outcome.status == "clean"
            entry.unclear += outcome.status == "unclear"
            entry.tracebacks += outcome.status == "traceback"
            entry.escapes += bool(outcome.escape)
            entry.server_500 += outcome.status == "server500"
            entry.hangs += outcome.status == "hang"
    return tallies


def table(tallies: dict[str, Tally]) -> str:
    """The figures as a text table."""
    columns = ("cases", "converted", "clean", "unclear", "tracebacks", "escapes", "server_500", "hangs")
    lines = [f"{'family':<14}" + "".join(f"{c:>12}" for c in columns)]
    for family, entry in tallies.items():
        lines.append(f"{family:<14}" + "".join(f"{getattr(entry, c):>12}" for c in columns))
    return "\n".join(lines)


def sweep(payloads: dict[str, list[str]], placements: list[str] | None = None) -> list[Outcome]:
    """The in-process cases: every payload at every placement (or those named)."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="nbconvert-kfp-adversarial-") as directory:
        runner = Sweep(Path(directory))
        for placement in placements or list(PLACEMENTS):
            for family, values in payloads.items():
                for payload in values:
                    outcomes.append(runner.case(family, placement, payload))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Run the sweep; print the table; write bench/results/adversarial.json. Exit 1 on an escape or a 500."""
    parser = argparse.ArgumentParser(prog="python -m bench.adversarial", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one payload per family")
    parser.add_argument("--full", action="store_true", help="every payload (the default: two per family)")
    parser.add_argument("--no-cli", action="store_true", help="leave out the command-line cases")
    parser.add_argument("--no-server", action="store_true", help="leave out the server API cases")
    parser.add_argument("--no-kfp", action="store_true", help="leave out the hostile-KFP-host cases")
    parser.add_argument("--kfp-only", action="store_true", help="run the hostile-KFP-host cases only")
    args = parser.parse_args(argv)
    per_family = None if args.full else 1 if args.quick else 2
    payloads = {family: values[:per_family] for family, values in PAYLOADS.items()}
    started = time.perf_counter()
    progress(f"adversarial: {sum(map(len, payloads.values()))} payloads x {len(PLACEMENTS)} placements, in process")
    outcomes = [] if args.kfp_only else sweep(payloads)
    with tempfile.TemporaryDirectory(prefix="nbconvert-kfp-adversarial-") as directory:
        workdir = Path(directory)
        if not args.no_kfp:
            progress("adversarial: nbconvert-kfp against a hostile KFP host")
            outcomes += kfp_cases(workdir, quick=args.quick)
        if not args.no_cli and not args.kfp_only:
            progress("adversarial: jupyter nbconvert, one payload per family at each placement")
            outcomes += cli_cases(payloads, workdir)
            progress("adversarial: the generated script's -p")
            outcomes += p_cases(payloads, workdir)
        if not args.no_server and not args.kfp_only:
            progress("adversarial: the Jupyter server API")
            outcomes += server_cases(payloads, workdir)
    tallies = tally(outcomes)
    print(table(tallies))
    by_surface = Counter(o.surface for o in outcomes)
    print("cases per surface: " + ", ".join(f"{surface} {count}" for surface, count in by_surface.items()))
    for outcome in outcomes:
        if outcome.escape or outcome.status in ("traceback", "server500", "unclear", "hang"):
            print(f"  {outcome.surface} / {outcome.placement} / {outcome.family} {outcome.payload[:40]!r}: "
                  f"{outcome.status} {outcome.escape} {outcome.detail[:200]}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "adversarial.json").write_text(json.dumps(
        {"seconds": round(time.perf_counter() - started, 1), "tallies": {k: asdict(v) for k, v in tallies.items()},
         "outcomes": [asdict(o) for o in outcomes]}, indent=1, ensure_ascii=True))
    progress(f"adversarial: done in {time.perf_counter() - started:.0f} s")
    total = tallies.get("total", Tally())
    return 1 if total.escapes or total.server_500 or total.tracebacks or total.hangs else 0


if __name__ == "__main__":
    sys.exit(main())
