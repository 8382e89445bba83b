"""Step runtime: cells run as in a notebook, inside one KFP component."""

from __future__ import annotations

import json
import linecache
import math
import os
import pickle
import sys
import textwrap
import traceback

import numpy as np
import pytest

from nbconvert_kfp import marshal
from nbconvert_kfp.runtime.step import Step


class FakeArtifact:
    """Stands in for a KFP Artifact / Metrics object."""

    def __init__(self, path):
        self.path = str(path)
        self.metadata = {}
        self.logged = {}

    def log_metric(self, name, value):
        self.logged[name] = value
        self.metadata[name] = value


# --- the step's __main__ -------------------------------------------------------------------


def test_cells_run_in_a_fresh_main_module():
    outer_main = sys.modules["__main__"]
    first = Step("first")
    second = Step("second")
    assert first.module is not second.module
    assert first.module is not outer_main
    assert first.namespace["__name__"] == "__main__"
    first.run([(0, "\nshared = 1\n")])
    assert first.namespace["shared"] == 1
    assert "shared" not in second.namespace
    second.run([(0, "\nseen = 'shared' in globals()\n")])
    assert second.namespace["seen"] is False


def test_main_is_the_step_module_inside_and_restored_after(capsys):
    outer_main = sys.modules["__main__"]
    with Step("swap") as step:
        assert sys.modules["__main__"] is step.module
        step.run([(0, "\nimport sys\nsame = sys.modules['__main__'].__dict__ is globals()\n")])
        assert step.namespace["same"] is True
    assert sys.modules["__main__"] is outer_main
    out = capsys.readouterr().out
    assert "[nbconvert-kfp] step 'swap' started" in out
    assert "[nbconvert-kfp] step 'swap' finished in" in out


def test_main_is_restored_after_a_failing_cell(capsys):
    outer_main = sys.modules["__main__"]
    with pytest.raises(ValueError):
        with Step("boom") as step:
            step.run([(0, "\nraise ValueError('nope')\n")])
    assert sys.modules["__main__"] is outer_main
    assert "[nbconvert-kfp] step 'boom' failed in" in capsys.readouterr().out


def test_functions_and_classes_defined_in_cells_pickle_by_reference():
    with Step("defs") as step:
        step.run([(1, textwrap.dedent("""
            def double(v):
                return v * 2

            class Box:
                def __init__(self, v):
                    self.v = v

            box = Box(4)
        """))])
        ns = step.namespace
        assert ns["double"].__module__ == "__main__"
        data = pickle.dumps(ns["double"])
        assert b"__main__" in data and b"double" in data
        assert pickle.loads(data) is ns["double"]
        assert type(pickle.loads(pickle.dumps(ns["box"]))) is ns["Box"]
        assert pickle.loads(pickle.dumps(ns["box"])).v == 4
        # by reference: a class pickle does not carry the class body
        assert b"__init__" not in pickle.dumps(ns["Box"])


def test_marshal_saves_cell_functions_by_reference_inside_the_step(tmp_path):
    with Step("producer") as step:
        step.run([(0, "\ndef f(x):\n    return x + 1\n")])
        written = marshal.resource_save(step.namespace["f"], str(tmp_path / "f"))
    assert os.path.basename(written) == "value.pkl"
    with Step("consumer") as step:
        step.run([("upstream definitions", "\ndef f(x):\n    return x + 1\n")])
        step.load({"f": FakeArtifact(tmp_path / "f")})
        step.run([(3, "\nresult = f(41)\n")])
        assert step.namespace["result"] == 42


# --- cell sources, errors and tracebacks -------------------------------------------------------


def test_leading_newline_is_stripped():
    step = Step("lines")
    step.run([(7, "\nfirst = 1\nsecond = 2\n")])
    assert linecache.getline("<cell 7>", 1) == "first = 1\n"
    assert linecache.getline("<cell 7>", 2) == "second = 2\n"


def test_only_one_leading_newline_is_stripped_and_sources_without_one_run():
    step = Step("lines")
    step.run([(1, "a = 1")])
    assert step.namespace["a"] == 1
    with pytest.raises(ZeroDivisionError) as info:
        step.run([(2, "\n\nx = 1 / 0\n")])
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == ("<cell 2>", 2)


