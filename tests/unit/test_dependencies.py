"""Dependency analysis: what each step loads, saves, re-imports and re-defines, and the DAG."""

from __future__ import annotations

import logging
import re

import nbformat
import pytest

from nbconvert_kfp.errors import PipelineGraphError
from helpers import NOTEBOOKS


def test_step_loads_what_it_reads_from_the_last_writer(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1\ny = 2\nunused = 3"),
        (["step:b", "prev:a"], "x = x + 10"),
        (["step:c", "prev:b"], "print(x, y)"),
    ])
    a, b, c = (model["steps"][n] for n in "abc")
    assert sorted(c["inputs"]) == ["x", "y"]
    assert c["input_sources"] == {"x": "b", "y": "a"}
    assert b["inputs"] == ["x"] and b["input_sources"] == {"x": "a"}
    # producers save only what a descendant loads from them
    assert a["outputs"] == ["x", "y"]
    assert b["outputs"] == ["x"]
    assert c["outputs"] == []


def test_step_that_binds_a_name_before_reading_it_does_not_load_it(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b", "prev:a"], "x = 5\nprint(x)"),
    ])
    assert model["steps"]["b"]["inputs"] == []
    assert model["steps"]["a"]["outputs"] == []
    assert model["steps"]["b"]["parents"] == ["a"]


def test_prelude_names_are_never_inputs(pipeline_model):
    model = pipeline_model([
        (["imports"], "import math\nfrom os import path as osp"),
        (["functions"], "def helper(v):\n    return math.sqrt(v)\nclass Box:\n    pass"),
        (["step:a"], "x = helper(4)\nb = Box()"),
        (["step:b", "prev:a"], "y = math.floor(x) + len(osp.sep)\nprint(helper(y), Box, b)"),
    ])
    b = model["steps"]["b"]
    assert sorted(b["inputs"]) == ["b", "x"]
    assert b["imports"] == []
    assert b["definitions"] == []
    assert model["steps"]["a"]["outputs"] == ["b", "x"]


def test_step_functions_and_classes_are_redefined_not_loaded(pipeline_model):
    model = pipeline_model([
        (["step:a"], "factor = 3\nimport json\n\ndef scale(v):\n    return v * factor\n\n"
                     "class Box:\n    size = 2\n"),
        (["step:b", "prev:a"], "print(scale(2), Box.size, json.dumps(1))"),
    ])
    a, b = model["steps"]["a"], model["steps"]["b"]
    assert b["inputs"] == ["factor"]
    assert b["input_sources"] == {"factor": "a"}
    assert a["outputs"] == ["factor"]
    assert "scale" not in b["inputs"] and "Box" not in b["inputs"]
    assert any(d.lstrip().startswith("def scale(v):") and "v * factor" in d for d in b["definitions"])
    assert any(d.lstrip().startswith("class Box:") for d in b["definitions"])
    assert len(b["definitions"]) == 2
    assert b["imports"] == ["import json"]


def test_definition_free_names_are_followed_transitively(pipeline_model):
    model = pipeline_model([
        (["step:a"], "base = 10\ndef inner(v):\n    return v + base\ndef outer(v):\n    return inner(v) * 2"),
        (["step:b", "prev:a"], "print(outer(1))"),
    ])
    b = model["steps"]["b"]
    assert b["inputs"] == ["base"]
    names = sorted(re.match(r"\s*def (\w+)", d).group(1) for d in b["definitions"])
    assert names == ["inner", "outer"]


def test_del_removes_a_name_from_what_a_step_provides(pipeline_model):
    from traitlets.config import Config

    cells = [(["step:a"], "x = 1\ny = 2\ndel x"), (["step:b", "prev:a"], "print(x, y)")]
    with pytest.raises(PipelineGraphError, match="step 'b' reads 'x', which no cell of the pipeline defines"):
        pipeline_model(cells)
    model = pipeline_model(cells, config=Config({"DependencyAnalyzer": {"undefined_names": "warn"}}))
    assert model["steps"]["b"]["inputs"] == ["y"]
    assert model["steps"]["a"]["outputs"] == ["y"]


