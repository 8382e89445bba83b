"""Hostile values at the surfaces a user (or an attacker) touches: YAML, shell, Python stay as generated.

A string parameter, a description, a ``package:`` tag, an index URL: each either arrives
intact as data or is rejected at conversion with a one-line error naming the cell or setting.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers import build_notebook, nbconvert, nbconvert_kfp

#: The top-level keys of a compiled pipeline (no platform document for these notebooks).
IR_KEYS = {"components", "deploymentSpec", "pipelineInfo", "root", "schemaVersion", "sdkVersion"}
INJECTED = "x\nsdkVersion: evil\ndefaultPipelineRoot: s3://attacker/loot\n#"
CONTROL = "a\x1bb\x00c\x07d\x85e\u2028f\u2029g\rh\x0ci\tj"
#: What a command line can carry of it (no NUL).
CONTROL_ARG = CONTROL.replace("\x00", "")


def _notebook(tmp_path: Path, default: str = "safe", description: str | None = None, tags=(), name="nb") -> Path:
    cells = [(["pipeline-parameters"], f"S = {default!r}\nN = 1\nR = 0.5"),
             (["step:a", *tags], "x = S + str(N)"),
             (["step:b", "prev:a"], "print(x)")]
    metadata = {"kubeflow_notebook": {"pipeline_description": description}} if description else None
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(build_notebook(cells, metadata), path)
    return path


def _run(cmd, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONIOENCODING="utf-8"))


def _documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def _default(document: dict) -> str:
    return document["root"]["inputDefinitions"]["parameters"]["S"]["defaultValue"]


def _clean_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """The one error line of a failed conversion; it names each of ``names``."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or line.startswith("error")]
    assert len(errors) == 1, result.stderr
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("value", [INJECTED, CONTROL], ids=["newline-keys", "control-characters"])
def test_string_default_in_the_notebook_stays_a_value_in_the_script_yaml(tmp_path, value):
    notebook = _notebook(tmp_path, value, description=value)
    assert nbconvert(["--to", "kfp", notebook.name], tmp_path).returncode == 0
    result = _run([sys.executable, "nb_pipeline.py"], tmp_path)
    assert result.returncode == 0, result.stderr
    [document] = _documents(tmp_path / "nb_pipeline.yaml")
    assert set(document) == IR_KEYS
    assert _default(document) == value


def test_string_given_with_p_stays_a_value_in_the_yaml(tmp_path):
    notebook = _notebook(tmp_path)
    assert nbconvert(["--to", "kfp", notebook.name], tmp_path).returncode == 0
    result = _run([sys.executable, "nb_pipeline.py", "-p", "S", INJECTED + CONTROL_ARG], tmp_path)
    assert result.returncode == 0, result.stderr
    [document] = _documents(tmp_path / "nb_pipeline.yaml")
    assert set(document) == IR_KEYS
    assert _default(document) == INJECTED + CONTROL_ARG


