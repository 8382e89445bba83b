"""The cell tag language: steps, prev edges, prelude, skip, parameters, metrics."""

from __future__ import annotations

import logging
import re

import pytest
from nbformat.v4 import new_markdown_cell

from nbconvert_kfp.errors import NotebookError, ParameterError


def cell_indices(step):
    return [cell["index"] for cell in step["cells"]]


def test_step_and_block_prefixes_both_make_steps(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["block:b"], "y = 2")])
    assert model["step_order"] == ["a", "b"]
    assert cell_indices(model["steps"]["a"]) == [0]
    assert cell_indices(model["steps"]["b"]) == [1]


def test_block_with_two_names_puts_the_cell_in_both_steps(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b"], "y = 2"),
        (["block:a;b"], "shared = 3"),
    ])
    assert cell_indices(model["steps"]["a"]) == [0, 2]
    assert cell_indices(model["steps"]["b"]) == [1, 2]
    assert model["steps"]["b"]["cells"][1]["source"] == "shared = 3"


def test_untagged_cell_continues_the_step_above(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        ([], "y = x + 1"),
        new_markdown_cell("a markdown cell does not end the step"),
        ([], "z = y + 1"),
        (["step:b"], "print(z)"),
    ])
    assert cell_indices(model["steps"]["a"]) == [0, 1, 3]
    assert cell_indices(model["steps"]["b"]) == [4]
    # y and x are bound inside a, so a only has to hand z to b
    assert model["steps"]["b"]["inputs"] == ["z"]
    assert model["steps"]["a"]["outputs"] == ["z"]


def test_untagged_cell_after_a_two_step_cell_continues_both(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b"], "y = 2"),
        (["step:a;b"], "s = 3"),
        ([], "t = s + 1"),
    ])
    assert cell_indices(model["steps"]["a"]) == [0, 2, 3]
    assert cell_indices(model["steps"]["b"]) == [1, 2, 3]


def test_same_step_name_on_several_cells_merges_them_in_notebook_order(pipeline_model):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        (["step:b"], "y = 2"),
        (["step:a"], "z = 3"),
        ([], "w = 4"),
    ])
    assert model["step_order"] == ["a", "b"]
    assert cell_indices(model["steps"]["a"]) == [0, 2, 3]
    assert [c["source"] for c in model["steps"]["a"]["cells"]] == ["x = 1", "z = 3", "w = 4"]
    assert cell_indices(model["steps"]["b"]) == [1]


def test_untagged_cells_before_the_first_step_are_left_out_with_a_warning(pipeline_model, caplog):
    with caplog.at_level(logging.WARNING):
        model = pipeline_model([
            ([], "early = 1"),
            (["hide-input"], "earlier_too = 2"),
            (["step:a"], "x = 3"),
        ])
    assert list(model["steps"]) == ["a"]
    assert cell_indices(model["steps"]["a"]) == [2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    left_out = [m for m in warnings if "left out" in m or "before the first step" in m]
    assert left_out, warnings
    assert re.search(r"cells 1, 2 come before", left_out[0]), left_out[0]  # numbered as JupyterLab shows them


@pytest.mark.parametrize("tags", [
    ["step:c", "prev:a;b"],
    ["step:c", "prev:a", "prev:b"],
    ["block:c", "prev:a:b"],  # Kale 0.1 separates prev names with ':'
])
def test_prev_tags_name_parents(pipeline_model, tags):
    model = pipeline_model([(["step:a"], "x = 1"), (["step:b"], "y = 2"), (tags, "z = 3")])
    assert [p["step"] for p in model["steps"]["c"]["prev"]] == ["a", "b"]
    assert model["steps"]["c"]["parents"] == ["a", "b"]
    assert model["step_order"][-1] == "c"


def test_single_prev_tag(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["step:b"], "y = 2"), (["step:c", "prev:b"], "z = 3")])
    assert model["steps"]["c"]["parents"] == ["b"]
    assert model["steps"]["b"]["parents"] == []


