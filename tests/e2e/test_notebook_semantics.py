"""What real notebooks rely on: papermill parameters cells, values that arrive exactly, data flow the
analysis must see (aliases, in-place functions, builtin names, star imports, files, local modules,
top-level await), and Kale 1.x leftovers. Each pipeline's local run is compared with a top-to-bottom
nbclient run of the same notebook."""

from __future__ import annotations

import json
import re
import textwrap

import nbformat
import pytest

from helpers import PYTHON, build_notebook, nbclient_values, nbconvert, run

CHECK_LINE = re.compile(r"^\s*CHECK (.*)$", re.MULTILINE)


def _write(directory, name, cells, metadata=None, files=None):
    directory.mkdir(parents=True, exist_ok=True)
    nb = build_notebook(cells, metadata=metadata, markdown=True, dedent=True)
    path = directory / f"{name}.ipynb"
    nbformat.write(nb, path)
    for file, text in (files or {}).items():
        (directory / file).write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _convert_and_run(path, *local_args):
    converted = nbconvert(["--to", "kfp", path.name], cwd=path.parent, merge=True)
    assert converted.returncode == 0, converted.stdout
    script = path.with_name(f"{path.stem}_pipeline.py")
    compiled = run([PYTHON, script, "--output", path.with_suffix(".yaml")], cwd=path.parent)
    assert compiled.returncode == 0, compiled.stdout
    local = run([PYTHON, script, "--local", "--verbose", *local_args], cwd=path.parent)
    assert local.returncode == 0, local.stdout[-6000:]
    return converted, local


# --- papermill parameters cells ----------------------------------------------------------------------------

PAPERMILL = [
    (None, "A papermill-style notebook: its parameters cell holds code besides the parameters."),
    (["parameters"], """
        import os
        alpha: float = 0.5
        name = None
        sizes = [64, 32]
        pair = (1, "a")
        big = 9007199254740993
        print("defaults loaded", os.sep)
    """),
    (["step:use"], """
        check = f"{alpha!r}|{name!r}|{sizes!r}|{pair!r}|{big!r}|{type(sizes[0]).__name__}"
        print("CHECK", check)
    """),
]


def test_a_papermill_parameters_cell_runs_whole_and_its_values_arrive_exactly(tmp_path):
    path = _write(tmp_path / "papermill", "papermill", PAPERMILL)
    _, local = _convert_and_run(path)
    expected = nbclient_values(path, ["check"])["check"]
    assert CHECK_LINE.findall(local.stdout) == [expected]
    assert expected == "0.5|None|[64, 32]|(1, 'a')|9007199254740993|int"
    _, overridden = _convert_and_run(path, "-p", "name", "'x'", "-p", "alpha", "2", "-p", "pair", "(3, 'b')",
                                     "-p", "big", "None", "-p", "sizes", "[1, 2, 3]")
    assert CHECK_LINE.findall(overridden.stdout) == ["2.0|'x'|[1, 2, 3]|(3, 'b')|None|int"]


def test_kale_pipeline_parameters_cells_keep_the_strict_rule(tmp_path):
    path = _write(tmp_path / "strict", "strict", [(["pipeline-parameters"], "import os\nx = 1"),
                                                  (["step:a"], "print(x)")])
    result = nbconvert(["--to", "kfp", path.name], cwd=path.parent, merge=True)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert "pipeline-parameters cells may only assign literals; found 'import os'" in result.stdout


#: Kale's current iris example: its pipeline-parameters cell prints around its literal assignments.
KALE_PARAMETERS = [
    (["pipeline-parameters"], """
        print("Setting the pipeline parameters")
        N_ESTIMATORS = 100
        MAX_DEPTH = 3  # a comment
        print("Parameters set")
    """),
    (["step:use"], """print("CHECK", N_ESTIMATORS, MAX_DEPTH)"""),
]


def test_kale_pipeline_parameters_cell_with_prints_runs_them_and_keeps_its_parameters(tmp_path):
    path = _write(tmp_path / "kale", "kale", KALE_PARAMETERS)
    converted, local = _convert_and_run(path, "-p", "N_ESTIMATORS", "7")
    notes = [line for line in converted.stdout.splitlines() if "run at the start of every step" in line]
    assert len(notes) == 1 and "cell 1" in notes[0] and "print('Setting the pipeline parameters')" in notes[0], notes
    assert "Setting the pipeline parameters" in local.stdout and "Parameters set" in local.stdout
    assert CHECK_LINE.findall(local.stdout) == ["7 3"]  # the run's value, set after the cell ran
    script = path.with_name("kale_pipeline.py").read_text(encoding="utf-8")
    assert "N_ESTIMATORS: int = 100" in script and "MAX_DEPTH: int = 3" in script


# --- data flow --------------------------------------------------------------------------------------------

