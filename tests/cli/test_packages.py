"""Packages: each step pip-installs the distributions its code imports, pinned to the installed
versions, plus extra packages and package: tags; checked in the compiled KFP IR."""

from __future__ import annotations

import logging
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import pytest
from traitlets.config import Config

from compiledir import IR, compile_all
from helpers import build_notebook
from nbconvert_kfp.exporters import KFPExporter

TIMEOUT = 300
EXTRA = "tqdm==4.66.0"
INDEX_URLS = ["https://pypi.example.org/simple", "https://mirror.example.org/simple"]
STDLIB = ["random", "json", "collections", "os", "typing", "dataclasses", "enum", "asyncio", "statistics",
          "importlib", "pathlib", "re", "math"]
#: What the steps' step runtime may add on top of the notebook's imports.
RUNTIME_DISTRIBUTIONS = {"dill", "ipython"}

CELLS = [
    (["imports"], "import random\nimport json\nimport numpy as np"),
    (["functions"], "def total(values):\n    return float(np.sum(values))"),
    (["step:helpers"], "import yaml\n\ndef parse(text):\n    return yaml.safe_load(text)"),
    # re-runs helpers' import and definition of parse: needs PyYAML without importing it itself
    (["step:use"], "cfg = parse('a: 1')"),
    (["step:load"], "from sklearn.preprocessing import StandardScaler\nscaler = StandardScaler()"),
    # loads scaler from load: needs scikit-learn to unpickle it; kfp and the standard library are never listed
    (["step:train"], "import kfp\nfrom kfp import dsl\nimport " + ", ".join(STDLIB)
     + "\nimport os.path\nfrom collections import OrderedDict\nfitted = scaler"),
    (["step:frames", "package:xgboost==2.1.0"], "import pandas as pd\nframe = pd.DataFrame({'a': [1]})"),
    (["step:mystery"], "import nbkfp_no_such_module"),
]
STEPS = ["helpers", "use", "load", "train", "frames", "mystery"]


def pin(distribution):
    return f"{distribution}=={metadata.version(distribution)}"


#: step -> the distributions (lower case) its imports need
EXPECTED = {
    "helpers": {"numpy", "pyyaml"},
    "use": {"numpy", "pyyaml"},
    "load": {"numpy", "scikit-learn"},
    "train": {"numpy", "scikit-learn"},
    "frames": {"numpy", "pandas"},
    "mystery": {"numpy"},
}


# --- helpers -------------------------------------------------------------------------------------

def pip_installs(container):
    """The step's own install (index options, requirements) and whether kfp is installed apart."""
    lines = container["command"][2].splitlines()
    own, kfp_install = None, None
    [pip] = [shlex.split(line.split("{", 1)[1].rsplit('"$@"', 1)[0])
             for line in lines if line.startswith("pip_install()")] or [[]]
    options, tokens = {}, iter(pip[5:])  # after python3 -m pip install -q: the index options
    for token in tokens:
        options.setdefault(token, []).append(next(tokens))
    for line in lines:
        if not line.startswith("install "):
            continue
        requirements = shlex.split(line)[1:]
        if any(r.startswith("kfp==") for r in requirements) and "--no-deps" in requirements:
            kfp_install = (options, requirements)
        else:
            assert own is None, lines
            own = (options, requirements)
    return own or ({}, []), kfp_install


def name_of(requirement):
    return re.split(r"[<>=!~\[;]", requirement, maxsplit=1)[0].strip().lower()


