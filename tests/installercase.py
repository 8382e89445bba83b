"""What the installer tests install: the requirements, the kfp pin, the indexes, and the compiled commands."""

from __future__ import annotations

import os

import pytest
import yaml

from nbconvert_kfp.exporters import KFPExporter, compile_script

from helpers import build_notebook

#: Hostile-looking but valid: the setting's (a tag cannot hold a comma), then the tags'.
EXTRA = "a>=1,<2"

TAGGED = ['pkg[extra]==1.0; python_version>"3.8" and platform_system!="Windows"', "b~=1.0",
          "name @ https://example.com/name-1.0-py3-none-any.whl"]

CELLS = [(["step:a", *(f"package:{r}" for r in TAGGED)], "x = 1")]

REQUIREMENTS = [EXTRA, *TAGGED]

INDEXES = ["https://user:tok%40x@pypi.example.com:8443/simple/~a+b,c=d", "file:///srv/wheels"]

HOST = "pypi.example.com:8443"


def compiled_commands(cells=CELLS, env: dict[str, str] | None = None, **traits) -> dict[str, list[str]]:
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


KFP_PIN = "kfp==" + __import__("kfp").__version__


@pytest.fixture(scope="module")
def command():
    commands = compiled_commands(pip_index_urls=INDEXES, pip_trusted_hosts=[HOST])
    return commands["a"]