def test_nbconvert_kfp_compile_with_p_keeps_the_yaml_structure(tmp_path):
    notebook = _notebook(tmp_path)
    result = nbconvert_kfp(["compile", notebook.name, "-p", "S", INJECTED, "--output", "out.yaml"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    [document] = _documents(tmp_path / "out.yaml")
    assert set(document) == IR_KEYS
    assert _default(document) == INJECTED


def test_kfp_yaml_exporter_output_loads_with_control_characters(tmp_path):
    notebook = _notebook(tmp_path, CONTROL + INJECTED, description=CONTROL)
    result = nbconvert(["--to", "kfp_yaml", notebook.name], tmp_path)
    assert result.returncode == 0, result.stderr
    [document] = _documents(tmp_path / "nb_pipeline.yaml")
    assert set(document) == IR_KEYS
    assert _default(document) == CONTROL + INJECTED


def test_a_non_finite_float_is_refused_for_a_compiled_pipeline_without_a_traceback(tmp_path):
    notebook = _notebook(tmp_path)
    assert nbconvert(["--to", "kfp", notebook.name], tmp_path).returncode == 0
    for result in (_run([sys.executable, "nb_pipeline.py", "-p", "R", "inf"], tmp_path),
                   nbconvert_kfp(["compile", notebook.name, "-p", "R", "nan"], tmp_path)):
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "parameter R:" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("tag", [
    "package:requests==2.0'$(touch${IFS}canary)'",
    "package:requests==2.0$(touch${IFS}canary)",
    'package:requests==2.0"`touch${IFS}canary`"',
    "package:requests; python_version>'3'$(touch canary)",
    "package:pkg @ https://example.com/p.whl$(touch${IFS}canary)",
    "package:--index-url=https://attacker.example/simple",
])
def test_hostile_package_tag_is_rejected_naming_the_cell(tmp_path, tag):
    notebook = _notebook(tmp_path, tags=[tag])
    result = nbconvert(["--to", "kfp", notebook.name], tmp_path)
    _clean_error(result, "cell 2:", "package:")
    assert not (tmp_path / "nb_pipeline.py").exists()
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize("option, value", [
    ("pip_index_urls", "https://pypi.example.com/simple;touch${IFS}canary"),
    ("pip_index_urls", "https://pypi.example.com/simple $(touch canary)"),
    ("pip_index_urls", "ftp://pypi.example.com/simple"),
    ("pip_index_urls", "https://pypi.example.com/simple?a=1&touch=canary"),
    ("pip_trusted_hosts", "pypi.example.com;touch canary"),
    ("extra_packages", "requests==2.0'$(touch canary)'"),
])
def test_hostile_install_setting_is_rejected_naming_the_setting(tmp_path, option, value):
    notebook = _notebook(tmp_path)
    result = nbconvert(["--to", "kfp", f"--KFPExporter.{option}={value}", notebook.name], tmp_path)
    _clean_error(result, f"KFPExporter.{option}")
    assert not (tmp_path / "nb_pipeline.py").exists()


def _fake_python3(directory: Path) -> Path:
    """A ``python3`` that records its arguments, one per line, in ``pip-args``."""
    directory.mkdir()
    fake = directory / "python3"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a" >> "$(dirname "$0")/pip-args"; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return directory / "pip-args"


def test_legit_requirements_and_index_reach_the_installer_as_single_arguments(tmp_path):
    requirements = ['torch>=2; python_version>"3.8"', "pkg[extra]==1.0", "requests"]
    notebook = _notebook(tmp_path, tags=[f"package:{r}" for r in requirements])
    index = "https://pypi.example.com/simple"
    result = nbconvert(["--to", "kfp_yaml", f"--KFPExporter.pip_index_urls={index}",
                   "--KFPExporter.pip_trusted_hosts=pypi.example.com", notebook.name], tmp_path)
    assert result.returncode == 0, result.stderr
    [document] = _documents(tmp_path / "nb_pipeline.yaml")
    command = document["deploymentSpec"]["executors"]["exec-a"]["container"]["command"]
    assert command[:2] == ["sh", "-ec"]
    recorded = _fake_python3(tmp_path / "bin")
    shell = subprocess.run(["sh", "-ec", command[2], "true"], cwd=tmp_path, capture_output=True, text=True,
                           env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=60)
    assert shell.returncode == 0, shell.stderr
    arguments = recorded.read_text().splitlines()
    for requirement in requirements:
        assert requirement in arguments
    assert arguments[arguments.index("--index-url") + 1] == index
    assert arguments[arguments.index("--allow-insecure-host") + 1] == "pypi.example.com"  # uv's --trusted-host


# --- secrets in error messages ----------------------------------------------------------------------

#: A token long enough that any cut of a message could fall inside it.
TOKEN = "tok-" + "9f3e1ab27c54d80e6b1fa93c2d7e45b8a06c1f29d3e8b7a4"


def _token_pieces(text: str) -> list[str]:
    """The 6-character pieces of TOKEN that ``text`` shows."""
    return [TOKEN[i:i + 6] for i in range(len(TOKEN) - 5) if TOKEN[i:i + 6] in text]


@pytest.fixture
def fake_kfp():
    from fakekfp import FakeKFP

    with FakeKFP() as server:
        yield server


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KF_PIPELINES") and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(HOME=str(tmp_path / "home"), PYTHONIOENCODING="utf-8", **extra)
    return env


def test_a_server_echoing_the_token_never_shows_any_part_of_it(tmp_path, fake_kfp):
    notebook = _notebook(tmp_path)
    assert nbconvert(["--to", "kfp", notebook.name], tmp_path).returncode == 0
    prefix = "the message before the header "
    for padding in range(240, 300, 7):  # the token starts before, at and after every cut point
        fake_kfp.echo_authorization = "." * padding + prefix + "{authorization} was refused"
        result = subprocess.run([sys.executable, "nb_pipeline.py", "--host", fake_kfp.url, "--upload"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120,
                                env=_clean_env(tmp_path, KF_PIPELINES_TOKEN=TOKEN))
        assert result.returncode == 1 and "HTTP 401" in result.stderr, result.stderr
        assert _token_pieces(result.stdout + result.stderr) == [], (padding, result.stderr)


# --- kfp's prints silenced in one thread only -----------------------------------------------------------

def test_silencing_one_thread_never_swallows_another_threads_output(capsys):
    import threading

    from nbconvert_kfp.script.silence import silenced

    entered, leave = threading.Event(), threading.Event()

    def quiet_worker():
        with silenced():
            print("dropped")
            entered.set()
            leave.wait(30)
            print("dropped too")

    worker = threading.Thread(target=quiet_worker)
    worker.start()
    assert entered.wait(30)
    with silenced():  # a second silenced block that ends before the first one
        print("dropped as well")
    print("kept while the other thread is silenced")
    leave.set()
    worker.join(30)
    print("kept after")
    out = capsys.readouterr().out
    assert out == "kept while the other thread is silenced\nkept after\n"
    assert type(sys.stdout).__name__ != "_ThreadStream"  # the process's stdout is its own again