def test_prev_tag_may_name_a_later_step(pipeline_model):
    model = pipeline_model([(["step:late", "prev:early"], "y = x + 1"), (["step:early"], "x = 1")])
    assert model["step_order"] == ["early", "late"]
    assert model["steps"]["late"]["input_sources"] == {"x": "early"}


def test_imports_and_functions_form_the_prelude_imports_first(pipeline_model):
    model = pipeline_model([
        (["functions"], "def double(v):\n    return 2 * v"),
        (["imports"], "import math"),
        (["step:a"], "x = double(math.pi)"),
        (["imports"], "import json"),
    ])
    assert [cell["index"] for cell in model["prelude"]] == [1, 3, 0]
    assert list(model["steps"]) == ["a"]
    assert cell_indices(model["steps"]["a"]) == [2]
    assert model["steps"]["a"]["inputs"] == []


def test_block_imports_and_block_functions_are_the_prelude(pipeline_model):
    # Kale 0.1 notebooks tag their import cells "block:imports"
    model = pipeline_model([
        (["block:imports"], "import os"),
        (["block:functions"], "def sep():\n    return os.sep"),
        (["block:a"], "x = sep()"),
        (["block:b", "prev:a"], "y = os.path.join(x, 'f')"),
    ])
    assert set(model["steps"]) == {"a", "b"}
    assert [cell["index"] for cell in model["prelude"]] == [0, 1]
    assert model["steps"]["a"]["inputs"] == []
    assert model["steps"]["b"]["inputs"] == ["x"]
    assert model["steps"]["b"]["imports"] == []
    assert model["steps"]["b"]["definitions"] == []


def test_skip_cells_are_left_out(pipeline_model, convert, make_nb):
    cells = [
        (["step:a"], "x = 1"),
        (["skip"], "skipped_marker_value = 42"),
        (["step:b"], "y = x"),
    ]
    model = pipeline_model(cells)
    assert cell_indices(model["steps"]["a"]) == [0]
    assert cell_indices(model["steps"]["b"]) == [2]
    script, _ = convert(make_nb(cells))
    assert "skipped_marker_value" not in script


def test_skip_wins_over_a_step_tag(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["step:b", "skip"], "y = 2")])
    assert list(model["steps"]) == ["a"]


@pytest.mark.parametrize("tag", ["pipeline-parameters", "parameters"])
def test_parameters_cell_gives_typed_parameters(pipeline_model, tag):
    source = "\n".join([
        "n = 3",
        "rate = 0.5",
        "label = 'hi'",
        "flag = True",
        "items = [1, 2]",
        "opts = {'k': 1}",
        "pair = (1, 'a')",
        "neg = -4",
        "negf = -2.5",
        "annotated: int = 7",
    ])
    model = pipeline_model([([tag], source), (["step:a"], "print(n)")])
    params = {p["name"]: p for p in model["parameters"]}
    assert list(params) == ["n", "rate", "label", "flag", "items", "opts", "pair", "neg", "negf", "annotated"]
    expected = {
        "n": ("int", 3), "rate": ("float", 0.5), "label": ("str", "hi"), "flag": ("bool", True),
        # ints inside lists and dicts, and tuples, travel as Python literals: KFP would make floats and lists
        "items": ("literal", [1, 2]), "opts": ("literal", {"k": 1}), "pair": ("literal", (1, "a")),
        "neg": ("int", -4), "negf": ("float", -2.5), "annotated": ("int", 7),
    }
    for name, (type_, default) in expected.items():
        assert (params[name]["type"], params[name]["default"]) == (type_, default), name
        assert type(params[name]["default"]) is type(default), name
        assert params[name]["cell"] == 0
    assert model["steps"]["a"]["parameters"] == ["n"]
    assert model["steps"]["a"]["cells"] and "n" not in model["steps"]["a"]["inputs"]


def test_parameters_cell_does_not_become_a_step_or_continue_one(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["parameters"], "p = 1"), (["step:b"], "y = p + x")])
    assert cell_indices(model["steps"]["a"]) == [0]
    assert model["steps"]["b"]["parameters"] == ["p"]