DATAFLOW = [
    (["imports"], "import random\nimport numpy as np"),
    (["step:load"], """
        from statistics import *
        train = {"name": ["a", "b"]}
        test = {"name": ["c"]}
        items = [3, 1, 2]
        arr = np.arange(6)
        lst = [5, 4, 3]
        id = 41
        values = [1, 5, 3]
    """),
    (None, "Mutation through an alias, the standard Kaggle pattern:"),
    (["step:titles"], """
        for d in [train, test]:
            d["title"] = [n.upper() for n in d["name"]]
        b = items
        b.append(9)
    """),
    (["step:shuffle"], """
        rng = np.random.default_rng(0)
        rng.shuffle(arr)
        random.seed(1)
        random.shuffle(lst)
    """),
    (["step:builtin"], "answer = id + 1"),
    (["step:star"], "middle = median(values)"),
    (["step:write_file"], """
        with open("handoff.txt", "w") as fh:
            fh.write("42")
    """),
    (["step:read_file"], """
        with open("handoff.txt") as fh:
            handed = int(fh.read())
    """),
    (["step:local"], "import helpers\nhelped = helpers.double(21)"),
    (["step:awaits"], """
        import asyncio

        async def later(v):
            await asyncio.sleep(0)
            return v

        waited = await later(7)
    """),
    (["step:final"], """
        check = "|".join(map(str, [train["title"], test["title"], items, arr.tolist(), lst, answer, middle,
                                   handed, helped, waited]))
        print("CHECK", check)
        total = float(len(check))
    """),
    (["pipeline-metrics"], "total"),
]
HELPERS = {"helpers.py": """
    import math


    def double(v):
        return int(math.floor(v * 2))
"""}


def test_data_flow_real_notebooks_rely_on_matches_the_notebook(tmp_path):
    path = _write(tmp_path / "dataflow", "dataflow", DATAFLOW, files=HELPERS)
    converted, local = _convert_and_run(path)
    expected = nbclient_values(path, ["check", "total"])
    assert CHECK_LINE.findall(local.stdout) == [expected["check"]]
    assert f"metric total = {expected['total']}" in local.stdout
    # the warnings a user must see, and none that is wrong
    assert "reads the file 'handoff.txt' that step 'write_file' writes" in converted.stdout
    assert "which no cell of the pipeline defines" not in converted.stdout
    assert "no installed distribution provides it" not in converted.stdout  # helpers travels with the pipeline


def test_a_local_module_travels_in_the_shared_code(tmp_path):
    from nbconvert_kfp.codegen import archive
    from nbconvert_kfp.exporters import KFPExporter

    path = _write(tmp_path / "local", "local", [(["step:a"], "import helpers\nx = helpers.double(2)")],
                  files=HELPERS)
    script, resources = KFPExporter().from_filename(str(path))
    bundle = resources["kfp"]["script"]["components"][0]
    # the payload is the literal the b64decode(...) statement holds (not the other strings of the body, "w")
    [statement] = [s for s in bundle["body"] if "b64decode(" in s]
    payload = "".join(re.findall(r'"([A-Za-z0-9+/=]+)"', statement))
    assert "def double(v)" in archive.unpack(payload)["helpers.py"]


@pytest.mark.parametrize("source, word", [("x = 1\nreturn x", "return"), ("yield 3", "yield")])
def test_top_level_return_and_yield_are_conversion_errors(tmp_path, source, word):
    path = _write(tmp_path / word, word, [(["step:a"], "a = 1"), (["step:b"], source)])
    result = nbconvert(["--to", "kfp", path.name], cwd=path.parent, merge=True)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    [error] = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert "cell 2:" in error and f"'{word}' outside a function" in error


# --- Kale 1.x leftovers -------------------------------------------------------------------------------------

KALE1_METADATA = {"kubeflow_notebook": {
    "docker_image": "", "experiment": {"id": "new", "name": "kale1"}, "experiment_name": "kale1",
    "pipeline_name": "kale-one", "katib_run": False, "autosnapshot": True,
    "katib_metadata": {"algorithm": {"algorithmName": "grid"}, "maxFailedTrialCount": 3, "maxTrialCount": 12,
                       "objective": {"objectiveMetricName": "", "type": "minimize"}, "parallelTrialCount": 3,
                       "parameters": []},
    "snapshot_volumes": True, "steps_defaults": [],
    "volumes": [{"annotations": [], "mount_point": "/home/jovyan", "name": "workspace-kale1-abc", "size": 5,
                 "size_type": "Gi", "snapshot": False, "snapshot_name": "", "type": "clone"}],
}}
KALE1 = [
    (["imports"], "import math"),
    (["block:load"], "values = [1, 2, 3]"),
    (["block:"], "values.append(4)"),
    (["functions", "prev:load"], "def norm(v):\n    return math.sqrt(sum(x * x for x in v))"),
    (["block:norm", "prev:load"], "size = norm(values)\nprint('CHECK', size)"),
]


def test_a_kale_1_notebook_with_a_clone_volume_and_an_empty_block_tag_converts_and_runs(tmp_path):
    path = _write(tmp_path / "kale1", "kale1", KALE1, metadata=KALE1_METADATA)
    converted, local = _convert_and_run(path)
    for expected in ("is a Rok clone", "tag 'block:' names no step", "'prev:load' ignored"):
        assert expected in converted.stdout, expected
    assert CHECK_LINE.findall(local.stdout) == [str(nbclient_values(path, ["size"])["size"])]
    assert json.dumps("kale-one") in path.with_suffix(".yaml").read_text(encoding="utf-8") or \
        "kale-one" in path.with_suffix(".yaml").read_text(encoding="utf-8")