def test_exception_propagates_with_note_and_cell_traceback():
    step = Step("train")
    with pytest.raises(ZeroDivisionError) as info:
        step.run([(0, "\nok = True\n"), (5, "\na = 1\nb = 2\nc = a / 0\nd = 4\n")])
    err = info.value
    assert "(in notebook cell 5, line 3 of step 'train')" in getattr(err, "__notes__", [])
    frame = traceback.extract_tb(err.__traceback__)[-1]
    assert frame.filename == "<cell 5>"
    assert frame.lineno == 3
    assert frame.line == "c = a / 0"
    formatted = "".join(traceback.format_exception(err))
    assert 'File "<cell 5>", line 3' in formatted
    assert "c = a / 0" in formatted
    assert "(in notebook cell 5, line 3 of step 'train')" in formatted
    assert step.namespace["b"] == 2 and "d" not in step.namespace


def test_exception_in_a_function_defined_in_an_earlier_cell_points_at_both_cells():
    step = Step("calls")
    step.run([(2, "\ndef explode(v):\n    return v[10]\n")])
    with pytest.raises(IndexError) as info:
        step.run([(4, "\nvalues = [1]\nexplode(values)\n")])
    frames = [(f.filename, f.lineno) for f in traceback.extract_tb(info.value.__traceback__)]
    assert ("<cell 4>", 2) in frames
    assert frames[-1] == ("<cell 2>", 2)
    assert info.value.__notes__ == ["(in notebook cell 4, line 2 of step 'calls')"]


def test_exception_in_a_labelled_source_names_the_label():
    step = Step("join")
    with pytest.raises(KeyError) as info:
        step.run([("upstream definitions", "\nx = {}['missing']\n")])
    assert "(in upstream definitions, line 1 of step 'join')" in info.value.__notes__
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == ("<upstream definitions>", 1)


def test_syntax_error_in_a_cell_propagates():
    step = Step("syntax")
    with pytest.raises(SyntaxError) as info:
        step.run([(3, "\nx = (\n")])
    assert info.value.filename == "<cell 3>"


# --- define / load / save ----------------------------------------------------------------------


def test_define_binds_parameters():
    step = Step("params")
    step.define({"SEED": 3, "NAME": "abc"})
    step.run([(0, "\nout = SEED * 2\nname = NAME.upper()\n")])
    assert step.namespace["out"] == 6 and step.namespace["name"] == "ABC"


def test_save_then_load_round_trips_and_records_metadata(tmp_path):
    data_out = FakeArtifact(tmp_path / "data_out")
    array_out = FakeArtifact(tmp_path / "array_out")
    with Step("produce") as step:
        step.run([(0, "\nimport numpy as np\ndata = {'a': [1, 2]}\narray = np.arange(4.0)\n")])
        step.save({"data": data_out, "array": array_out})
    assert os.listdir(data_out.path) == ["value.pkl"]
    assert os.listdir(array_out.path) == ["value.npy"]
    assert data_out.metadata == {"format": "pkl", "python_type": "builtins.dict", "variable": "data"}
    assert array_out.metadata == {"format": "npy", "python_type": "numpy.ndarray", "variable": "array"}

    with Step("consume") as step:
        step.load({"data": data_out, "array": array_out})
        step.run([(1, "\ntotal = sum(data['a']) + float(array.sum())\n")])
        assert step.namespace["total"] == 9.0
        np.testing.assert_array_equal(step.namespace["array"], np.arange(4.0))


def test_saving_an_undefined_variable_raises_marshal_error_naming_it_and_the_step(tmp_path):
    step = Step("produce")
    step.run([(0, "\nsomething_else = 1\n")])
    with pytest.raises(marshal.MarshalError) as info:
        step.save({"missing_var": FakeArtifact(tmp_path / "out")})
    message = str(info.value)
    assert "'missing_var'" in message
    assert "'produce'" in message


def test_saving_an_unsaveable_value_raises_marshal_error_naming_variable_type_and_step(tmp_path):
    step = Step("gen")
    step.run([(0, "\nitems = (i for i in range(3))\n")])
    with pytest.raises(marshal.MarshalError) as info:
        step.save({"items": FakeArtifact(tmp_path / "out")})
    message = str(info.value)
    assert "'items'" in message and "'gen'" in message and "generator" in message
    assert info.value.__cause__ is not None


def test_loading_a_missing_artifact_raises_marshal_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(marshal.MarshalError):
        Step("consume").load({"x": FakeArtifact(tmp_path / "empty")})


# --- metrics -----------------------------------------------------------------------------------


