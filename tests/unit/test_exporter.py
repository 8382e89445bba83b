"""The exporter: registration, output name, configuration, pipeline settings, generated script."""

from __future__ import annotations

import ast
import re
import sys

import nbformat
import pytest
from nbconvert.exporters import get_export_names, get_exporter
from traitlets.config import Config

from helpers import EXAMPLES, NOTEBOOKS, script_constant
from nbconvert_kfp.errors import PipelineGraphError
from nbconvert_kfp.exporters import KFPExporter

ALL_NOTEBOOKS = sorted([*NOTEBOOKS.glob("*.ipynb"), *EXAMPLES.glob("*.ipynb")])
KFP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")

SIMPLE = [
    (["imports"], "import math"),
    (["pipeline-parameters"], "SCALE = 2"),
    (["step:load"], "values = [1, 2, 3]"),
    (["step:double", "prev:load"], "doubled = [v * SCALE for v in values]"),
    (["step:report", "prev:double"], "total = math.fsum(doubled)\nprint(total)"),
]






# --- registration and output ------------------------------------------------------------------

def test_exporter_is_registered_as_kfp():
    assert "kfp" in get_export_names()
    assert get_exporter("kfp") is KFPExporter


def test_output_extension_is_pipeline_py(convert, make_nb):
    _, resources = convert(make_nb(SIMPLE))
    assert resources["output_extension"] == "_pipeline.py"


def test_script_suffix_is_configurable(make_nb):
    exporter = KFPExporter(config=Config({"KFPExporter": {"script_suffix": "_kfp.py"}}))
    _, resources = exporter.from_notebook_node(make_nb(SIMPLE), {"metadata": {"name": "nb"}})
    assert resources["output_extension"] == "_kfp.py"



# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize("section", ["TemplateExporter", "KFPExporter", "Exporter"])
def test_template_found_with_user_extra_template_basedirs(tmp_path, make_nb, section):
    config = Config({section: {"extra_template_basedirs": [str(tmp_path)]}})
    script, resources = KFPExporter(config=config).from_notebook_node(make_nb(SIMPLE),
                                                                      {"metadata": {"name": "nb"}})
    assert "@dsl.pipeline" in script
    assert [s["name"] for s in resources["kfp"]["steps"]] == ["load", "double", "report"]


def test_tag_parser_config_changes_behaviour_and_keeps_it_enabled(make_nb):
    nb = make_nb([
        (["step:a"], "x = 1"),
        (["ignore-me"], "ignored_marker_value = 2"),
        (["step:b"], "y = x + 1"),
    ])
    exporter = KFPExporter(config=Config({"TagParser": {"skip_tags": ["ignore-me"]}}))
    script, resources = exporter.from_notebook_node(nb, {"metadata": {"name": "nb"}})
    steps = {s["name"]: s for s in resources["kfp"]["steps"]}
    assert list(steps) == ["a", "b"]
    assert [c["index"] for c in steps["a"]["cells"]] == [0]
    assert steps["b"]["input_sources"] == {"x": "a"}
    assert "ignored_marker_value" not in script
    assert "@dsl.pipeline" in script


def test_dependency_analyzer_config_is_applied(make_nb):
    nb = make_nb([(["step:a"], "x = 1"), (["step:b"], "print(x)")])
    exporter = KFPExporter(config=Config({"DependencyAnalyzer": {"infer_dependencies": False}}))
    with pytest.raises(PipelineGraphError) as info:
        exporter.from_notebook_node(nb, {"metadata": {"name": "nb"}})
    assert info.value.cell_index == 1


def test_marshal_injector_config_is_applied(make_nb):
    exporter = KFPExporter(config=Config({"MarshalInjector": {"output_suffix": "_artifact"}}))
    script, _ = exporter.from_notebook_node(make_nb(SIMPLE), {"metadata": {"name": "nb"}})
    assert "values_artifact: Output[Artifact]" in script


# --- pipeline settings: traits > notebook metadata > defaults ---------------------------------

def settings(make_nb, metadata=None, name="my_nb", **traits):
    nb = make_nb(SIMPLE, metadata={"kubeflow_notebook": metadata} if metadata is not None else None)
    script, resources = KFPExporter(**traits).from_notebook_node(nb, {"metadata": {"name": name}})
    return script, resources["kfp"]["pipeline"]


def test_defaults(make_nb):
    script, pipeline = settings(make_nb, name="simple")
    assert pipeline["name"] == "simple"
    assert not pipeline["description"]
    assert pipeline["base_image"] == f"python:{sys.version_info.major}.{sys.version_info.minor}"
    assert pipeline["experiment"] == "Default"
    assert script_constant(script, "PIPELINE_NAME") == "simple"
    assert script_constant(script, "BASE_IMAGE") == pipeline["base_image"]


def test_default_name_from_file_name_is_made_valid(make_nb):
    _, pipeline = settings(make_nb, name="My_Notebook v2")
    assert KFP_NAME.match(pipeline["name"])
    assert pipeline["name"] == "my-notebook-v2"