def test_del_in_a_middle_step_does_not_make_it_the_writer(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b", "prev:a"], "x = 5\ntmp = x\ndel x"),
        (["step:c", "prev:b"], "print(x, tmp)"),
    ])
    assert "x" not in model["steps"]["b"]["outputs"]
    assert model["steps"]["c"]["input_sources"].get("x") != "b"
    assert model["steps"]["c"]["input_sources"]["tmp"] == "b"


def test_comprehension_variables_do_not_leak(pipeline_model):
    model = pipeline_model([
        (["step:a"], "i = 10"),
        (["step:b", "prev:a"], "vals = [i * 2 for i in range(3)]\npairs = {k: v for k, v in enumerate(vals)}"),
        (["step:c", "prev:b"], "print(i, vals, pairs)"),
    ])
    b, c = model["steps"]["b"], model["steps"]["c"]
    assert b["inputs"] == []
    assert "i" not in b["outputs"] and "k" not in b["outputs"]
    assert c["input_sources"] == {"i": "a", "vals": "b", "pairs": "b"}


def test_with_as_binds_its_name(pipeline_model):
    model = pipeline_model([
        (["step:a"], "p = 'data.txt'"),
        (["step:b", "prev:a"], "with open(p) as fh:\n    text = fh.read()\nclosed = fh.closed"),
        (["step:c", "prev:b"], "print(text, closed, fh)"),
    ])
    b, c = model["steps"]["b"], model["steps"]["c"]
    assert b["inputs"] == ["p"]
    assert c["input_sources"] == {"text": "b", "closed": "b", "fh": "b"}


def test_augmented_assignment_reads_and_writes(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b", "prev:a"], "x += 1"),
        (["step:c", "prev:b"], "print(x)"),
    ])
    a, b, c = (model["steps"][n] for n in "abc")
    assert b["inputs"] == ["x"] and b["input_sources"] == {"x": "a"}
    assert b["outputs"] == ["x"]
    assert c["input_sources"] == {"x": "b"}
    assert a["outputs"] == ["x"]


@pytest.mark.parametrize("mutation, name", [
    ('df["c"] = 1', "df"),
    ("df.loc[0, 'c'] = 1", "df"),
    ("lst.append(3)", "lst"),
    ("model.fit(X, y)", "model"),
    ("df.dropna(inplace=True)", "df"),
])
def test_in_place_mutation_makes_the_mutating_step_the_writer(pipeline_model, mutation, name):
    model = pipeline_model([
        (["step:a"], "df = {}\nlst = [1, 2]\nmodel = object()\nX = [[0]]\ny = [0]"),
        (["step:b", "prev:a"], mutation),
        (["step:c", "prev:b"], f"print({name})"),
    ])
    b, c = model["steps"]["b"], model["steps"]["c"]
    assert name in b["inputs"]
    assert b["input_sources"][name] == "a"
    assert c["input_sources"] == {name: "b"}
    assert name in b["outputs"]


def test_reading_without_mutating_does_not_make_a_writer(pipeline_model):
    model = pipeline_model([
        (["step:a"], "lst = [1, 2]"),
        (["step:b", "prev:a"], "n = len(lst)\nfirst = lst[0]"),
        (["step:c", "prev:b"], "print(lst, n)"),
    ])
    assert model["steps"]["c"]["input_sources"] == {"lst": "a", "n": "b"}
    assert model["steps"]["b"]["outputs"] == ["n"]


def test_magic_cells_are_analysed(pipeline_model):
    model = pipeline_model([
        (["imports"], "import os"),
        (["step:a"], "%time x = 1\n!echo hi\nfiles = !ls\nlisted = len(files)"),
        (["step:b", "prev:a"], "%%capture out\nprint(x, files)\ntotal = x + listed"),
        (["step:c", "prev:b"], "print(out, total)"),
    ])
    a, b, c = (model["steps"][n] for n in "abc")
    assert a["inputs"] == []
    assert sorted(b["inputs"]) == ["files", "listed", "x"]
    assert b["input_sources"] == {"x": "a", "files": "a", "listed": "a"}
    assert c["input_sources"] == {"out": "b", "total": "b"}
    assert a["outputs"] == ["files", "listed", "x"]
    assert b["outputs"] == ["out", "total"]


