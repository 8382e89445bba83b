"""The generated script's tools: nbconvert-kfp's own when the version that wrote the script is installed, else the
archive the script carries (so that it stands alone)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbconvert_kfp import __version__
from nbconvert_kfp.exporters import KFPExporter

from helpers import build_notebook


#: Loads a script (argv[1]) as the mode (argv[2]) asks, calls its _script_tools() and draws and compiles its
#: pipeline; prints where the tools came from. Modes: "installed" (as this environment has it), "hidden" (the
#: editable install's finder and every sys.path entry holding nbconvert_kfp dropped), "other" (a copy of another
#: version, argv[3], first on sys.path).
PROBE = textwrap.dedent(r"""
    import importlib.util, json, os, runpy, sys

    script, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode in ("hidden", "other"):
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
        sys.path[:] = [p for p in sys.path if not os.path.isfile(os.path.join(p or ".", "nbconvert_kfp", "__init__.py"))]
    if mode == "other":
        sys.path.insert(0, sys.argv[4])
    found = importlib.util.find_spec("nbconvert_kfp")
    namespace = runpy.run_path(script, run_name="probe")
    namespace["_script_tools"]()
    from nbconvert_kfp.script import cli
    status = namespace["main"](["--dag", os.path.join(out, "dag.md")]) + namespace["main"](
        ["--output", os.path.join(out, "p.yaml")])
    print(json.dumps({"found": found.origin if found else None, "cli": cli.__file__, "status": status,
                      "archives": [p for p in sys.path if os.path.basename(p).startswith("nbconvert-kfp-")]}))
""")


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    cells = [("parameters", "N = 2"), ("step:make", "xs = list(range(N))"), ("step:total", "print(sum(xs))")]
    text, _ = KFPExporter().from_notebook_node(build_notebook(cells), {"metadata": {"name": "tools"}})
    path = tmp_path_factory.mktemp("tools") / "tools_pipeline.py"
    path.write_text(text, encoding="utf-8")
    return path


def _probe(script: Path, tmp_path: Path, mode: str, *more: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(script), mode, str(tmp_path), *more], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 0
    assert "flowchart TD" in (tmp_path / "dag.md").read_text(encoding="utf-8")
    assert (tmp_path / "p.yaml").is_file()
    return result


def test_the_installed_nbconvert_kfp_of_the_scripts_version_serves_and_nothing_is_unpacked(script, tmp_path):
    result = _probe(script, tmp_path, "installed")
    assert result["found"] and result["archives"] == []
    assert Path(result["cli"]).parent.parent == Path(result["found"]).parent  # the installed package's own


def test_without_nbconvert_kfp_the_script_unpacks_the_tools_it_carries(script, tmp_path):
    result = _probe(script, tmp_path, "hidden")
    assert result["found"] is None
    assert len(result["archives"]) == 1 and result["cli"].startswith(result["archives"][0] + "/")


def test_another_installed_version_is_left_alone_for_the_tools_the_script_carries(script, tmp_path):
    other = tmp_path / "other"
    (other / "nbconvert_kfp" / "script").mkdir(parents=True)
    (other / "nbconvert_kfp" / "__init__.py").write_text(f'__version__ = "{__version__}.post9"\n', encoding="utf-8")
    (other / "nbconvert_kfp" / "script" / "__init__.py").write_text("", encoding="utf-8")
    (other / "nbconvert_kfp" / "script" / "cli.py").write_text("raise ImportError('the other version')\n",
                                                             encoding="utf-8")
    result = _probe(script, tmp_path, "other", str(other))
    assert result["found"] == str(other / "nbconvert_kfp" / "__init__.py")
    assert len(result["archives"]) == 1 and result["cli"].startswith(result["archives"][0] + "/")
