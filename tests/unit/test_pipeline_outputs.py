"""Pipelines compose: the generated pipeline returns its metrics and the variables `output:` tags mark, so
another pipeline can use it as a step (from its YAML, or by importing `pipeline` from the script)."""

from __future__ import annotations

import logging

import pytest
import yaml

from nbconvert_kfp.errors import TagError
from nbconvert_kfp.runtime.step import OutputError, Step
from composablecase import composable  # noqa: F401 (the fixture)


FIT = 'summary = {"mean": sum(values) / len(values), "count": len(values)}\nscore = summary["mean"] * SCALE'
CELLS = [
    (["pipeline-parameters"], "SCALE = 2.0"),
    (["step:prepare"], "values = [1.0, 2.0, 3.0, 6.0]"),
    (["step:fit", "output:summary"], FIT),
    (["pipeline-metrics"], "score"),
]


def _outputs(model):
    return [{k: o[k] for k in ("name", "variable", "step", "kind", "type")} for o in model["outputs"]]


# --- what the pipeline declares ------------------------------------------------------------------


def test_the_pipeline_returns_its_metrics_and_the_marked_variables(pipeline_model):
    model = pipeline_model(CELLS)
    assert _outputs(model) == [
        {"name": "score", "variable": "score", "step": "fit", "kind": "metric", "type": "float"},
        {"name": "summary", "variable": "summary", "step": "fit", "kind": "artifact", "type": "Artifact"},
    ]
    assert "summary" in model["steps"]["fit"]["outputs"]  # saved although no later step reads it
    script = model["script"]
    assert script["returns"] == "Outputs"
    assert 'Outputs = NamedTuple("Outputs", [("score", float), ("summary", Artifact)])' in script["constants"]
    assert script["pipeline"][-1] == ('return Outputs(score=fit_task.outputs["score"], '
                                      'summary=fit_task.outputs["summary_out"])')
    fit = model["steps"]["fit"]["component"]
    assert fit["returns"] == 'NamedTuple("Outputs", [("score", float)])'
    assert fit["body"][-1] == '    return step.numbers(["score"])'
    assert model["steps"]["prepare"]["component"]["returns"] is None


def test_a_pipeline_without_metrics_or_marks_returns_nothing(convert, make_nb):
    script, resources = convert(make_nb([(["step:a"], "x = 1"), (["step:b"], "y = x + 1")]))
    assert resources["kfp"]["outputs"] == [] and resources["kfp"]["script"]["returns"] is None
    assert "NamedTuple" not in script and "Outputs" not in script


def test_output_names_are_valid_and_distinct(pipeline_model):
    model = pipeline_model([
        (["step:a"], "_acc = 0.5\nAcc = 0.25"),
        (["step:b", "output:acc"], "acc = [_acc, Acc]"),
        (["pipeline-metrics"], "_acc\nAcc"),
    ])
    assert [o["name"] for o in model["outputs"]] == ["acc", "Acc_2", "acc_3"]


def test_metrics_that_are_plainly_not_numbers_are_logged_but_not_returned(pipeline_model, caplog):
    with caplog.at_level(logging.INFO):
        model = pipeline_model([
            (["imports"], "from sklearn.metrics import confusion_matrix, roc_curve"),
            (["pipeline-parameters"], "NAME = 'x'\nN = 3"),
            (["step:evaluate"], "y = [0, 1, 1]\nscores = {'accuracy': 0.8}\ncm = confusion_matrix(y, y)\n"
                                "roc = roc_curve(y, [0.1, 0.9, 0.8])\nlabel = f'{NAME}'\nacc = 2 / 3"),
            (["pipeline-metrics"], "scores\ncm\nroc\nlabel\nacc\nNAME\nN"),
        ])
    assert [o["variable"] for o in model["outputs"]] == ["acc", "N"]
    assert model["steps"]["evaluate"]["metrics"] == ["scores", "cm", "roc", "label", "acc", "NAME", "N"]
    notes = [r.getMessage() for r in caplog.records]
    assert "metric 'scores' is a dict, not a number: it is logged, and the pipeline does not return it" in notes
    assert any(n.startswith("metric 'cm' is a confusion matrix") for n in notes)
    assert any(n.startswith("metric 'NAME' is a parameter of type str") for n in notes)


@pytest.mark.parametrize("cells, cell, message", [
    ([(["step:a", "output:modle"], "model = 1")], 0, "step 'a' does not assign a variable 'modle'; did you mean 'model'?"),
    ([(["step:a"], "import os"), (["step:b", "output:os"], "print(os.sep)")], 1, "step 'b' does not assign"),
    ([(["step:a", "output:x"], "x = 1"), (["step:b", "output:x"], "x = 2")], 1, "step 'a' already gives 'x'"),
    ([(["step:a", "output:acc"], "acc = 0.5"), (["pipeline-metrics"], "acc")], 0,
     "'acc' is a metric of the pipeline-metrics cell, which the pipeline already returns as a number"),
    ([(["step:a", "output:1x"], "x = 1")], 0, "'1x' is not a variable name"),
    ([(["step:a", "output:"], "x = 1")], 0, "expected output:<variable>"),
])
def test_a_wrong_output_tag_is_one_error_naming_the_cell_and_tag(convert, make_nb, cells, cell, message):
    with pytest.raises(TagError) as caught:
        convert(make_nb(cells))
    assert caught.value.cell_index == cell and caught.value.subject.startswith("output:")
    assert message in str(caught.value)


def test_an_output_tag_in_steps_defaults_is_an_error(convert, make_nb):
    with pytest.raises(TagError, match="marks a variable of one step"):
        convert(make_nb([(["step:a"], "x = 1")]), steps_defaults=["output:x"])


# --- the step runtime ------------------------------------------------------------------------------


def test_a_step_returns_its_metrics_as_numbers():
    step = Step("score")
    step.run([(0, "import numpy as np\nacc = np.float64(0.5)\ncount = 3\nflag = True")])
    values = step.numbers(["acc", "count", "flag"])
    assert values == (0.5, 3.0, 1.0) and all(type(v) is float for v in values)


@pytest.mark.parametrize("source, what", [
    ("scores = {'a': 1.0}", "is not a number (dict)"),
    ("scores = None", "is not a number (NoneType)"),
    ("scores = float('nan')", "is nan"),
])
def test_a_returned_metric_that_is_not_a_finite_number_fails_the_step_naming_it(source, what):
    step = Step("score")
    step.run([(0, source)])
    with pytest.raises(OutputError) as caught:
        step.numbers(["scores"])
    assert str(caught.value).startswith(f"metric 'scores' {what}: the pipeline returns it as a number")
    assert "step 'score'" in str(caught.value)


# --- composing: from the YAML, and from the script -------------------------------------------------







def test_the_compiled_pipeline_declares_its_outputs(composable):
    spec = yaml.safe_load((composable / "composable_pipeline.yaml").read_text(encoding="utf-8"))
    declared = spec["root"]["outputDefinitions"]
    assert declared["parameters"] == {"score": {"parameterType": "NUMBER_DOUBLE"}}
    assert declared["artifacts"]["summary"]["artifactType"]["schemaTitle"] == "system.Artifact"
    outputs = spec["root"]["dag"]["outputs"]
    assert outputs["parameters"]["score"]["valueFromParameter"] == {"outputParameterKey": "score",
                                                                    "producerSubtask": "fit"}
    assert outputs["artifacts"]["summary"]["artifactSelectors"] == [{"outputArtifactKey": "summary_out",
                                                                     "producerSubtask": "fit"}]