def test_kale_1_metadata(make_nb):
    script, pipeline = settings(make_nb, {
        "pipeline_name": "meta-name", "pipeline_description": "meta description",
        "docker_image": "registry/img:1", "experiment": {"name": "exp-one"},
    })
    assert pipeline["name"] == "meta-name"
    assert pipeline["description"] == "meta description"
    assert pipeline["base_image"] == "registry/img:1"
    assert pipeline["experiment"] == "exp-one"
    assert script_constant(script, "PIPELINE_NAME") == "meta-name"
    assert script_constant(script, "PIPELINE_DESCRIPTION") == "meta description"
    assert script_constant(script, "BASE_IMAGE") == "registry/img:1"
    assert script_constant(script, "EXPERIMENT") == "exp-one"


def test_kale_metadata_experiment_name_and_base_image(make_nb):
    _, pipeline = settings(make_nb, {"experiment_name": "exp-two", "base_image": "img:2"})
    assert pipeline["experiment"] == "exp-two"
    assert pipeline["base_image"] == "img:2"
    assert pipeline["name"] == "my-nb"


def test_kale_2_base_image_wins_over_docker_image(make_nb):
    _, pipeline = settings(make_nb, {"base_image": "img:new", "docker_image": "img:old"})
    assert pipeline["base_image"] == "img:new"


META = {"pipeline_name": "meta-name", "pipeline_description": "meta description",
        "base_image": "img:meta", "experiment_name": "exp-meta"}
TRAITS = {"pipeline_name": "trait-name", "pipeline_description": "trait description",
          "base_image": "img:trait", "experiment": "exp-trait"}


def test_traits_override_metadata(make_nb):
    script, pipeline = settings(make_nb, META, **TRAITS)
    assert pipeline["name"] == "trait-name"
    assert pipeline["description"] == "trait description"
    assert pipeline["base_image"] == "img:trait"
    assert pipeline["experiment"] == "exp-trait"
    assert script_constant(script, "EXPERIMENT") == "exp-trait"


def test_config_traits_override_metadata(make_nb):
    nb = make_nb(SIMPLE, metadata={"kubeflow_notebook": META})
    exporter = KFPExporter(config=Config({"KFPExporter": TRAITS}))
    _, resources = exporter.from_notebook_node(nb, {"metadata": {"name": "nb"}})
    pipeline = resources["kfp"]["pipeline"]
    assert (pipeline["name"], pipeline["description"], pipeline["base_image"], pipeline["experiment"]) == (
        "trait-name", "trait description", "img:trait", "exp-trait")


@pytest.mark.parametrize("where", ["trait", "metadata"])
def test_invalid_pipeline_name_is_made_valid(make_nb, where):
    if where == "trait":
        script, pipeline = settings(make_nb, pipeline_name="My Pipeline!")
    else:
        script, pipeline = settings(make_nb, {"pipeline_name": "My Pipeline!"})
    assert KFP_NAME.match(pipeline["name"])
    assert pipeline["name"] == "my-pipeline"
    assert script_constant(script, "PIPELINE_NAME") == "my-pipeline"


# --- the generated script -----------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_generated_script_is_valid_python(convert, path):
    nb = nbformat.read(path, as_version=4)
    script, resources = convert(nb, name=path.stem)
    compile(script, f"{path.stem}_pipeline.py", "exec")
    assert KFP_NAME.match(resources["kfp"]["pipeline"]["name"])
    for step in resources["kfp"]["steps"]:
        assert f"def {step['component']['function']}(" in script


def test_reserved_names_do_not_clash(convert, make_nb):
    nb = make_nb([
        (["pipeline-parameters"], "json = 1\nmain = 'm'\nclass_ = 2.0"),
        (["step:pipeline"], "x = json + 1"),
        (["step:main", "prev:pipeline"], "y = x * 2\nprint(main)"),
        (["step:dsl", "prev:main"], "print(y, class_)"),
        (["step:class", "prev:dsl"], "print('k')"),
    ])
    script, resources = convert(nb)
    compile(script, "x", "exec")
    tree = ast.parse(script)
    top_level = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert len(top_level) == len(set(top_level))
    assert top_level.count("pipeline") == 1 and top_level.count("main") == 1
    functions = [s["component"]["function"] for s in resources["kfp"]["steps"]]
    assert not {"pipeline", "main", "dsl", "class", "json"} & set(functions)
    assert all(f.isidentifier() for f in functions)





def test_markdown_cells_travel_to_their_step_as_safe_html_only_with_reports(convert, make_nb):
    nb = make_nb([
        (None, "# Intro <b onclick=x>bold</b>"),
        ("step:a", "x = 1"),
        (None, "## Train\n- [go](javascript:alert(1)) and [docs](https://example.org/a?b=1&c=2)\n- `<i>`"),
        (["step:b", "prev:a"], "y = x + 1"),
        (None, "trailing note"),
    ], markdown=True)
    script, _ = convert(nb)
    calls = re.findall(r"step\.markdown\(\[\((\d+), r?'''\n(.*?)'''\)\]\)", script, re.DOTALL)
    assert calls == [
        ("1", "<h1>Intro &lt;b onclick=x&gt;bold&lt;/b&gt;</h1>\n"),
        ("3", '<h2>Train</h2>\n<ul><li>[go](javascript:alert(1)) and '
              '<a href="https://example.org/a?b=1&amp;c=2">docs</a></li><li><code>&lt;i&gt;</code></li></ul>\n'),
    ]  # the note after the last code cell belongs to no step
    quiet, _ = convert(nb, step_reports=False)
    assert "step.markdown(" not in quiet  # no report, nothing to show it in
