"""The package layout's rules: what ships into steps imports only the standard library, what ships into
the generated script only the standard library and kfp, and the script's names come from one list."""

from __future__ import annotations

import ast
import builtins
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

import nbconvert_kfp
from nbconvert_kfp import runtime, script
from nbconvert_kfp.codegen import archive
from nbconvert_kfp.codegen.reserved import SCRIPT_GLOBALS

from helpers import EXAMPLES, build_notebook

PACKAGE = Path(nbconvert_kfp.__file__).parent
STDLIB = set(sys.stdlib_module_names)
#: Libraries a marshal backend (or the step's IPython shell) imports the first time a value needs it.
LAZY_BACKENDS = {"numpy", "pandas", "scipy", "sklearn", "joblib", "xgboost", "lightgbm", "torch", "keras",
                 "tensorflow", "PIL", "dill", "pyarrow", "IPython", "traitlets", "matplotlib", "pygments"}


def _imports(tree: ast.AST, module_level_only: bool) -> list[tuple[str, int]]:
    """(top-level module, line) of every import; relative imports give ''."""
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name.partition(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(("" if node.level else (node.module or "").partition(".")[0], node.lineno))
    return found


def _package_files(package) -> list[Path]:
    """Every module of the package, its subpackages' included."""
    return sorted(Path(package.__file__).parent.rglob("*.py"))


#: What script modules may import inside a function: kfp and what it depends on (kfp_server_api, protobuf
#: for the pipeline spec, PyYAML, kubernetes to submit a Katib Experiment), and optional Optuna (a local TPE
#: search).
SCRIPT_LAZY = {"kfp", "kfp_server_api", "google", "yaml", "optuna", "kubernetes", "fsspec"}


@pytest.mark.parametrize("package, allowed_anywhere", [(runtime, LAZY_BACKENDS), (script, SCRIPT_LAZY)],
                         ids=["runtime", "script"])
def test_shipped_packages_import_the_standard_library_at_module_level(package, allowed_anywhere):
    for path in _package_files(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module, line in _imports(tree, module_level_only=True):
            assert module == "" or module in STDLIB or module == "__future__", f"{path}:{line} imports {module}"
        for module, line in _imports(tree, module_level_only=False):
            assert module in STDLIB | allowed_anywhere | {"", "__future__"}, f"{path}:{line} imports {module}"


@pytest.mark.parametrize("package", [runtime, script], ids=["runtime", "script"])
def test_sources_ship_every_module_of_the_package(package):
    shipped = package.sources()
    folder = Path(package.__file__).parent.name
    root = Path(package.__file__).parent
    expected = {f"nbconvert_kfp/{folder}/{p.relative_to(root).as_posix()}" for p in _package_files(package)}
    assert {path for path in shipped if path.startswith(f"nbconvert_kfp/{folder}/")} == expected
    assert "nbconvert_kfp/__init__.py" in shipped


def test_payloads_are_identical_for_the_same_files_and_unpack_to_them():
    assert archive.payload(runtime.sources()) == archive.payload(dict(reversed(runtime.sources().items())))
    assert archive.payload({"a.py": "x = 1\n"}) != archive.payload({"a.py": "x = 2\n"})
    assert archive.unpack(archive.payload(script.sources())) == script.sources()


def test_a_conversion_packs_anew_only_what_changed_since_the_last_one_in_this_process(monkeypatch):
    import lzma

    from nbconvert_kfp.exporters import KFPExporter

    packed = []
    compress = lzma.compress
    monkeypatch.setattr(lzma, "compress", lambda data, **kw: packed.append(data) or compress(data, **kw))
    notebook = EXAMPLES / "model_comparison.ipynb"
    first, _ = KFPExporter().from_filename(str(notebook))
    packed.clear()
    again, _ = KFPExporter().from_filename(str(notebook))
    assert again == first and packed == []  # nbconvert-kfp's own code was packed once, by the first conversion

    sources = runtime.sources()
    changed = dict(sources, **{"nbconvert_kfp/runtime/step.py": sources["nbconvert_kfp/runtime/step.py"]
                               + "\nCHANGED_SINCE = 1\n"})
    monkeypatch.setattr(runtime, "sources", lambda: changed)
    edited, _ = KFPExporter().from_filename(str(notebook))
    assert edited != first and len(packed) == 1 and b"CHANGED_SINCE = 1" in packed[0]


def test_minified_runtime_keeps_the_code_and_drops_docstrings():
    source = runtime.sources()["nbconvert_kfp/runtime/step.py"]
    small = archive.minified(source)
    assert len(small) < len(source) * 0.8 and '"""' not in small
    assert ast.dump(ast.parse(small)).count("FunctionDef") == ast.dump(ast.parse(source)).count("FunctionDef")


# --- names of the generated script ---------------------------------------------------------------------

RICH = [
    (["imports"], "import json"),
    (["functions"], "def helper(v):\n    return v + 1"),
    (["pipeline-parameters"], "RATE = 0.5\nNAMES = ['a']"),
    (["step:load", "limit:memory:1Gi", "label:team:ml", "secret:db:pw:DB_PW"], "data = [helper(1)]"),
    (["step:train", "prev:load", "image:python:3.12", "package:xgboost==2.1.0"], "score = RATE * len(data)"),
    (["step:report", "prev:train", "report:disabled"], "print(score)"),
    (["pipeline-metrics"], "score"),
]
VOLUMES = {"kubeflow_notebook": {"volumes": [
    {"type": "pvc", "name": "data", "mount_point": "/data", "expose_as_env_var": True},
    {"type": "new_pvc", "name": "scratch", "mount_point": "/scratch", "size": 1, "storage_class_name": "fast"}]}}


def _module_level_bindings(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
    return names


def _global_reads(tree: ast.Module) -> set[str]:
    """Names read at module level or as globals inside the functions (not their own locals)."""
    reads = set()
    for node in tree.body:
        scope_locals: set[str] = set()
        if isinstance(node, ast.FunctionDef):
            functions = [f for f in ast.walk(node) if isinstance(f, (ast.FunctionDef, ast.Lambda))]  # nested too
            arguments = [a for f in functions for a in f.args.args + f.args.kwonlyargs
                         + [a for a in (f.args.vararg, f.args.kwarg) if a]]
            scope_locals = {a.arg for a in arguments} | {f.name for f in functions if isinstance(f, ast.FunctionDef)}
            scope_locals |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            scope_locals |= {(a.asname or a.name).partition(".")[0] for n in ast.walk(node)
                             if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
        reads |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                  and n.id not in scope_locals}
    return reads


@pytest.mark.parametrize("runtime_mode", ["embedded", "artifact", "image", "package"])
def test_every_name_the_script_defines_or_reads_is_reserved_or_a_step(convert, runtime_mode):
    nb = build_notebook(RICH, metadata=VOLUMES)
    text, resources = convert(nb, config=Config({"KFPExporter": {"runtime": runtime_mode,
                                                                  "pip_index_urls": ["https://pypi.example/simple"]}}))
    tree = ast.parse(text)
    components = {step["component"]["function"] for step in resources["kfp"]["steps"]}
    components |= {c["function"] for c in resources["kfp"]["script"]["components"]}
    defined = _module_level_bindings(tree)
    assert defined - components <= SCRIPT_GLOBALS, defined - components - SCRIPT_GLOBALS
    unknown = _global_reads(tree) - defined - set(dir(builtins)) - {"__name__", "__file__"}
    assert not unknown, unknown


def test_each_lifetime_has_one_exception_root():
    """Script tools' errors are ScriptErrors, the server API's refusals APIErrors, conversion errors
    KFPExportErrors: a caller catches one class."""
    import inspect
    import pkgutil
    import importlib

    import nbconvert_kfp.script as script
    from nbconvert_kfp.script.exceptions import ScriptError
    from nbconvert_kfp import serverextension

    names = [info.name for info in pkgutil.walk_packages(script.__path__, "nbconvert_kfp.script.")]
    found = []
    for name in names:
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if value.__module__ == name and issubclass(value, Exception) and not name.endswith(".exceptions"):
                found.append(value)
                assert issubclass(value, ScriptError), f"{name}.{value.__name__} is not a ScriptError"
    assert len(found) >= 12
    for cls in (serverextension.RequestError, serverextension.HostRefused, serverextension.DeployTimeout,
                serverextension.DeployBusy):
        assert issubclass(cls, serverextension.APIError) and cls.status != 500
