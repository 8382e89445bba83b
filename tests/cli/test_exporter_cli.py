"""The exporter through `jupyter nbconvert` and the compiled script: the output file, hostile text, step names."""

from __future__ import annotations

import ast
import shutil

from nbconvert_kfp.codegen.identifier import kfp_name
from nbconvert_kfp.exporters import KFPExporter

from helpers import NOTEBOOKS, script_constant, step_tasks


def string_constants(script):
    return {node.value for node in ast.walk(ast.parse(script))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def strip_header_comments(text):
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("components:"))
    return "".join(lines[start:])


HOSTILE = ('He said "hi" & \'bye\'; \'\'\' and """ inside, a \\ backslash, \\n not a newline, '
           '\\\\ two,\nreal newline\ttab, unicode café ☕ 𝔘 \u00e9\u0301 end\\')


HOSTILE_SOURCE = (
    "a = \"'''\"\n"
    "b = '\"\"\"'\n"
    "c = \"\\\\ \\n \\t\"\n"
    "d = r\"\\d+\\w\"\n"
    "e = '''x\"\"\"y'''\n"
    "print(a, b, c, d, e, GREETING)\n"
)


def test_cli_writes_stem_pipeline_py_that_compiles(tmp_path, run_nbconvert, run_script_compile):
    source = NOTEBOOKS / "sklearn_fan.ipynb"
    path = tmp_path / "sklearn_fan.ipynb"
    shutil.copy(source, path)
    other_templates = tmp_path / "my_templates"
    other_templates.mkdir()
    result = run_nbconvert(path, f"--TemplateExporter.extra_template_basedirs={other_templates}")
    assert result.returncode == 0, result.stderr
    script_path = tmp_path / "sklearn_fan_pipeline.py"
    assert script_path.is_file(), list(tmp_path.iterdir())
    ir = run_script_compile(script_path)
    assert ir["pipelineInfo"]["name"] == "sklearn-fan"
    assert len(step_tasks(ir)) == 4


def test_hostile_text_survives_into_script_and_ir(tmp_path, make_nb, run_script_compile):
    ast.parse(HOSTILE_SOURCE)
    nb = make_nb([
        (["pipeline-parameters"], f"GREETING = {HOSTILE!r}\nTIMES = 2"),
        (["step:talk"], HOSTILE_SOURCE),
        (["step:after", "prev:talk"], "print(a + b)"),
    ], metadata={"kubeflow_notebook": {"pipeline_description": HOSTILE, "pipeline_name": "hostile"}})
    script, resources = KFPExporter().from_notebook_node(nb, {"metadata": {"name": "hostile"}})
    compile(script, "hostile_pipeline.py", "exec")
    assert resources["kfp"]["parameters"][0]["default"] == HOSTILE
    assert script_constant(script, "PIPELINE_DESCRIPTION") == HOSTILE
    assert "\n" + HOSTILE_SOURCE in string_constants(script)

    script_path = tmp_path / "hostile_pipeline.py"
    script_path.write_text(script, encoding="utf-8")
    yaml_path = script_path.with_suffix(".yaml")
    import yaml

    try:
        ir = run_script_compile(script_path)
    except yaml.YAMLError:
        # pinpoint: is the body right and only the header comment broken?
        body = yaml.safe_load(strip_header_comments(yaml_path.read_text(encoding="utf-8")))
        assert body["root"]["inputDefinitions"]["parameters"]["GREETING"]["defaultValue"] == HOSTILE
        raise
    assert ir["pipelineInfo"]["name"] == "hostile"
    assert ir["pipelineInfo"]["description"] == HOSTILE
    assert ir["root"]["inputDefinitions"]["parameters"]["GREETING"]["defaultValue"] == HOSTILE


def test_step_names_get_distinct_identifiers_and_display_names(tmp_path, make_nb, run_script_compile):
    nb = make_nb([
        (["pipeline-parameters"], "REPEAT = 2"),
        (["step:Train_2"], "base = 3 * REPEAT"),
        (["step:kid-1", "prev:Train_2"], "kid_dash = base * 2"),
        (["step:kid_1", "prev:Train_2"], "kid_under = base + 1"),
    ])
    script, resources = KFPExporter().from_notebook_node(nb, {"metadata": {"name": "names"}})
    steps = resources["kfp"]["steps"]
    functions = [s["component"]["function"] for s in steps]
    assert len({f.lower() for f in functions}) == 3
    component_names = [kfp_name(f) for f in functions]
    assert len(set(component_names)) == 3

    script_path = tmp_path / "names_pipeline.py"
    script_path.write_text(script, encoding="utf-8")
    ir = run_script_compile(script_path)
    assert len(ir["components"]) == 4  # and the shared-code step
    tasks = step_tasks(ir)
    assert len(tasks) == 3
    assert {t["taskInfo"]["name"] for t in tasks.values()} == {"Train_2", "kid-1", "kid_1"}