def containers(docs):
    return IR(docs).containers()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Two compiles of the same notebook: packages on (with extras and index URLs) and off."""
    root = tmp_path_factory.mktemp("knobs_packages")
    nb = build_notebook(CELLS)
    variants = {
        "on": {"extra_packages": [EXTRA], "pip_index_urls": INDEX_URLS},
        "off": {"install_packages": False, "extra_packages": [EXTRA]},
    }
    scripts, logs = {}, {}
    for key, traits in variants.items():
        handler = _Collect()
        logging.getLogger().addHandler(handler)
        try:
            script, _ = KFPExporter(config=Config({"KFPExporter": traits})).from_notebook_node(
                nb, {"metadata": {"name": f"packages_{key}"}})
        finally:
            logging.getLogger().removeHandler(handler)
        logs[key] = handler.messages
        scripts[key] = root / f"packages_{key}_pipeline.py"
        scripts[key].write_text(script, encoding="utf-8")
    with ThreadPoolExecutor(2) as pool:
        results = {key: pool.submit(compile_all, path) for key, path in scripts.items()}
        results = {key: future.result() for key, future in results.items()}
    out = {}
    for key, (result, docs) in results.items():
        assert result.returncode == 0, result.stderr[-4000:]
        out[key] = {"containers": containers(docs), "warnings": logs[key]}
    return out


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


# --- packages on ---------------------------------------------------------------------------------

def test_every_step_is_compiled(compiled):
    assert set(compiled["on"]["containers"]) == set(STEPS)


@pytest.mark.parametrize("step", STEPS)
def test_step_installs_the_distributions_of_its_imports(compiled, step):
    (_, requirements), _ = pip_installs(compiled["on"]["containers"][step])
    names = {name_of(r) for r in requirements}
    expected = EXPECTED[step] | {name_of(EXTRA)} | ({"xgboost"} if step == "frames" else set())
    expected |= {"kfp"} if step == "train" else set()  # it imports kfp: installed with its dependencies
    assert expected <= names, (step, requirements)
    assert names - expected <= RUNTIME_DISTRIBUTIONS, (step, requirements)


@pytest.mark.parametrize("step", STEPS)
def test_requirements_are_pinned_to_the_installed_versions(compiled, step):
    (_, requirements), _ = pip_installs(compiled["on"]["containers"][step])
    by_name = {name_of(r): r for r in requirements}
    distributions = {"numpy": "numpy", "pyyaml": "PyYAML", "scikit-learn": "scikit-learn", "pandas": "pandas"}
    for name in EXPECTED[step]:
        version = metadata.version(distributions[name])
        assert by_name[name].lower() == f"{name}=={version}".lower(), (step, by_name[name])
    for name in RUNTIME_DISTRIBUTIONS & set(by_name):
        assert by_name[name] == pin(name) or by_name[name].lower() == pin(name).lower(), by_name[name]


def test_sklearn_import_pins_scikit_learn(compiled):
    (_, requirements), _ = pip_installs(compiled["on"]["containers"]["load"])
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in requirements


def test_standard_library_is_never_listed_and_kfp_comes_with_its_dependencies_where_imported(compiled):
    for step, container in compiled["on"]["containers"].items():
        (_, requirements), kfp_install = pip_installs(container)
        names = {name_of(r) for r in requirements}
        assert not names & {m.lower() for m in STDLIB}, (step, requirements)
        assert not any(n.startswith("random") for n in names), (step, requirements)
        if step == "train":  # imports kfp: pinned like any package, so pip installs its dependencies too
            assert pin("kfp") in requirements and kfp_install is None, (step, requirements)
        else:  # kfp comes from KFP's own install line (without dependencies: the executor needs none)
            assert "kfp" not in names and kfp_install is not None, (step, requirements)


def test_package_tag_is_installed_as_written(compiled):
    (_, requirements), _ = pip_installs(compiled["on"]["containers"]["frames"])
    assert "xgboost==2.1.0" in requirements
    for step in ("helpers", "use", "load", "train", "mystery"):
        (_, others), _ = pip_installs(compiled["on"]["containers"][step])
        assert "xgboost==2.1.0" not in others, step


def test_extra_packages_in_every_step(compiled):
    for key in ("on", "off"):
        for step, container in compiled[key]["containers"].items():
            (_, requirements), _ = pip_installs(container)
            assert EXTRA in requirements, (key, step, requirements)


def test_pip_index_urls_in_every_component(compiled):
    for step, container in compiled["on"]["containers"].items():
        (options, _), kfp_install = pip_installs(container)
        assert options.get("--index-url") == INDEX_URLS[:1], (step, options)
        assert options.get("--extra-index-url") == INDEX_URLS[1:], (step, options)
        assert "--trusted-host" not in options, (step, options)  # TLS is verified unless asked otherwise
        if kfp_install is not None:  # kfp's own install line, where the step does not import kfp
            assert kfp_install[0].get("--index-url") == INDEX_URLS[:1], (step, kfp_install)
    for step, container in compiled["off"]["containers"].items():
        (options, _), _ = pip_installs(container)
        assert "--index-url" not in options, step


def test_unknown_module_is_a_warning_naming_it(compiled):
    warnings = compiled["on"]["warnings"]
    named = [w for w in warnings if "nbkfp_no_such_module" in w]
    assert len(named) == 1, warnings
    for module in STDLIB + ["numpy", "sklearn", "yaml", "pandas", "kfp"]:
        assert not any(f"'{module}'" in w for w in warnings), (module, warnings)


# --- packages off --------------------------------------------------------------------------------

@pytest.mark.parametrize("step", STEPS)
def test_install_packages_off_leaves_only_extras_and_tags(compiled, step):
    (_, requirements), kfp_install = pip_installs(compiled["off"]["containers"][step])
    expected = [EXTRA] + (["xgboost==2.1.0"] if step == "frames" else [])
    assert sorted(requirements) == sorted(expected), (step, requirements)
    assert kfp_install is not None


def test_install_packages_off_without_extras_installs_nothing_of_the_notebooks(pipeline_model):
    model = pipeline_model(CELLS, config=Config({"KFPExporter": {"install_packages": False}}))
    for step in STEPS:
        expected = ["xgboost==2.1.0"] if step == "frames" else []
        packages = model["steps"][step]["component"]["packages"]
        assert packages == expected, step
