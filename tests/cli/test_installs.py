"""What a step pip-installs on a cluster, read from the compiled IR and installed from a package index built here.

No network: the index is a folder of wheels written by the test (PEP 503 pages over file:// URLs),
and pip runs in a virtual environment of its own.
"""

from __future__ import annotations

import html
import os
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
import yaml

from nbconvert_kfp import __version__
from nbconvert_kfp.distribution import RUNTIME_DISTRIBUTION, runtime_wheel, write_wheel

from helpers import JUPYTER, PYTHON, build_notebook, run, step_tasks

#: Distributions installed "here" (where the conversion runs) by the test: name -> (version, files).
INSTALLED = {
    # a local build: no index serves 1.2.0+cpu, the pin must say 1.2.0
    "nbkfp-localbuild": ("1.2.0+cpu", {"nbkfp_localbuild/__init__.py": "VALUE = 12\n"}),
    # two distributions share the namespace package nbkfp_ns
    "nbkfp-ns-core": ("1.0", {"nbkfp_ns/core/__init__.py": "CORE = 1\n"}),
    "nbkfp-ns-storage": ("2.0", {"nbkfp_ns/storage/__init__.py": "STORED = 20\n"}),
}


def _site(root: Path) -> Path:
    """A folder that looks like site-packages holding INSTALLED (modules and their dist-info)."""
    site = root / "site"
    for name, (version, files) in INSTALLED.items():
        for path, text in files.items():
            (site / path).parent.mkdir(parents=True, exist_ok=True)
            (site / path).write_text(text, encoding="utf-8")
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
        (info / "RECORD").write_text("".join(f"{p},,\n" for p in files), encoding="utf-8")
    return site


def _index(root: Path, wheels: list[Path]) -> str:
    """A PEP 503 simple index over ``wheels``; returns its file:// URL."""
    simple = root / "index" / "simple"
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        projects.setdefault(wheel.name.split("-")[0].replace("_", "-").lower(), []).append(wheel)
    for project, files in projects.items():
        folder = simple / project
        folder.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="{html.escape(w.resolve().as_uri())}">{html.escape(w.name)}</a>\n' for w in files)
        (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n", encoding="utf-8")
    (simple / "index.html").write_text("".join(f'<a href="{p}/">{p}</a>\n' for p in projects), encoding="utf-8")
    return simple.resolve().as_uri() + "/"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The converting environment's extra distributions, a package index serving their public versions,
    and a fresh virtual environment (pip, nothing else) standing for a step's image."""
    root = tmp_path_factory.mktemp("installs")
    site = _site(root)
    wheels = [write_wheel("nbkfp-localbuild", "1.2.0", {"nbkfp_localbuild/__init__.py": "VALUE = 12\n"}, root / "w"),
              write_wheel("nbkfp-ns-storage", "2.0", {"nbkfp_ns/storage/__init__.py": "STORED = 20\n"}, root / "w"),
              runtime_wheel(root / "w")]
    image = root / "image"
    venv.EnvBuilder(with_pip=True).create(image)
    return {"root": root, "site": site, "index": _index(root, wheels), "python": image / "bin" / "python"}


STEP = """\
import nbkfp_localbuild
from nbkfp_ns.storage import STORED
print("VALUES", nbkfp_localbuild.VALUE + STORED)
"""


def _convert(world, name: str, *traits: str, cells=None) -> tuple[subprocess.CompletedProcess, dict | None]:
    directory = world["root"] / name
    directory.mkdir()
    nb = build_notebook(cells or [(["step:use"], STEP)])
    nbformat.write(nb, directory / f"{name}.ipynb")
    # the worktree's PYTHONPATH (if any) stays behind the extra distributions
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(world["site"]), os.environ.get("PYTHONPATH")]))}
    converted = run([JUPYTER, "nbconvert", "--to", "kfp", f"{name}.ipynb", *traits], cwd=directory, **env)
    if converted.returncode != 0:
        return converted, None
    compiled = run([PYTHON, f"{name}_pipeline.py"], cwd=directory, **env)
    assert compiled.returncode == 0, compiled.stdout
    return converted, yaml.safe_load((directory / f"{name}_pipeline.yaml").read_text(encoding="utf-8"))


