"""The names a misspelled one may stand for: Python's own suggestion distance."""

from __future__ import annotations

import pytest

from nbconvert_kfp.analysis.spelling import close_names


@pytest.mark.parametrize("name, candidates, expected", [
    ("svn", ["svm", "svm_acc", "SVC", "split"], ["svm"]),  # a one-letter slip in a short name
    ("lenght", ["length", "len"], ["length"]),
    ("Model", ["model", "modal"], ["model", "modal"]),  # case alone costs less than a letter
    ("x", ["y", "df"], []),  # one letter of one is too far to guess
    ("accuracy", ["acc", "loss"], []),
])
def test_close_names_follow_pythons_suggestion_distance(name, candidates, expected):
    assert close_names(name, candidates) == expected


def test_a_short_misspelled_name_in_a_step_gets_a_suggestion(pipeline_model):
    from nbconvert_kfp.errors import PipelineGraphError

    with pytest.raises(PipelineGraphError, match=r"reads 'svn'.*did you mean 'svm'\?"):
        pipeline_model([(["step:fit"], "svm = 3\nscore = svn * 2")])