def test_the_code_a_magic_runs_is_read_as_ipython_code_also_under_stacked_magics(pipeline_model):
    model = pipeline_model([
        (["step:a"], "%%capture captured\n%%sh --no-raise-error\necho built"),
        (["step:b", "prev:a"], "%%time\n!echo hi\n%time y = 2\nlisted = !ls\nx = len(listed) + y"),
        (["step:c", "prev:b"], "print(captured, x, y, listed)"),
    ])
    assert model["steps"]["a"]["outputs"] == ["captured"]
    assert model["steps"]["c"]["input_sources"] == {"captured": "a", "x": "b", "y": "b", "listed": "b"}


def test_magics_fixture_notebook(convert):
    nb = nbformat.read(NOTEBOOKS / "magics.ipynb", as_version=4)
    script, resources = convert(nb, name="magics")
    compile(script, "magics_pipeline.py", "exec")
    steps = {s["name"]: s for s in resources["kfp"]["steps"]}
    assert steps["shell"]["inputs"] == []
    assert steps["capture"]["input_sources"] == {"y": "timed"}
    assert steps["plain"]["input_sources"] == {"x": "timed", "y": "timed", "z": "capture",
                                               "first_line": "shell"}


def test_parameter_reassigned_by_a_step_is_loaded_from_that_step(pipeline_model):
    model = pipeline_model([
        (["pipeline-parameters"], "lr = 0.1\nepochs = 3"),
        (["step:a"], "lr = lr * 2"),
        (["step:b", "prev:a"], "print(lr, epochs)"),
    ])
    a, b = model["steps"]["a"], model["steps"]["b"]
    assert a["parameters"] == ["lr"]
    assert a["outputs"] == ["lr"]
    assert b["inputs"] == ["lr"] and b["input_sources"] == {"lr": "a"}
    assert b["parameters"] == ["epochs"]


def test_parameter_read_only_is_passed_as_a_parameter(pipeline_model):
    model = pipeline_model([
        (["parameters"], "seed = 1"),
        (["step:a"], "x = seed + 1"),
        (["step:b", "prev:a"], "y = seed + x"),
    ])
    a, b = model["steps"]["a"], model["steps"]["b"]
    assert a["parameters"] == ["seed"] and b["parameters"] == ["seed"]
    assert b["inputs"] == ["x"]
    assert a["outputs"] == ["x"]


def test_independent_branches_stay_independent(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b", "prev:a"], "x = x + 1\nleft = x"),
        (["step:c", "prev:a"], "right = x * 3"),
        (["step:d", "prev:b;c"], "print(left, right)"),
    ])
    b, c, d = (model["steps"][n] for n in "bcd")
    assert b["parents"] == ["a"]
    assert c["parents"] == ["a"]
    assert c["input_sources"] == {"x": "a"}
    assert d["input_sources"] == {"left": "b", "right": "c"}
    b_task = b["component"]["task"]
    assert not any(b_task in argument for argument in c["component"]["arguments"])
    assert c["component"]["after"] == []


def test_inferred_siblings_do_not_depend_on_each_other(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b"], "y = x + 1"),
        (["step:c"], "z = x + 2"),
    ])
    assert model["steps"]["b"]["parents"] == ["a"]
    assert model["steps"]["c"]["parents"] == ["a"]


def test_prev_edge_without_data_is_kept(pipeline_model, convert, make_nb):
    cells = [(["step:a"], "x = 1"), (["step:b", "prev:a"], "y = 2")]
    model = pipeline_model(cells)
    a, b = model["steps"]["a"], model["steps"]["b"]
    assert b["parents"] == ["a"]
    assert b["inputs"] == [] and a["outputs"] == []
    assert b["component"]["after"] == [a["component"]["task"]]
    script, _ = convert(make_nb(cells))
    assert f"{b['component']['task']}.after({a['component']['task']})" in script


def test_data_edge_does_not_need_after(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["step:b", "prev:a"], "y = x")])
    assert model["steps"]["b"]["component"]["after"] == []


def test_step_without_prev_gets_the_step_it_reads_from_as_parent(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b"], "z = 2"),
        (["step:c"], "print(x)"),
    ])
    a, b, c = (model["steps"][n] for n in "abc")
    assert c["parents"] == ["a"]
    assert c["input_sources"] == {"x": "a"}
    assert b["parents"] == []
    assert a["outputs"] == ["x"]


