"""One parameter value parser and one check for a compiled pipeline: the generated script's ``-p``, the
``nbconvert-kfp`` command's ``-p`` and ``-f`` and the server API's ``parameters`` give every value the same
verdict, non-finite numbers nested in a list or dict included."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from nbconvert_kfp.command import notebook
from nbconvert_kfp.command.subcommand import CommandError
from nbconvert_kfp.script import cli, parametervalue
from nbconvert_kfp.script.parametervalue import EXACT_INT

TYPES = {"rate": float, "count": int, "sizes": list, "options": dict}
NAMES = {"float": "rate", "int": "count", "list": "sizes", "dict": "options"}

#: (type, text, why a compiled pipeline cannot hold it)
HOSTILE = [
    ("float", "nan", "nan cannot go into a compiled KFP pipeline"),
    ("float", "inf", "inf cannot go into a compiled KFP pipeline"),
    ("float", "Infinity", "inf cannot go into a compiled KFP pipeline"),
    ("float", "1" + "0" * 400, "inf cannot go into a compiled KFP pipeline"),
    ("list", "[0.5, NaN]", "nan inside the list cannot go into a compiled KFP pipeline"),
    ("list", "[[0.5], [Infinity]]", "inf inside the list cannot go into a compiled KFP pipeline"),
    ("dict", '{"a": NaN}', "nan inside the dict cannot go into a compiled KFP pipeline"),
    ("dict", '{"a": {"b": [-Infinity]}}', "-inf inside the dict cannot go into a compiled KFP pipeline"),
    ("int", str(EXACT_INT + 1), "beyond 2**53"),
    ("int", "1" + "0" * 400, "beyond 2**53"),
    ("list", "[0.5, 3]", "whole number 3 inside a list"),
]
#: (type, text): values a compiled pipeline holds as they are.
FINE = [("float", "0.5"), ("float", "-0.5"), ("float", "1e300"), ("int", str(EXACT_INT)), ("list", "[0.5, [1.5], null, \"a\"]"),
        ("dict", '{"a": {"b": [2.5]}, "c": true}')]


def _script(tmp_path) -> dict:
    """The names of a generated script that its command line reads."""
    return {"__file__": str(tmp_path / "p_pipeline.py"), "PIPELINE_NAME": "p", "EXPERIMENT": "Default",
            "PARAMETER_TYPES": TYPES}


def _script_verdict(tmp_path, capsys, kind: str, text: str, *options: str) -> str | None:
    """None when the generated script's -p takes the value, else what it says."""
    try:
        cli.parse_arguments(_script(tmp_path), ["-p", NAMES[kind], text, *options])
    except SystemExit:
        return capsys.readouterr().err
    return None


def _command_verdict(kind: str, text: str) -> str | None:
    """None when ``nbconvert-kfp compile -p`` takes the value, else what it says."""
    args = argparse.Namespace(parameters_file=None, parameter=[(NAMES[kind], text)])
    try:
        notebook.compilable(notebook.arguments(args, {"PARAMETER_TYPES": TYPES}), TYPES)
    except CommandError as error:
        return str(error)
    return None


def _server_verdict(kind: str, value) -> str | None:
    """None when the server API's ``parameters`` takes the value, else what it says."""
    pytest.importorskip("jupyter_server")
    from nbconvert_kfp.serverextension import RequestError, _coerce

    try:
        _coerce(NAMES[kind], kind, value)
    except RequestError as error:
        return str(error)
    return None


@pytest.mark.parametrize("kind, text, reason", HOSTILE)
def test_every_front_end_refuses_a_value_a_compiled_pipeline_cannot_hold_for_the_same_reason(
        tmp_path, capsys, kind, text, reason):
    verdicts = {"script": _script_verdict(tmp_path, capsys, kind, text), "command": _command_verdict(kind, text),
                "server": _server_verdict(kind, text)}
    assert all(verdict is not None and reason in verdict for verdict in verdicts.values()), verdicts
    assert all(NAMES[kind] in verdict for verdict in verdicts.values()), verdicts
    with pytest.raises(ValueError, match=re.escape(reason)):
        parametervalue.compiled_value(kind, _raw(kind, text))


def _raw(kind: str, text: str):
    """The value the text stands for, unchecked."""
    return json.loads(text) if kind in ("list", "dict") else int(text) if kind == "int" else float(text)


@pytest.mark.parametrize("kind, text", FINE)
def test_every_front_end_takes_a_value_a_compiled_pipeline_holds(tmp_path, capsys, kind, text):
    assert _script_verdict(tmp_path, capsys, kind, text) is None
    assert _command_verdict(kind, text) is None
    assert _server_verdict(kind, text) is None


@pytest.mark.parametrize("kind, value", [("float", float("nan")), ("list", [0.5, float("inf")]),
                                         ("dict", {"a": [float("-inf")]}), ("int", 2 ** 64), ("float", 10 ** 400)])
def test_the_server_refuses_the_same_values_given_as_json_values(kind, value):
    verdict = _server_verdict(kind, value)
    assert verdict is not None and verdict.startswith(f"parameter '{NAMES[kind]}': "), verdict


def test_a_local_run_of_the_script_still_takes_non_finite_numbers(tmp_path, capsys):
    assert _script_verdict(tmp_path, capsys, "float", "nan", "--local") is None
    assert _script_verdict(tmp_path, capsys, "list", "[0.5, NaN]", "--local") is None
    assert "a --local run takes it" in _script_verdict(tmp_path, capsys, "list", "[0.5, NaN]")
