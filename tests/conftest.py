"""Shared fixtures for the nbconvert-kfp tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import VENV_BIN, build_notebook

@pytest.fixture(autouse=True)
def _outside_a_notebook_server(monkeypatch):
    """Every test runs as outside a Kubeflow notebook server, also when the suite runs in one; the tests
    of a notebook server (test_notebookpod.py) set its environment themselves."""
    monkeypatch.delenv("NB_PREFIX", raising=False)


#: The markers of the tiers that may start processes; every other test is in-process (``make test-fast``).
PROCESS_TIERS = ("slow", "e2e", "browser", "floors")


@pytest.fixture(autouse=True)
def _in_process_tier_starts_no_process(request, monkeypatch):
    """A test of the in-process tier that starts a process fails, saying so: the fast tier stays fast by rule,
    not by luck. Tests that must start one are marked ``slow`` (or ``e2e``, ``browser``, ``floors``)."""
    if any(request.node.get_closest_marker(name) for name in PROCESS_TIERS):
        return
    node = request.node.nodeid

    def refuse(self, args, *rest, **kwargs):
        raise AssertionError(f"{node} is in the in-process tier but started a process ({args!r:.120}); "
                             f"mark it slow, or test in-process")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)


@pytest.fixture
def make_nb():
    """``make_nb([(tags, source), ...], metadata=None)`` -> a v4 notebook node."""
    return build_notebook


@pytest.fixture
def convert():
    """``convert(nb, name="nb", **exporter_kwargs)`` -> ``(script, resources)`` via KFPExporter."""
    from nbconvert_kfp.exporters import KFPExporter

    def _convert(nb, name="nb", **kwargs):
        return KFPExporter(**kwargs).from_notebook_node(nb, {"metadata": {"name": name}})

    return _convert


@pytest.fixture
def pipeline_model(make_nb, convert):
    """``pipeline_model([(tags, source), ...])`` -> ``resources["kfp"]`` with ``steps`` keyed by name."""

    def _model(cells, **kwargs):
        _, resources = convert(make_nb(cells), **kwargs)
        model = dict(resources["kfp"])
        model["step_order"] = [step["name"] for step in model["steps"]]
        model["steps"] = {step["name"]: step for step in model["steps"]}
        return model

    return _model


@pytest.fixture
def run_nbconvert():
    """``run_nbconvert(path, *args)`` runs ``jupyter nbconvert --to kfp`` in the notebook's directory."""

    def _run(path, *args):
        path = Path(path)
        return subprocess.run(
            [str(VENV_BIN / "jupyter"), "nbconvert", "--to", "kfp", *args, path.name],
            cwd=path.parent, capture_output=True, text=True, timeout=120,
        )

    return _run


@pytest.fixture
def compile_script():
    """``compile_script(script_path)`` runs the generated script; returns the loaded IR YAML."""
    import yaml

    def _compile(script_path):
        script_path = Path(script_path)
        result = subprocess.run([sys.executable, str(script_path)], cwd=script_path.parent,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(script_path.with_suffix(".yaml").read_text(encoding="utf-8"))

    return _compile


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/ from the scripts the notebooks convert to (then review the diff)")
