"""Benchmark 8: a step's cold package install on a cluster, our install lines against KFP's pip command.

``examples/model_comparison.ipynb`` is converted and compiled; its first step's install lines (uv,
which pip installs first, as in a plain ``python:3.11`` image) are run against the command kfp itself
builds for the same pins (``@dsl.component(packages_to_install=...)``: ``python3 -m pip install``,
then kfp without its dependencies). Each runs once, in a fresh virtual environment (pip only, as the
image has), with no package cache: ``PIP_NO_CACHE_DIR=1``, ``UV_NO_CACHE=1``, an empty ``HOME`` and
cache directory, and no pip configuration or find-links. Needs the network to PyPI.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import yaml

from .common import Result, progress, python, run_timed

NAME = "cold_install"
NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "model_comparison.ipynb"
#: Our install takes at most this share of pip's.
TARGET_RATIO = 0.4


def _first_step_command() -> list[str]:
    """The command of the notebook's first step (after the shared code), as the compiled pipeline has it."""
    import nbformat

    from nbconvert_kfp.exporters import KFPExporter, compile_script

    nb = nbformat.read(NOTEBOOK, as_version=4)
    resources = {"metadata": {"name": NOTEBOOK.stem, "path": str(NOTEBOOK.parent)}}
    script, _ = KFPExporter().from_notebook_node(nb, resources)
    spec = yaml.safe_load(compile_script(script))
    tasks = spec["root"]["dag"]["tasks"]
    first = next(name for name, task in tasks.items() if task.get("dependentTasks") == ["shared-code"])
    label = spec["components"][tasks[first]["componentRef"]["name"]]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]["container"]["command"]


def _kfp_command(pins: list[str]) -> list[str]:
    """The command kfp builds for a component that installs ``pins`` (kfp's own install included)."""
    from kfp import dsl

    def first_step():  # no annotation: kfp reads "None" (a string here) as an artifact type
        pass

    component = dsl.component(first_step, base_image="python:3.11", packages_to_install=pins)
    return list(component.component_spec.implementation.container.command)


def _environment(work: Path, name: str) -> dict[str, str]:
    """A fresh virtual environment standing for the image, and the environment to install into it with."""
    image = work / name
    subprocess.run([python(), "-m", "venv", str(image)], check=True)
    home = work / f"{name}-home"
    (home / "cache").mkdir(parents=True)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PIP_", "UV_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(PATH=f"{image / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", HOME=str(home),
               XDG_CACHE_HOME=str(home / "cache"), UV_CACHE_DIR=str(home / "cache" / "uv"), UV_NO_CACHE="1",
               PIP_NO_CACHE_DIR="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def run() -> list[Result]:
    """Time both installs once, each cold."""
    command = _first_step_command()
    script = command[2]
    ours = script[:script.index("program_path=")]  # the install lines, without kfp's program
    pins = [word for line in ours.splitlines() if line.startswith("install ") and "--no-deps" not in line
            for word in shlex.split(line)[1:]]
    kfp = _kfp_command(pins)
    progress(f"  pins of the first step: {' '.join(pins)}")
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        work = Path(tmp)
        timed = {}
        for name, argv in (("ours", ["sh", "-ec", ours, "true"]), ("kfp_pip", kfp[:3] + ["true"])):
            env = _environment(work, name)
            timed[name] = run_timed(argv, f"install-{name}.log", cwd=work, env=env, timeout=900)
            if timed[name].returncode:
                raise RuntimeError(f"the {name} install failed:\n{timed[name].tail()}")
            progress(f"  {name}: {timed[name].seconds:.1f} s")
    return [Result(NAME, f"cold install of {NOTEBOOK.name}'s first step ({len(pins)} pins + kfp)", "s",
                   timed["ours"].seconds, baseline_name="KFP's pip command", baseline=timed["kfp_pip"].seconds,
                   target=TARGET_RATIO, target_on="vs_baseline", target_text=f"<= {TARGET_RATIO:g}x baseline",
                   details={"pins": pins, "ours_s": timed["ours"].seconds, "kfp_pip_s": timed["kfp_pip"].seconds})]
