"""The generated script's command line (nbconvert_kfp.script.cli), tested as a module."""


import pytest
import yaml

from nbconvert_kfp.script import cli, parametervalue
from nbconvert_kfp.script.local import localrun


@pytest.mark.parametrize("kind, text, expected", [
    (int, "3", 3), ("int", "-12", -12), (float, "2.5", 2.5), ("float", "1e3", 1000.0), (str, " a b ", " a b "),
    (bool, "true", True), (bool, "YES", True), ("bool", "0", False), ("bool", "off", False),
    (list, "[1.5, 2.0]", [1.5, 2.0]), ("dict", '{"k": [1.0]}', {"k": [1.0]}),
])
def test_parse_value_converts_to_the_parameter_type(kind, text, expected):
    value = parametervalue.parse_value(kind, text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("kind, text, message", [
    (int, "2.5", "expected an integer, got '2.5'"), (float, "x", "expected a number, got 'x'"),
    (bool, "maybe", "expected true or false, got 'maybe'"), (list, '{"a": 1}', "expected a JSON list"),
    (dict, "[1]", "expected a JSON dict"), (list, "[1,", "expected a JSON list"), ("complex", "1", "unknown"),
])
def test_parse_value_rejects_what_does_not_fit(kind, text, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        parametervalue.parse_value(kind, text)


def _script(tmp_path, local_run=False):
    """A namespace shaped like a generated script's, around a one-step pipeline."""
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def add(a: int, b: float) -> float:
        return a + b

    @dsl.pipeline(name="tiny")
    def pipeline(a: int = 1, b: float = 2.0):
        add(a=a, b=b)

    return {"__file__": str(tmp_path / "tiny_pipeline.py"), "pipeline": pipeline, "PIPELINE_NAME": "tiny",
            "PIPELINE_DESCRIPTION": None, "EXPERIMENT": "Default", "PARAMETER_TYPES": {"a": int, "b": float},
            "LOCAL_RUN": local_run, "LOCAL_IGNORED": [], "PRELOAD_IMPORTS": []}


def test_arguments_default_output_next_to_the_script_and_typed_parameters(tmp_path):
    args = cli.parse_arguments(_script(tmp_path), ["-p", "a", "5", "-p", "b", "0.5"])
    assert args.output == tmp_path / "tiny_pipeline.yaml"
    assert args.arguments == {"a": 5, "b": 0.5}
    assert args.workdir == tmp_path


@pytest.mark.parametrize("argv, expected", [
    (["-p", "b", "-1e-3"], {"b": -0.001}), (["-p", "b", "-1E300", "-p", "a", "-7"], {"b": -1e300, "a": -7}),
    (["--parameter", "b", "-.5e1", "--local"], {"b": -5.0}), (["--param", "a", "-3"], {"a": -3}),
])
def test_a_negative_value_in_any_notation_is_a_value_not_an_option(tmp_path, argv, expected):
    assert cli.parse_arguments(_script(tmp_path), argv).arguments == expected


@pytest.mark.parametrize("argv, message", [
    (["--local", "--run"], "--local runs on this machine"),
    (["-p", "a"], "argument -p/--parameter: expected 2 arguments"),
    (["-p", "a", "-x"], "parameter a: expected an integer, got '-x'"),
    (["-p", "b", "--local"], "parameter b: expected a number, got '--local'"),
    (["--host", "https://kfp.example.com"], "--host: only with --upload or --run"),
    (["-p", "c", "1"], "unknown parameter 'c'; known: a, b"),
    (["-p", "a", "one"], "parameter a: expected an integer, got 'one'"),
    (["--upload", "--wait"], "--wait: only with --run"),
    (["--run-name", "x"], "--run-name: only with --run"),
    (["--no-cache"], "--no-cache: only with --local, --upload or --run"),
    (["--run", "--timeout", "5m"], "--timeout: only with --wait"),
    (["--run", "--wait", "--timeout", "soon"], "expected seconds or a duration such as 30m or 2h, got 'soon'"),
    (["--run", "--wait", "--interval", "0"], "expected a positive duration, got '0'"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as caught:
        cli.parse_arguments(_script(tmp_path), argv)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, seconds", [("90", 90), ("1.5", 1.5), ("30s", 30), ("10m", 600), ("2h", 7200),
                                           ("1d", 86400)])
def test_durations_read_as_kfp_users_write_them(text, seconds):
    assert cli.duration_seconds(text) == seconds


def test_main_compiles_with_parameter_overrides(tmp_path, capsys):
    output = tmp_path / "out.yaml"
    assert cli.main(_script(tmp_path), ["--output", str(output), "-p", "a", "7"]) == 0
    spec = yaml.safe_load(output.read_text(encoding="utf-8"))
    assert spec["pipelineInfo"]["name"] == "tiny"
    assert spec["root"]["inputDefinitions"]["parameters"]["a"]["defaultValue"] == 7
    assert f"Wrote {output}" in capsys.readouterr().out


@pytest.mark.parametrize("name, marker", [("p.svg", "<svg"), ("p.mmd", "flowchart TD"), ("p.md", "```mermaid")])
def test_main_draws_the_dag_without_compiling(tmp_path, name, marker):
    assert cli.main(_script(tmp_path), ["--dag", str(tmp_path / name)]) == 0
    assert marker in (tmp_path / name).read_text(encoding="utf-8")
    assert not (tmp_path / "tiny_pipeline.yaml").exists()


def test_a_local_run_of_a_script_imported_for_the_cluster_is_refused(tmp_path, capsys):
    """Steps defined for a cluster would pip-install into this environment: the run stops first."""
    assert cli.main(_script(tmp_path, local_run=False), ["--local"]) == 2
    assert localrun.LOCAL_RUN_ENV in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--step", "a"], ["--verbose"], ["--cold-start"]])
def test_local_run_options_need_local(tmp_path, capsys, flag):
    with pytest.raises(SystemExit) as exit_:
        cli.main(_script(tmp_path), flag)
    assert exit_.value.code == 2
    assert f"{flag[0]}: only with --local" in capsys.readouterr().err


def test_main_needs_a_generated_script():
    with pytest.raises(TypeError, match="does not define"):
        cli.main({"pipeline": None})