def test_metrics_cell_reads_print_lines_and_bare_names(pipeline_model):
    model = pipeline_model([
        (["step:a"], "acc = 0.9\nloss = 0.1\nf1 = 0.8"),
        (["pipeline-metrics"], "print(acc)\nloss\nprint(f1)"),
    ])
    assert [m["name"] for m in model["metrics"]] == ["acc", "loss", "f1"]
    assert all(m["cell"] == 1 for m in model["metrics"])
    assert model["steps"]["a"]["metrics"] == ["acc", "loss", "f1"]
    assert list(model["steps"]) == ["a"]


def test_metrics_cell_print_of_constants_is_left_out_with_a_warning(pipeline_model, caplog):
    with caplog.at_level(logging.WARNING):
        model = pipeline_model([
            (["step:a"], "acc = 0.9"),
            (["pipeline-metrics"], "print('== metrics ==')\nprint(acc)"),
        ])
    assert [m["name"] for m in model["metrics"]] == ["acc"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("cell 2:" in m and "'== metrics =='" in m and "not a metric" in m for m in warnings), warnings


@pytest.mark.parametrize("foreign", ["hide-input", "remove-cell", "raises-exception"])
def test_foreign_tags_are_ignored(pipeline_model, foreign):
    model = pipeline_model([
        (["step:a"], "x = 1"),
        ([foreign], "y = x + 1"),
        ([foreign, "step:b"], "z = y + 1"),
    ])
    assert cell_indices(model["steps"]["a"]) == [0, 1]
    assert cell_indices(model["steps"]["b"]) == [2]
    assert model["steps"]["b"]["input_sources"] == {"y": "a"}


def test_notebook_without_step_tags_is_one_step_named_notebook(pipeline_model):
    model = pipeline_model([
        ([], "x = 1"),
        (["hide-input"], "y = x + 1"),
        (["skip"], "z = 0"),
        ([], "print(y)"),
    ])
    assert list(model["steps"]) == ["notebook"]
    assert cell_indices(model["steps"]["notebook"]) == [0, 1, 3]
    assert model["steps"]["notebook"]["inputs"] == []


def test_notebook_with_only_prelude_tags_is_one_step_named_notebook(pipeline_model):
    # no step tags at all: the imports cell is the prelude, the rest is the single step
    model = pipeline_model([
        (["imports"], "import os"),
        ([], "x = 1"),
        (["hide-input"], "y = x + 1"),
        (["skip"], "z = 0"),
        ([], "print(os.sep, y)"),
    ])
    assert list(model["steps"]) == ["notebook"]
    assert cell_indices(model["steps"]["notebook"]) == [1, 2, 4]
    assert [cell["index"] for cell in model["prelude"]] == [0]


def test_notebook_with_no_code_is_an_error(convert, make_nb):
    with pytest.raises(NotebookError):
        convert(make_nb([(["imports"], "import os")]))


# --- Kale 1.x artefacts: warnings, never a blocked conversion ---------------------------------------------


def test_an_empty_block_tag_continues_the_step_above(pipeline_model, caplog):
    with caplog.at_level(logging.WARNING):
        model = pipeline_model([(["block:load"], "x = 1"), (["block:"], "y = x + 1"), (["block:train"], "z = y")])
    assert cell_indices(model["steps"]["load"]) == [0, 1]
    assert "cell 2: tag 'block:' names no step" in caplog.text and "continues the step above" in caplog.text


def test_prev_on_a_prelude_cell_is_ignored_with_one_warning(pipeline_model, caplog):
    with caplog.at_level(logging.WARNING):
        model = pipeline_model([(["functions", "prev:load"], "def f():\n    return 1"),
                                (["step:load"], "x = f()")])
    assert model["steps"]["load"]["prev"] == []
    assert caplog.text.count("'prev:load' ignored") == 1 and "it is a functions cell" in caplog.text


def test_prev_on_a_continued_cell_naming_its_own_step_gets_an_accurate_warning(pipeline_model, caplog):
    with caplog.at_level(logging.WARNING):
        model = pipeline_model([(["step:load"], "x = 1"), (["prev:load"], "y = x"), (["step:train"], "z = y")])
    assert model["steps"]["load"]["prev"] == [] and "cycle" not in caplog.text
    assert "tag 'prev:load' names step 'load', which this cell belongs to" in caplog.text


def test_prev_on_a_continued_cell_naming_another_step_applies_to_the_step(pipeline_model):
    model = pipeline_model([(["step:a"], "x = 1"), (["step:b"], "y = 2"), ([], "w = 3"), (["prev:a"], "v = 4")])
    assert [p["step"] for p in model["steps"]["b"]["prev"]] == ["a"]


KALE_CELL = 'print("Setting the pipeline parameters")\nLR = 0.1\nEPOCHS = 5  # a comment\nprint("Parameters set")'


def test_pipeline_parameters_cell_keeps_its_prints_in_the_prelude_with_one_note(pipeline_model, caplog):
    with caplog.at_level(logging.INFO):
        model = pipeline_model([(["pipeline-parameters"], KALE_CELL), (["step:a"], "print(LR)"),
                                (["step:b"], "y = 1")])
    assert [(p["name"], p["default"]) for p in model["parameters"]] == [("LR", 0.1), ("EPOCHS", 5)]
    assert [(c["index"], c.get("role")) for c in model["prelude"]] == [(0, "parameters")]
    notes = [r.getMessage() for r in caplog.records if "run at the start of every step" in r.getMessage()]
    assert notes == ["cell 1: the parameters cell's other statements (print('Setting the pipeline parameters'), "
                     "print('Parameters set')) run at the start of every step, before the parameter values of the "
                     "run are set"]
    for step in "ab":  # every step runs the cell, then gets the run's values of the parameters it reads
        body = "\n".join(model["steps"][step]["component"]["body"])
        assert "step.run_prelude()" in body
    body = model["steps"]["a"]["component"]["body"]
    assert [line.strip().partition("(")[0] for line in body if "step.define" in line or "run_prelude" in line] == [
        "step.define", "step.run_prelude", "step.define"]


@pytest.mark.parametrize("source, subject", [
    ("print('x')\nLR = 1/10", "LR"),
    ("X = foo()\nprint(X)", "X"),
    ("LR = 0.1\nLR += 1", "LR += 1"),
    ("import os\nLR = 0.1", "import os"),
    ("print(n := 3)", "print((n := 3))"),
])
def test_pipeline_parameters_cell_refuses_what_makes_a_parameter_non_literal(convert, make_nb, source, subject):
    with pytest.raises(ParameterError) as info:
        convert(make_nb([(["pipeline-parameters"], source), (["step:a"], "print(1)")]))
    assert info.value.cell_index == 0 and info.value.subject == subject
    assert str(info.value).startswith("cell 1: ")


def test_a_pipeline_metrics_cell_that_computes_runs_as_a_step_and_logs_what_it_lists(pipeline_model, caplog):
    with caplog.at_level("INFO"):
        model = pipeline_model([
            (["step:train"], "scores = {'a': 0.5, 'b': 0.75}"),
            (["pipeline-metrics"], "print('summary')\nbest = max(scores.values())\nprint(best)\nif best > 0.6:\n"
                                   "    print('good')"),
        ])
    assert model["step_order"] == ["train", "pipeline-metrics"]
    assert model["steps"]["pipeline-metrics"]["inputs"] == ["scores"]
    assert [m["name"] for m in model["metrics"]] == ["best"]
    assert model["steps"]["pipeline-metrics"]["metrics"] == ["best"]
    assert any("runs as the step 'pipeline-metrics'" in r.getMessage() and "it logs best" in r.getMessage()
               for r in caplog.records)


def test_a_pipeline_metrics_cell_of_names_only_stays_a_list(pipeline_model):
    model = pipeline_model([(["step:train"], "acc = 0.5"), (["pipeline-metrics"], "print(acc)\nacc")])
    assert model["step_order"] == ["train"] and [m["name"] for m in model["metrics"]] == ["acc"]
