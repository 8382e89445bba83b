"""Bad notebooks: clean errors through the real CLI, and the error classes themselves."""

from __future__ import annotations

import pickle
import re

import nbformat
import pytest
from nbconvert.utils.exceptions import ConversionException

from nbconvert_kfp.errors import (
    CellSourceError,
    KFPExportError,
    MetricError,
    NotebookError,
    ParameterError,
    PipelineGraphError,
    TagError,
)

ERROR_CLASSES = [KFPExportError, TagError, PipelineGraphError, CellSourceError, ParameterError,
                 MetricError, NotebookError]


def _write(tmp_path, nb, name="bad.ipynb"):
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _assert_clean_failure(result, tmp_path):
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert not list(tmp_path.glob("*_pipeline.py")), list(tmp_path.iterdir())


# --- through the real CLI ---------------------------------------------------------------------

def test_cli_prev_cycle(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([
        (["step:start"], "x = 1"),
        (["step:alpha", "prev:beta"], "y = 2"),
        (["step:beta", "prev:alpha"], "z = 3"),
    ])
    result = run_nbconvert(_write(tmp_path, nb))
    _assert_clean_failure(result, tmp_path)
    assert re.search(r"\bcell [23]\b", result.stderr), result.stderr
    assert "cycle" in result.stderr
    assert "alpha" in result.stderr and "beta" in result.stderr
    assert "prev:" in result.stderr


def test_cli_prev_to_unknown_step(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([(["step:a"], "x = 1"), (["step:b"], "y = 2"), (["step:c", "prev:nowhere"], "z = 3")])
    result = run_nbconvert(_write(tmp_path, nb))
    _assert_clean_failure(result, tmp_path)
    assert "cell 3:" in result.stderr
    assert "prev:nowhere" in result.stderr


def test_cli_syntax_error_in_a_step_cell(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([(["step:a"], "x = 1"), (["step:broken"], "y = 2"), ([], "z = (1,\n")])
    result = run_nbconvert(_write(tmp_path, nb))
    _assert_clean_failure(result, tmp_path)
    assert "cell 3:" in result.stderr
    assert "syntax error" in result.stderr.lower()


def test_cli_empty_step_name(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([(["step:a"], "x = 1"), (["step:b;"], "y = 2")])
    result = run_nbconvert(_write(tmp_path, nb))
    _assert_clean_failure(result, tmp_path)
    assert "cell 2:" in result.stderr
    assert "'step:b;'" in result.stderr


def test_cli_non_literal_parameter(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([
        (["step:a"], "def compute():\n    return 1"),
        (["pipeline-parameters"], "ok = 1\nlearning_rate = compute()"),
        (["step:b"], "print(learning_rate)"),
    ])
    result = run_nbconvert(_write(tmp_path, nb))
    _assert_clean_failure(result, tmp_path)
    assert "cell 2:" in result.stderr
    assert "learning_rate" in result.stderr


def test_cli_non_python_kernel(tmp_path, make_nb, run_nbconvert):
    nb = make_nb([(["step:a"], "x <- 1")], metadata={
        "kernelspec": {"display_name": "R", "language": "R", "name": "ir"},
        "language_info": {"name": "R"},
    })
    result = run_nbconvert(_write(tmp_path, nb))
    _assert_clean_failure(result, tmp_path)
    assert "kernel" in result.stderr.lower()
    assert re.search(r"['\"]R['\"]", result.stderr, re.IGNORECASE), result.stderr


# --- the same errors in-process: class, cell_index, subject -----------------------------------

@pytest.mark.parametrize("cells, error, cell_index, subject", [
    ([(["step:a"], "x = 1"), (["step:b", "prev:nowhere"], "y = 2")], TagError, 1, "prev:nowhere"),
    ([(["step:a"], "x = 1"), (["step:;b"], "y = 2")], TagError, 1, "step:;b"),
    ([(["step:a"], "x = 1"), (["step:b"], "y = (")], CellSourceError, 1, None),
    ([(["pipeline-parameters"], "p = f()"), (["step:a"], "print(p)")], ParameterError, 0, "p"),
    ([(["step:a"], "x = 1"), (["pipeline-metrics"], "print(x +")], MetricError, 1, "pipeline-metrics"),
    ([(["step:a"], "x = 1"), (["pipeline-metrics"], "print(nothing_defines_me)")], MetricError, 1,
     "nothing_defines_me"),
    ([(["limit:cpu:1"], "x = 1")], TagError, 0, "limit:cpu:1"),
])
def test_errors_carry_class_cell_and_subject(convert, make_nb, cells, error, cell_index, subject):
    with pytest.raises(error) as info:
        convert(make_nb(cells))
    err = info.value
    assert err.cell_index == cell_index
    if subject is not None:
        assert err.subject == subject
    assert str(err).startswith(f"cell {cell_index + 1}: ")  # the message counts cells from 1, as JupyterLab


def test_cycle_error_in_process(convert, make_nb):
    with pytest.raises(PipelineGraphError) as info:
        convert(make_nb([(["step:alpha", "prev:beta"], "y = 2"), (["step:beta", "prev:alpha"], "z = 3")]))
    err = info.value
    # the cell named is the one whose prev tag is reported
    assert (err.cell_index, err.subject) in {(0, "prev:beta"), (1, "prev:alpha")}


def test_non_python_kernel_in_process(convert, make_nb):
    nb = make_nb([(["step:a"], "x <- 1")], metadata={"kernelspec": {"display_name": "R", "language": "R", "name": "ir"}})
    with pytest.raises(NotebookError) as info:
        convert(nb)
    assert info.value.cell_index is None
    assert "cell" not in str(info.value).split(":")[0]


# --- the error classes --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ERROR_CLASSES)
def test_error_classes_are_conversion_exceptions(cls):
    assert issubclass(cls, ConversionException)
    assert issubclass(cls, KFPExportError)


@pytest.mark.parametrize("cls", ERROR_CLASSES)
@pytest.mark.parametrize("cell_index, subject", [(3, "prev:x"), (0, None), (None, "R"), (None, None)])
def test_error_attributes_and_pickle_round_trip(cls, cell_index, subject):
    err = cls("something is wrong: 'quoted' ☕", cell_index, subject)
    assert err.cell_index == cell_index
    assert err.subject == subject
    assert err.message == "something is wrong: 'quoted' ☕"
    if cell_index is None:
        assert str(err) == "something is wrong: 'quoted' ☕"
    else:
        assert str(err) == f"cell {cell_index + 1}: something is wrong: 'quoted' ☕"  # 1-based, as JupyterLab
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err)
    assert (copy.message, copy.cell_index, copy.subject) == (err.message, err.cell_index, err.subject)
    assert copy.args == err.args


def test_error_defaults():
    err = TagError("bad tag")
    assert err.cell_index is None and err.subject is None
    assert str(err) == "bad tag"