def _container(spec: dict, task: str) -> dict:
    component = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]


def _pip_lines(container: dict) -> list[list[str]]:
    """Each install line of the step as pip would get it: pip's index options, then the line's arguments."""
    lines = container["command"][2].splitlines()
    [pip] = [shlex.split(line.split("{", 1)[1].rsplit('"$@"', 1)[0])
             for line in lines if line.startswith("pip_install()")]
    assert pip[:5] == ["python3", "-m", "pip", "install", "-q"], pip
    return [pip[5:] + shlex.split(line)[1:] for line in lines if line.startswith("install ")]


def _install(world, container: dict) -> subprocess.CompletedProcess:
    """Run the step's install lines (its ``sh -ec`` program up to kfp's part) with the fresh environment's
    python3: the index serves no uv, so pip installs."""
    bin_dir = Path(world["python"]).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "PIP_NO_CACHE_DIR": "1", "PIP_CONFIG_FILE": "/dev/null"}
    script = container["command"][2]
    return subprocess.run(["sh", "-ec", script[:script.index("program_path=")], "true"], env=env,
                          capture_output=True, text=True, timeout=300)


def test_pins_drop_local_labels_and_name_the_namespace_distribution_and_install_from_the_index(world):
    converted, spec = _convert(world, "pins", f"--KFPExporter.pip_index_urls={world['index']}",
                               "--KFPExporter.install_kfp_package=False", "--KFPExporter.runtime=package")
    assert converted.returncode == 0, converted.stdout
    assert "nbkfp-localbuild is installed here as 1.2.0+cpu, a local build" in converted.stdout
    container = _container(spec, "use")
    [line] = _pip_lines(container)
    requirements = [token for token in line if not token.startswith("-") and token != world["index"]]
    assert sorted(requirements) == sorted(["nbkfp-localbuild==1.2.0", "nbkfp-ns-storage==2.0",
                                           f"{RUNTIME_DISTRIBUTION}=={__version__}"])
    assert "--trusted-host" not in line and "--index-url" in line
    installed = _install(world, container)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    check = subprocess.run([world["python"], "-I", "-c", STEP + "from nbconvert_kfp.runtime.step import Step"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "VALUES 32" in check.stdout


def test_trusted_hosts_only_when_asked(world):
    _, spec = _convert(world, "trusted", "--KFPExporter.pip_index_urls=https://mirror.example/simple",
                       "--KFPExporter.pip_trusted_hosts=mirror.example")
    for line in _pip_lines(_container(spec, "use")):
        assert line[line.index("--trusted-host") + 1] == "mirror.example"


def test_kfp_is_installed_whatever_other_kfp_packages_a_step_needs(world):
    cells = [(["step:client"], "import kfp_server_api\nprint(kfp_server_api.__name__)"),
             (["step:uses_kfp"], "import kfp\nprint(kfp.__version__)")]
    _, spec = _convert(world, "kfpdeps", cells=cells)
    from importlib import metadata

    kfp_pin = f"kfp=={metadata.version('kfp')}"
    for task in step_tasks(spec):
        lines = _pip_lines(_container(spec, task))
        requirements = {token for line in lines for token in line if not token.startswith("-")}
        assert kfp_pin in requirements, (task, lines)
        assert not any("--no-deps" in line and kfp_pin in line for line in lines), (task, lines)  # with dependencies
    _, spec = _convert(world, "kfpoff", "--KFPExporter.install_kfp_package=False", cells=cells[:1])
    requirements = {t for line in _pip_lines(_container(spec, "client")) for t in line if not t.startswith("-")}
    assert kfp_pin not in requirements and any(r.startswith("kfp-server-api==") for r in requirements)
    assert "\nINSTALL_KFP = False\n" in (world["root"] / "kfpoff" / "kfpoff_pipeline.py").read_text()


def test_an_image_with_another_python_is_warned_about(world):
    cells = [(["step:old", "image:python:3.8-slim"], "import numpy\nprint(numpy.__version__)")]
    converted, _ = _convert(world, "oldpython", cells=cells)
    assert converted.returncode == 0
    if sys.version_info[:2] != (3, 8):
        assert "step 'old' runs in image python:3.8-slim (Python 3.8)" in converted.stdout
        assert "numpy==" in converted.stdout