def test_log_metrics_logs_numbers_and_skips_the_rest(tmp_path, capsys):
    step = Step("score")
    step.run([(0, textwrap.dedent("""
        import numpy as np
        acc = 0.9
        count = 3
        half = np.float64(0.5)
        label = "abc"
        nothing = None
        missing_value = float("nan")
    """))])
    metrics = FakeArtifact(tmp_path / "metrics")
    step.log_metrics(metrics, ["acc", "count", "half", "label", "nothing", "missing_value", "never_defined"])
    assert metrics.logged == {"acc": 0.9, "count": 3.0, "half": 0.5}
    assert all(type(v) is float for v in metrics.logged.values())
    captured = capsys.readouterr()
    assert "[nbconvert-kfp] metric acc = 0.9" in captured.out
    assert "[nbconvert-kfp] metric count = 3" in captured.out
    assert "metric 'label' is not a number (str); not logged" in captured.err
    assert "metric 'nothing' is not a number (NoneType); not logged" in captured.err
    assert "metric 'never_defined'" in captured.err
    assert "metric 'missing_value' is nan; not logged" in captured.err
    assert not any(isinstance(v, float) and math.isnan(v) for v in metrics.logged.values())


# --- get_ipython -------------------------------------------------------------------------------








def test_report_header_hides_secret_parameters_and_shows_a_failure_outside_any_cell(tmp_path):
    report = FakeArtifact(tmp_path / "report")
    with pytest.raises(marshal.MarshalError):
        with Step("consume", report=report) as step:
            step.define({"db_password": "hunter2-s3cr3t", "rows": 5})
            step.run([(3, "x = rows * 2")])
            step.load({"table": FakeArtifact(tmp_path / "missing")})
    page = (tmp_path / "report").read_text(encoding="utf-8")
    assert "hunter2" not in page and "s3cr3t" not in page
    assert "<code>db_password</code> (hidden)" in page and "<code>rows</code> 5" in page
    header = page.split("</header>", 1)[0]
    assert '<span class="status failed">failed</span>' in header
    assert "MarshalError: step &#x27;consume&#x27; cannot load variable &#x27;table&#x27;" in header
    assert 'class="cell code failed"' not in page  # cell 3 ran fine


# --- what a step imports, for a local run ---------------------------------------------------------


def test_step_records_the_modules_first_imported_and_by_whom(tmp_path, monkeypatch):
    package = tmp_path / "nbkfp_lazyrec_lib"
    package.mkdir()
    # imports an optional module while it is itself imported, and another one only when go() runs
    (package / "__init__.py").write_text(
        "try:\n    import nbkfp_lazyrec_optional\nexcept ImportError:\n    pass\n\n"
        "def go():\n    import importlib\n    return importlib.import_module('nbkfp_lazyrec_lazy').VALUE\n")
    (tmp_path / "nbkfp_lazyrec_optional.py").write_text("X = 1\n")
    (tmp_path / "nbkfp_lazyrec_lazy.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    status = tmp_path / "status.json"
    monkeypatch.setenv("NBCONVERT_KFP_STEP_STATUS", str(status))
    finders = list(sys.meta_path)
    try:
        with Step("lazy") as step:
            step.run([(1, "import json, csv\nimport nbkfp_lazyrec_lib\nv = nbkfp_lazyrec_lib.go()\n"
                          "try:\n    import nbkfp_lazyrec_absent\nexcept ImportError:\n    pass")])
        assert step.namespace["v"] == 7
    finally:
        for name in ("nbkfp_lazyrec_lib", "nbkfp_lazyrec_optional", "nbkfp_lazyrec_lazy"):
            sys.modules.pop(name, None)
    assert sys.meta_path == finders  # the recorder is gone once the step ends
    record = json.loads(status.read_text())
    assert record["state"] == "finished"
    assert record["imported"] == {"nbkfp_lazyrec_lib": "__main__", "nbkfp_lazyrec_lazy": "nbkfp_lazyrec_lib"}


def test_the_step_runtimes_own_optional_imports_are_not_recorded(tmp_path, monkeypatch):
    (tmp_path / "nbkfp_rec_optional.py").write_text("X = 1\n")
    (tmp_path / "nbkfp_rec_user.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    status = tmp_path / "status.json"
    monkeypatch.setenv("NBCONVERT_KFP_STEP_STATUS", str(status))
    as_runtime = {"__name__": "nbconvert_kfp.runtime.report"}  # what the report module runs, as it would
    try:
        with Step("own") as step:
            exec("import nbkfp_rec_optional", as_runtime)
            step.run([(1, "import nbkfp_rec_user")])
    finally:
        for name in ("nbkfp_rec_optional", "nbkfp_rec_user"):
            sys.modules.pop(name, None)
    assert json.loads(status.read_text())["imported"] == {"nbkfp_rec_user": "__main__"}
