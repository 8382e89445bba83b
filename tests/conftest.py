"""Shared fixtures for the nbconvert-kfp tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import build_notebook, nbconvert

@pytest.fixture(autouse=True)
def _outside_a_notebook_server(monkeypatch):
    """Every test runs as outside a Kubeflow notebook server, also when the suite runs in one; the tests
    of a notebook server (test_notebookpod.py) set its environment themselves."""
    monkeypatch.delenv("NB_PREFIX", raising=False)


#: The test tiers, one directory each, and the marker a directory gives its tests (``-m "not e2e"`` selects
#: by tier). ``unit`` and ``golden`` are the in-process tier (``make test-fast``): they start no process.
TIERS = {
    "unit": None,
    "golden": None,
    "cli": "slow",
    "frameworks": "slow",
    "e2e": "e2e",
    "browser": "browser",
    "floors": "floors",
}
TIER_MARKERS = {marker for marker in TIERS.values() if marker}
TESTS = Path(__file__).parent


def tier_of(path: Path) -> str:
    """The tier directory a test file sits in."""
    parts = Path(path).resolve().relative_to(TESTS.resolve()).parts
    if len(parts) < 2 or parts[0] not in TIERS:
        raise pytest.UsageError(f"{path}: a test module belongs in one of the tier directories {', '.join(TIERS)}")
    return parts[0]


def pytest_collection_modifyitems(config, items):
    """Give each test its directory's tier marker; a tier marker set by hand is refused (the directory says it)."""
    for item in items:
        tier = tier_of(item.path)
        by_hand = sorted({mark.name for mark in item.iter_markers() if mark.name in TIER_MARKERS})
        if by_hand:
            raise pytest.UsageError(f"{item.nodeid} is marked {', '.join(by_hand)}: move it to the tier directory "
                                    f"instead of marking it")
        if TIERS[tier]:
            item.add_marker(TIERS[tier])


def _in_process_tier(path: Path) -> bool:
    """Whether a path lies in a tier directory of the in-process tier (False outside the tier directories)."""
    try:
        parts = Path(path).resolve().relative_to(TESTS.resolve()).parts
    except ValueError:
        return False
    return len(parts) >= 2 and parts[0] in TIERS and TIERS[parts[0]] is None


def _refusal(where: str, remedy: str):
    """A stand-in for ``Popen._execute_child`` that fails, saying which test or fixture started a process."""
    def refuse(self, args, *rest, **kwargs):
        raise AssertionError(f"{where} is in the in-process tier but started a process ({args!r:.120}); "
                             f"move it to tests/cli or tests/e2e, or {remedy}")

    return refuse


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """A module- or class-scoped fixture set up for an in-process module starts no process either: the autouse
    guard below covers only what runs inside each test."""
    path = getattr(request.node, "path", None)
    if fixturedef.scope in ("function", "session") or path is None or not _in_process_tier(path):
        yield
        return
    original = subprocess.Popen._execute_child
    subprocess.Popen._execute_child = _refusal(f"fixture {fixturedef.argname!r} of {request.node.nodeid}",
                                               "set it up in-process")
    try:
        yield
    finally:
        subprocess.Popen._execute_child = original


@pytest.fixture(autouse=True)
def _in_process_tier_starts_no_process(request, monkeypatch):
    """A test of the in-process tier that starts a process fails, saying so: the fast tier stays fast by rule,
    not by luck. Tests that must start one live in tests/cli, tests/e2e (or browser, floors)."""
    if TIERS[tier_of(request.node.path)]:
        return
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refusal(request.node.nodeid, "test in-process"))


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
    """``run_nbconvert(path, *args)`` runs ``jupyter nbconvert --to kfp ARGS NOTEBOOK`` in the notebook's
    directory, in this process (see ``helpers.nbconvert``)."""

    def _run(path, *args):
        path = Path(path)
        return nbconvert(["--to", "kfp", *args, path.name], cwd=path.parent)

    return _run


@pytest.fixture
def run_script_compile():
    """``run_script_compile(script_path)`` runs the generated script as a user does (a process) to compile it;
    returns the loaded IR YAML. ``nbconvert_kfp.exporters.compile_script`` compiles in-process."""
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
