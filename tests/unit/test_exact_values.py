"""Values arrive as the notebook wrote them, or the front end says why they cannot: whole numbers KFP would
round or turn into floats, parameters read by name at run time, metadata switches written as text, and
nbformat 4.4 notebooks whose cells carry ids."""

from __future__ import annotations

import json

import nbformat
import pytest

from nbconvert_kfp.errors import KFPExportError
from nbconvert_kfp.exporters import KFPExporter
from nbconvert_kfp.script.parametervalue import EXACT_INT, parse_value

from helpers import build_notebook


@pytest.mark.parametrize("kind, text", [
    ("int", str(EXACT_INT + 1)), ("int", str(-EXACT_INT - 1)), ("list", "[64, 32]"), ("list", "[0.5, [1]]"),
    ("dict", '{"units": 64}'), ("dict", '{"a": {"b": [2]}}'),
])
def test_values_kfp_would_change_are_refused_with_the_reason(kind, text):
    with pytest.raises(ValueError, match="2\\*\\*53|whole number"):
        parse_value(kind, text)


@pytest.mark.parametrize("kind, text, value", [
    ("int", str(EXACT_INT), EXACT_INT), ("list", "[64.0, 0.5, true, null, \"a\"]", [64.0, 0.5, True, None, "a"]),
    ("dict", '{"on": true, "rate": 0.5}', {"on": True, "rate": 0.5}), ("literal", "[64, 32]", "[64, 32]"),
])
def test_values_kfp_carries_exactly_pass(kind, text, value):
    assert parse_value(kind, text) == value


def _model(cells, metadata=None):
    _, resources = KFPExporter().from_notebook_node(build_notebook(cells, metadata), {"metadata": {"name": "v"}})
    return {s["name"]: s for s in resources["kfp"]["steps"]}, resources["kfp"]


def test_a_step_that_reads_names_by_their_text_gets_every_parameter():
    steps, _ = _model([("pipeline-parameters", "LR = 0.1\nEPOCHS = 3"),
                       ("step:a", "print(globals()['LR'])"), ("step:b", "print(eval('EPOCHS'))"),
                       ("step:c", "print(EPOCHS)")])
    assert steps["a"]["parameters"] == ["EPOCHS", "LR"] and steps["b"]["parameters"] == ["EPOCHS", "LR"]
    assert steps["c"]["parameters"] == ["EPOCHS"]


@pytest.mark.parametrize("value, expected", [("false", False), ("True", True), ("0", False), (False, False)])
def test_enable_caching_written_as_text_is_applied(value, expected):
    _, model = _model([("step:a", "x = 1")], {"kubeflow_notebook": {"enable_caching": value}})
    assert model["pipeline"]["enable_caching"] is expected


def test_an_enable_caching_that_is_no_switch_is_an_error_naming_the_key():
    with pytest.raises(KFPExportError, match="kubeflow_notebook.enable_caching must be true or false"):
        _model([("step:a", "x = 1")], {"kubeflow_notebook": {"enable_caching": "sometimes"}})


def test_an_nbformat_4_4_notebook_whose_cells_carry_ids_converts_with_a_warning(tmp_path, caplog):
    nb = json.loads(nbformat.writes(build_notebook([("step:a", "x = 1"), ("step:b", "y = x + 1")])))
    nb["nbformat_minor"] = 4
    assert all("id" in cell for cell in nb["cells"])
    (tmp_path / "old.ipynb").write_text(json.dumps(nb))
    script, _ = KFPExporter().from_filename(str(tmp_path / "old.ipynb"))
    assert "def b(" in script
    assert any("nbformat 4.4, but its cells carry ids" in r.getMessage() for r in caplog.records)


def test_a_notebook_name_near_the_file_name_limit_converts_through_the_server_api():
    from nbconvert_kfp import serverextension

    nb = json.loads(nbformat.writes(build_notebook([("step:a", "x = 1")])))
    for length in (100, 244, 255 - len(".ipynb")):
        reply = serverextension.convert({"notebook": nb, "name": "n" * length + ".ipynb"})
        assert "pipelineInfo" in reply["yaml"] and reply["filename"].startswith("n" * length)