def test_inferred_parent_is_the_last_earlier_writer(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b"], "x = x + 1"),
        (["step:c"], "print(x)"),
    ])
    assert model["steps"]["b"]["parents"] == ["a"]
    assert model["steps"]["c"]["parents"] == ["b"]
    assert model["steps"]["c"]["input_sources"] == {"x": "b"}


def test_reading_from_a_non_ancestor_with_prev_tags_is_an_error(convert, make_nb):
    nb = make_nb([
        (["step:a"], "x = 1"),
        (["step:b"], "y = 2"),
        (["step:c", "prev:b"], "print(y)"),
        ([], "print(x)"),
    ])
    with pytest.raises(PipelineGraphError) as info:
        convert(nb)
    err = info.value
    assert err.cell_index == 3
    assert err.subject == "x"
    message = str(err)
    assert message.startswith("cell 4: "), message  # JupyterLab's numbering; cell_index stays 0-based
    assert re.search(r"prev:[\w;:-]*\ba\b", message), message


def test_a_name_defined_nowhere_is_an_error_naming_the_cell_and_the_closest_names(pipeline_model):
    cells = [(["step:train"], "model = 3\nx = 1"), (["step:score"], "print(x)\nscore = modle * 2")]
    with pytest.raises(PipelineGraphError) as caught:
        pipeline_model(cells)
    assert caught.value.cell_index == 1 and caught.value.subject == "modle"
    assert "step 'score' reads 'modle', which no cell of the pipeline defines; did you mean 'model'?" in str(caught.value)


def test_a_name_defined_nowhere_is_a_warning_when_asked_or_where_code_defines_names_at_run_time(
        pipeline_model, caplog):
    from traitlets.config import Config

    warn = Config({"DependencyAnalyzer": {"undefined_names": "warn"}})
    for cells, kwargs in [
        ([(["step:a"], "x = 1"), (["step:b", "prev:a"], "print(x, mystery_name)")], {"config": warn}),
        ([(["step:a"], "x = 1"), (["step:b", "prev:a"], "exec('mystery_name = 2')\nprint(x, mystery_name)")], {}),
        ([(["step:a"], "x = 1"), (["step:b", "prev:a"], "%run other.py\nprint(x, mystery_name)")], {}),
    ]:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            model = pipeline_model(cells, **kwargs)
        assert model["steps"]["b"]["inputs"] == ["x"]
        assert any("mystery_name" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_the_suggested_prev_tag_never_makes_a_cycle(pipeline_model):
    cells = [(["step:load"], "data = [1, 2]"), (["step:split", "prev:load"], "n = len(data) + offset"),
             (["step:late", "prev:split"], "offset = n * 0 + 1")]
    with pytest.raises(PipelineGraphError) as caught:
        pipeline_model(cells)
    message = str(caught.value)
    assert "'late' runs after 'split': move the cell that defines 'offset' into 'split' or a step before it" in message
    assert "(cell 3)" in message and "tag the cell with" not in message
    # where the tag is the fix, following the hint converts
    cells = [(["step:load"], "data = [1, 2]"), (["step:other"], "offset = 1"),
             (["step:split", "prev:load"], "n = len(data) + offset")]
    with pytest.raises(PipelineGraphError, match="tag the cell with 'prev:load;other'"):
        pipeline_model(cells)
    cells[2] = (["step:split", "prev:load", "prev:other"], cells[2][1])
    assert pipeline_model(cells)["steps"]["split"]["inputs"] == ["data", "offset"]


def test_steps_are_in_topological_order(pipeline_model):
    model = pipeline_model([
        (["step:c", "prev:b"], "z = y + 1"),
        (["step:b", "prev:a"], "y = x + 1"),
        (["step:a"], "x = 1"),
    ])
    assert model["step_order"] == ["a", "b", "c"]



def test_a_change_through_a_dict_display_reaches_later_steps(pipeline_model):
    model = pipeline_model([
        (["step:a"], "a = [1]"),
        (["step:b", "prev:a"], "b = {'x': a}\nb['x'].append(2)"),
        (["step:c", "prev:b"], "print(a)"),
    ])
    assert model["steps"]["c"]["input_sources"] == {"a": "b"}
    assert "a" in model["steps"]["b"]["outputs"]


