"""Property test: notebooks with hostile step names, tags, parameters and cell sources either convert into a
script that compiles and carries every parameter value exactly, or fail with one line naming a cell."""

from __future__ import annotations

import ast
import subprocess
import sys

import nbformat
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import build_notebook
from nbconvert_kfp.errors import KFPExportError
from nbconvert_kfp.exporters import KFPExporter
from nbconvert_kfp.runtime.step import Step

#: Characters that make trouble in generated Python and shell: quotes, backslashes, `$(...)`, braces,
#: spaces, non-ASCII letters. Control characters (newlines in YAML values, NUL, ...) are left out here:
#: their escaping in YAML and shell has its own tests.
HOSTILE = st.sampled_from(list("ab_-.:;'\"\\$(){}[]`#!* /=+%é日") + ["$(id)", "'''", '"""', "\\n", "{{x}}"])
TEXT = st.lists(HOSTILE, max_size=12).map("".join)
NAME = st.lists(HOSTILE, min_size=1, max_size=12).map("".join)
IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(TEXT, inner, max_size=3)), max_leaves=6)
OPTION = st.one_of(
    TEXT.map(lambda t: f"label:team:{t}"), TEXT.map(lambda t: f"annotation:note:{t}"),
    TEXT.map(lambda t: f"env:MODE:{t}"), TEXT.map(lambda t: f"image:{t}"), TEXT.map(lambda t: f"secret:{t}:k:ENV"),
    TEXT.map(lambda t: f"retry:{t}"), TEXT.map(lambda t: f"timeout:{t}"), TEXT.map(lambda t: f"{t}"),
)
#: Options whose value may be any text.
KEPT = st.one_of(TEXT.map(lambda t: f"env:MODE:{t}"), TEXT.map(lambda t: f"annotation:note:{t}"))
SOURCE = st.one_of(TEXT, TEXT.map(lambda t: f"v = {t!r}\nprint(v)"), TEXT.map(lambda t: f"# {t}\nw = 1"),
                   st.sampled_from(["x = 1", "print('$(id)')", "%%time\ny = 2", "!echo \"$(id)\"",
                                          "def f(:\n  pass", "import os\nz = os.sep", "x = (1,"]))


@st.composite
def notebooks(draw):
    """Cells with hostile tags and sources, and a parameters cell of hostile values."""
    names = draw(st.lists(IDENTIFIER, max_size=4, unique_by=str.lower))
    values = [draw(VALUE) for _ in names]
    cells = []
    if names:
        cells.append((["pipeline-parameters"], "\n".join(f"{n} = {v!r}" for n, v in zip(names, values))))
    for _ in range(draw(st.integers(1, 4))):
        tags = [f"step:{draw(NAME)}"] + draw(st.lists(st.one_of(KEPT, KEPT, OPTION, NAME.map(lambda n: f"prev:{n}")),
                                                      max_size=2))
        if draw(st.integers(0, 29)) == 17:
            tags.append(f"{draw(NAME)},x")  # now and then a comma, which notebook tags may not hold
        cells.append((tags, draw(SOURCE)))
    return cells, dict(zip(names, values))


def _normal(value):
    """A value as comparable data: nan equal to nan, types kept (True is not 1), dict key order ignored
    (KFP's JSON sorts keys)."""
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), _normal(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_normal(v) for v in value]
        return (type(value).__name__, sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items)
    return (type(value).__name__, repr(value))


def _same(left, right) -> bool:
    """The same value (see ``_normal``)."""
    return _normal(left) == _normal(right)


def _pipeline_defaults(script: str) -> dict[str, object]:
    """The pipeline function's parameter defaults, as the generated script writes them."""
    for node in ast.parse(script).body:
        if isinstance(node, ast.FunctionDef) and any("pipeline" in ast.unparse(d) for d in node.decorator_list):
            args = node.args.args[len(node.args.args) - len(node.args.defaults):]
            return {a.arg: ast.literal_eval(d) for a, d in zip(args, node.args.defaults)}
    raise AssertionError("no pipeline function in the script")


def _carried(parameter_type: str, default, value) -> bool:
    """Whether a pipeline default carries ``value`` exactly (a ``literal`` parameter as its Python literal)."""
    if parameter_type == "literal":
        return _same(Step.literal(default), value)
    return _same(default, value)


COMPILED: list[int] = []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(notebooks())
def test_hostile_notebooks_convert_or_fail_with_one_line(tmp_path_factory, drawn):
    cells, values = drawn
    # cell nodes made by hand: nbformat's new_code_cell refuses some of what a notebook file may hold
    nb = build_notebook([])
    nb.cells = [nbformat.from_dict({"cell_type": "code", "execution_count": None, "metadata": {"tags": tags},
                                    "outputs": [], "source": source, "id": f"c{i}"})
                for i, (tags, source) in enumerate(cells)]
    try:
        script, resources = KFPExporter(install_packages=False).from_notebook_node(nb, {"metadata": {"name": "nb"}})
    except KFPExportError as err:
        message = str(err)
        event(f"refused: {type(err).__name__}")
        assert "\n" not in message and message.strip(), repr(message)
        assert err.cell_index is None or message.startswith(f"cell {err.cell_index + 1}: "), message
        return
    event("converted")
    compile(script, "nb_pipeline.py", "exec")
    model = resources["kfp"]
    identifiers = model["script"]["parameter_names"]
    defaults = _pipeline_defaults(script)
    for parameter in model["parameters"]:
        name = parameter["name"]
        assert _carried(parameter["type"], defaults[identifiers[name]], values[name]), (name, values[name])
    if len(COMPILED) < 3:
        COMPILED.append(1)
        folder = tmp_path_factory.mktemp("hostile")
        path = folder / "nb_pipeline.py"
        path.write_text(script, encoding="utf-8")
        result = subprocess.run([sys.executable, str(path)], cwd=folder, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        # the pipeline spec, then (with Kubernetes options) the platform spec
        spec, *_ = yaml.safe_load_all((folder / "nb_pipeline.yaml").read_text(encoding="utf-8"))
        inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        for parameter in model["parameters"]:
            name = parameter["name"]
            default = inputs[identifiers[name]]["defaultValue"]
            if parameter["type"] == "float" and isinstance(default, int):
                default = float(default)
            if parameter["type"] == "int" and isinstance(default, float) and default.is_integer():
                default = int(default)  # the IR keeps every number as a double: 0 is written 0.0
            assert _carried(parameter["type"], default, values[name]), (name, default, values[name])
