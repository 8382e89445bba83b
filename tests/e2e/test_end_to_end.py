"""End to end: notebook -> `jupyter nbconvert --to kfp` -> compiled YAML and `--local` runs.

All conversions, compilations and local pipeline runs are started together by the
module-scoped ``lab`` fixture (a small thread pool of subprocesses); each test waits for
the results it needs.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers import (EXAMPLES, JUPYTER, NOTEBOOKS, PYTHON, SHARED_TASK, build_notebook, nbclient_values, run, script_tasks, step_tasks)

TIMEOUT = 600

#: fixture notebook -> (source, pipeline name, {step: set of required parent steps})
FIXTURES = {
    "kale_v0_1_blocks": (NOTEBOOKS, "kale-v0-1-blocks", {
        "start": set(), "squares": {"start"}, "roots": {"start"}, "report": {"squares", "roots"}}),
    "kale_v2_steps": (NOTEBOOKS, "kale-two", {
        "load": set(), "scale": {"load"}, "shift": {"load"}, "combine": {"scale", "shift"}}),
    "magics": (NOTEBOOKS, "magics", {
        "timed": set(), "shell": {"timed"}, "capture": {"shell"}, "plain": {"capture"}}),
    "sklearn_fan": (NOTEBOOKS, "sklearn-fan", {
        "load": set(), "train_tree": {"load"}, "train_knn": {"load"}, "evaluate": {"train_tree", "train_knn"}}),
    "unicode_names": (NOTEBOOKS, "unicode-names", {
        "Train_2": set(), "kid-1": {"Train_2"}, "kid_1": {"Train_2"}}),
    "numpy_pandas_chain": (EXAMPLES, "numpy-pandas-chain", {
        "generate": set(), "clean": {"generate"}, "aggregate": {"clean"}, "report": {"aggregate"}}),
    "model_comparison": (EXAMPLES, "model-comparison", {
        "load_data": set(), "split": {"load_data"}, "train_logreg": {"split"}, "train-forest": {"split"},
        "train_SVM": {"split"}, "compare": {"train_logreg", "train-forest", "train_SVM"}}),
}

#: notebooks whose metrics must equal those of a top-to-bottom nbclient run
SAME_AS_NOTEBOOK = {
    "sklearn_fan": ["tree_acc", "knn_acc"],
    "model_comparison": ["logreg_acc", "forest_acc", "svm_acc", "best_acc"],
}

METRIC_LINE = re.compile(r"^\s*metric (\S+) = (\S+)\s*$", re.MULTILINE)
STARTED = re.compile(r"\[nbconvert-kfp\] step '([^']*)' started")
FINISHED = re.compile(r"\[nbconvert-kfp\] step '([^']*)' finished in")


# --- helpers -------------------------------------------------------------------------------


def metrics_of(output):
    """``metric NAME = VALUE`` lines that the script prints after a successful local run."""
    return {name: float(value) for name, value in METRIC_LINE.findall(output)}


def parameter_types(script):
    """``PARAMETER_TYPES`` of a generated script, as ``{name: type name}``."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PARAMETER_TYPES" for t in node.targets):
            return {ast.literal_eval(k): v.id if isinstance(v, ast.Name) else ast.literal_eval(v)
                    for k, v in zip(node.value.keys, node.value.values)}
    raise AssertionError(f"PARAMETER_TYPES not found in {script}")


@dataclass
class Run:
    """What happened to one notebook."""

    directory: Path
    script: Path
    convert: subprocess.CompletedProcess | None = None
    compile: subprocess.CompletedProcess | None = None
    local: subprocess.CompletedProcess | None = None
    extra: dict = field(default_factory=dict)

    @property
    def yaml_path(self):
        return self.script.with_suffix(".yaml")

    def check_converted(self):
        if self.convert is not None:
            assert self.convert.returncode == 0, self.convert.stdout
        assert self.script.is_file(), f"{self.script} was not written"


class Lab:
    """Starts every subprocess the module needs, in parallel; tests wait on the results."""

    def __init__(self, root: Path):
        self.root = root
        self.pool = ThreadPoolExecutor(max_workers=3)
        self.futures: dict[str, Future] = {}
        self.custom: dict[str, Run] = {}
        self.conversion_errors: dict[str, Exception] = {}

    def custom_script(self, name):
        if name in self.conversion_errors:
            raise self.conversion_errors[name]
        return self.custom[name].script

    def submit(self, key, func, *args, **kwargs):
        self.futures[key] = self.pool.submit(func, *args, **kwargs)

    def result(self, key):
        return self.futures[key].result()

    # fixture notebooks: the real CLI (conversions run in threads: not in-process), compile, run locally
    def fixture_job(self, stem, run_cwd=None, local_args=()):
        source_dir = FIXTURES[stem][0]
        directory = self.root / stem
        directory.mkdir()
        shutil.copy(source_dir / f"{stem}.ipynb", directory)
        result = Run(directory, directory / f"{stem}_pipeline.py")
        result.convert = run([JUPYTER, "nbconvert", "--to", "kfp", f"{stem}.ipynb"], cwd=directory)
        if result.convert.returncode != 0 or not result.script.is_file():
            return result
        result.compile = run([PYTHON, result.script], cwd=directory)
        result.local = run([PYTHON, result.script, "--local", "--verbose", *local_args], cwd=run_cwd or directory)
        return result

    def nbclient_job(self, stem, names):
        directory = self.root / f"nbclient_{stem}"
        directory.mkdir()
        shutil.copy(FIXTURES[stem][0] / f"{stem}.ipynb", directory)
        return nbclient_values(directory / f"{stem}.ipynb", names)

    # notebooks written by the tests: converted in-process (main thread), then run
    def convert_custom(self, name, cells):
        from nbconvert.exporters import get_exporter

        directory = self.root / name
        directory.mkdir()
        nb_path = directory / f"{name}.ipynb"
        nbformat.write(build_notebook(cells, markdown=True, dedent=True), nb_path)
        body, resources = get_exporter("kfp")().from_filename(str(nb_path))
        script = directory / f"{name}{resources['output_extension']}"
        script.write_text(body, encoding="utf-8")
        self.custom[name] = Run(directory, script)
        return self.custom[name]

    def local_job(self, name, *args, cwd=None):
        base = self.custom[name]
        return Run(base.directory, base.script,
                   local=run([PYTHON, base.script, "--local", "--verbose", *args], cwd=cwd or base.directory))


FAILING = [
    (None, "A pipeline whose second step divides by zero."),
    (["step:setup"], "a = 1"),
    (None, "The next cell fails on its second line."),
    (["step:explode", "prev:setup"], """
        b = a + 1
        ratio = b / 0
        print("NOT REACHED")
    """),
    (["step:after", "prev:explode"], "c = ratio"),
]

MUTATION = [
    (["imports"], "import pandas as pd"),
    (["step:make"], """
        df = pd.DataFrame({"x": [1, 2, 3]})
        items = [1, 2, 3]
    """),
    (["step:mutate", "prev:make"], """
        df["z"] = 1
        items.append(4)
    """),
    (["step:use", "prev:mutate"], """
        columns = ",".join(df.columns)
        z_sum = int(df["z"].sum())
        print("COLUMNS", columns)
        print("ITEMS", items)
    """),
    (["pipeline-metrics"], "z_sum"),
]

FUNCTION = [
    (["step:define"], """
        def _times(v, k):
            return v * k

        def triple(v):
            return _times(v, 3)

        base = 5
    """),
    (["step:middle", "prev:define"], "middle_value = base + 1"),
    (["step:call", "prev:middle"], "tripled = triple(middle_value)"),
    (["pipeline-metrics"], "tripled"),
]

CLASS_DEFINITION = """
    class Box:
        def __init__(self, v):
            self.v = v

        def doubled(self):
            return self.v * 2

    box = Box(21)
"""

CLASS_UNNAMED = [
    (["step:make"], CLASS_DEFINITION),
    (["step:use", "prev:make"], "box_value = box.doubled()"),
    (["pipeline-metrics"], "box_value"),
]

CLASS_NAMED = [
    (["step:make"], CLASS_DEFINITION),
    (["step:use", "prev:make"], """
        assert isinstance(box, Box)
        box_value = box.doubled()
    """),
    (["pipeline-metrics"], "box_value"),
]

LAMBDA = [
    (["step:make"], """
        offset = 100
        add_offset = lambda v: v + offset
    """),
    (["step:use", "prev:make"], "lambda_value = add_offset(1)"),
    (["pipeline-metrics"], "lambda_value"),
]

PARAMS = [
    (["pipeline-parameters"], """
        COUNT = 2
        RATE = 0.5
        LABEL = "ab"
        FLAG = False
        ITEMS = [1, 2, 3]
        OPTIONS = {"k": 10}
        WORDS = ["x", "y"]
        MAPPING = {"k": "v"}
    """),
    (["step:compute"], """
        score = COUNT * RATE + len(LABEL) + (100 if FLAG else 0) + sum(ITEMS) + OPTIONS["k"]
        print("TYPES", ",".join(type(v).__name__ for v in (COUNT, RATE, LABEL, FLAG, ITEMS, OPTIONS)))
        print("LABEL", repr(LABEL))
    """),
    (["pipeline-metrics"], "score"),
]

#: Steps named like Python builtins and like the names the generated script defines, handing data on;
#: variables named like the names a component body uses.
BUILTIN_NAMES = [
    (["pipeline-parameters"], "main = 2\nrequirements = 3"),
    (["step:print"], "step = 1\nbundle = 10"),
    (["step:str"], "sys = step + 1"),
    (["step:list"], "Step = sys + 1"),
    (["step:getattr"], "report = Step + 1"),
    (["step:exec"], "metrics = report + 1"),
    (["step:compile"], "executor_input = metrics + 1"),
    (["step:ValueError"], "x = executor_input + main"),
    (["step:dsl"], "x = x + requirements"),
    (["step:kfp"], "x = x + 1"),
    (["step:pipeline"], "x = x + 1"),
    (["step:main"], "total = x + bundle"),
    (["pipeline-metrics"], "total"),
]
BUILTIN_STEPS = ["print", "str", "list", "getattr", "exec", "compile", "ValueError", "dsl", "kfp", "pipeline",
                 "main"]

WORKDIR_PROBE = [
    (["imports"], "import os"),
    (["step:probe"], """
        with open("probe.txt", "w") as fh:
            fh.write(os.getcwd())
    """),
]

PARAMS_OVERRIDE = ["-p", "COUNT", "4", "-p", "RATE", "2.5", "-p", "LABEL", "hello", "-p", "FLAG", "true",
                   "-p", "ITEMS", "[5, 5]", "-p", "OPTIONS", '{"k": 1}']


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab = Lab(tmp_path_factory.mktemp("e2e"))
    elsewhere = lab.root / "elsewhere"
    elsewhere.mkdir()
    # slowest first
    lab.submit("model_comparison", lab.fixture_job, "model_comparison")
    lab.submit("sklearn_fan", lab.fixture_job, "sklearn_fan")
    for stem, names in SAME_AS_NOTEBOOK.items():
        lab.submit(f"nbclient:{stem}", lab.nbclient_job, stem, names)
    lab.submit("numpy_pandas_chain", lab.fixture_job, "numpy_pandas_chain", run_cwd=elsewhere)
    for stem in ("kale_v0_1_blocks", "kale_v2_steps", "magics", "unicode_names"):
        lab.submit(stem, lab.fixture_job, stem)

    for name, cells in [("failing", FAILING), ("mutation", MUTATION), ("function", FUNCTION),
                        ("class_unnamed", CLASS_UNNAMED), ("class_named", CLASS_NAMED), ("lambda", LAMBDA),
                        ("params", PARAMS), ("workdir_probe", WORKDIR_PROBE), ("builtin_names", BUILTIN_NAMES)]:
        try:
            lab.convert_custom(name, cells)
        except Exception as err:  # reported by the tests that need this notebook
            lab.conversion_errors[name] = err
    probe = lab.root / "probe"
    (probe / "wd").mkdir(parents=True)
    (probe / "cwd").mkdir()
    jobs = [(name, name, (), {}) for name in ("failing", "mutation", "function", "class_unnamed",
                                              "class_named", "lambda", "builtin_names")]
    jobs += [("params_default", "params", (), {}), ("params_override", "params", PARAMS_OVERRIDE, {}),
             ("workdir_probe", "workdir_probe",
              ("--workdir", probe / "wd", "--pipeline-root", probe / "root"), {"cwd": probe / "cwd"})]
    for key, name, args, kwargs in jobs:
        if name in lab.custom:
            lab.submit(key, lab.local_job, name, *args, **kwargs)
        else:
            failed = Future()
            failed.set_exception(lab.conversion_errors[name])
            lab.futures[key] = failed
    yield lab
    lab.pool.shutdown(wait=True, cancel_futures=True)


def assert_succeeded(result: Run, pipeline_name: str):
    assert result.local is not None, "the local run did not start"
    assert result.local.returncode == 0, result.local.stdout[-8000:]
    assert f"Pipeline {pipeline_name!r} succeeded" in result.local.stdout, result.local.stdout[-8000:]


# --- the fixture notebooks ------------------------------------------------------------------


@pytest.mark.parametrize("stem", list(FIXTURES))
def test_fixture_notebook_converts_with_the_cli(lab, stem):
    result = lab.result(stem)
    result.check_converted()
    assert "Writing" in result.convert.stdout
    compile(result.script.read_text(encoding="utf-8"), str(result.script), "exec")


@pytest.mark.parametrize("stem", list(FIXTURES))
def test_fixture_notebook_compiles_to_yaml(lab, stem):
    result = lab.result(stem)
    result.check_converted()
    assert result.compile.returncode == 0, result.compile.stdout
    assert f"Wrote {result.yaml_path}" in result.compile.stdout
    spec = yaml.safe_load(result.yaml_path.read_text(encoding="utf-8"))
    _, pipeline_name, edges = FIXTURES[stem]
    assert spec["pipelineInfo"]["name"] == pipeline_name
    assert len(spec["components"]) == len(edges) + 1  # and the shared-code step
    tasks = step_tasks(spec)
    assert len(tasks) == len(edges)
    assert all(SHARED_TASK in task["dependentTasks"] for task in tasks.values())
    step_names = {task: step for step, task in script_tasks(result.script).items()}  # task -> notebook step name
    assert set(step_names) == set(tasks)
    assert set(step_names.values()) == set(edges)
    task_of = {step: task for task, step in step_names.items()}
    for step, parents in edges.items():
        depends = set(tasks[task_of[step]].get("dependentTasks", []))
        assert {task_of[p] for p in parents} <= depends, (step, depends)
    assert len(spec["deploymentSpec"]["executors"]) == len(edges) + 1


@pytest.mark.parametrize("stem", list(FIXTURES))
def test_fixture_notebook_runs_locally(lab, stem):
    result = lab.result(stem)
    result.check_converted()
    _, pipeline_name, edges = FIXTURES[stem]
    assert_succeeded(result, pipeline_name)
    output = result.local.stdout
    assert set(STARTED.findall(output)) == set(edges)
    assert set(FINISHED.findall(output)) == set(edges)


def test_kale_v0_1_blocks_output(lab):
    result = lab.result("kale_v0_1_blocks")
    assert_succeeded(result, "kale-v0-1-blocks")
    sum_roots = round(sum(round(math.sqrt(n), 3) for n in range(1, 11)), 3)
    expected = json.dumps({"total": 55, "sum_squares": 385, "sum_roots": sum_roots}, sort_keys=True)
    assert expected in result.local.stdout
    assert "squares [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]" in result.local.stdout
    assert "this cell must not appear in the pipeline" not in result.local.stdout
    assert "this cell must not appear in the pipeline" not in result.script.read_text(encoding="utf-8")


def test_kale_v2_steps_output_and_metadata(lab):
    result = lab.result("kale_v2_steps")
    assert_succeeded(result, "kale-two")
    assert "scaled mean 54.0 shifted mean 14.0" in result.local.stdout
    spec = yaml.safe_load(result.yaml_path.read_text(encoding="utf-8"))
    assert spec["pipelineInfo"]["description"] == 'A "quoted" description\nwith a newline and unicode: café ☕'


def test_magics_output(lab):
    result = lab.result("magics")
    assert_succeeded(result, "magics")
    output = result.local.stdout
    assert re.search(r"^\s*hello\s*$", output, re.MULTILINE)
    assert f"result 226 captured {os.sep}" in output
    assert "this output is captured" not in output


def test_unicode_names_output_and_metrics(lab):
    result = lab.result("unicode_names")
    assert_succeeded(result, "unicode-names")
    greeting = "héllo \"world\"\n'ok' ✓"
    assert 'héllo "world"' in result.local.stdout
    assert "'ok' ✓" in result.local.stdout
    base = len(greeting) * 2
    assert metrics_of(result.local.stdout) == {"kid_dash": base * 2, "kid_under": base + 1}


# --- same results as the notebook run top to bottom -----------------------------------------


@pytest.mark.parametrize("stem", list(SAME_AS_NOTEBOOK))
def test_pipeline_metrics_equal_the_notebooks_values(lab, stem):
    notebook_values = lab.result(f"nbclient:{stem}")
    result = lab.result(stem)
    assert_succeeded(result, FIXTURES[stem][1])
    pipeline_values = metrics_of(result.local.stdout)
    assert set(pipeline_values) == set(SAME_AS_NOTEBOOK[stem])
    for name in SAME_AS_NOTEBOOK[stem]:
        assert pipeline_values[name] == pytest.approx(notebook_values[name], rel=1e-12, abs=1e-15), name


# --- relative paths, --workdir, --pipeline-root ----------------------------------------------


def test_relative_outputs_land_next_to_the_script_not_in_the_callers_cwd(lab):
    result = lab.result("numpy_pandas_chain")
    assert_succeeded(result, "numpy-pandas-chain")
    summary = result.directory / "outputs" / "summary.csv"
    assert summary.is_file()
    lines = summary.read_text(encoding="utf-8").splitlines()
    assert lines[0].split(",")[:2] == ["group", "rows"]
    assert sorted(line.split(",")[0] for line in lines[1:]) == ["east", "north", "south", "west"]
    assert sum(int(line.split(",")[1]) for line in lines[1:]) == 1000
    elsewhere = lab.root / "elsewhere"
    assert list(elsewhere.iterdir()) == [], "the run wrote into the caller's working directory"
    assert (result.directory / "local_outputs").is_dir()
    metrics = metrics_of(result.local.stdout)
    assert set(metrics) == {"n_imputed", "overall_mean_y"}
    assert metrics["n_imputed"] == int(metrics["n_imputed"]) > 0


def test_workdir_and_pipeline_root_options(lab):
    result = lab.result("workdir_probe")
    assert_succeeded(result, "workdir-probe")
    probe = lab.root / "probe"
    assert (probe / "wd" / "probe.txt").read_text() == str((probe / "wd").resolve())
    runs = [entry for entry in (probe / "root").iterdir() if entry.name != ".kfp_cache"]  # kfp.local's cache
    assert runs and all(r.name.startswith("workdir-probe") for r in runs)
    assert list((probe / "cwd").iterdir()) == []
    assert not (result.directory / "local_outputs").exists()
    assert not (result.directory / "probe.txt").exists()
    assert not (probe / "wd" / "local_outputs").exists()


# --- parameters --------------------------------------------------------------------------------


def test_parameter_defaults_and_types(lab):
    result = lab.result("params_default")
    assert_succeeded(result, "params")
    assert "TYPES int,float,str,bool,list,dict" in result.local.stdout
    assert metrics_of(result.local.stdout) == {"score": 2 * 0.5 + 2 + 0 + 6 + 10}
    # a list of ints and a dict of ints travel as Python literals, so they arrive as ints (KFP makes floats)
    assert parameter_types(result.script) == {"COUNT": "int", "RATE": "float", "LABEL": "str", "FLAG": "bool",
                                              "ITEMS": "literal", "OPTIONS": "literal", "WORDS": "list",
                                              "MAPPING": "dict"}


def test_parameter_overrides_change_the_results(lab):
    result = lab.result("params_override")
    assert_succeeded(result, "params")
    assert "TYPES int,float,str,bool,list,dict" in result.local.stdout
    assert "LABEL 'hello'" in result.local.stdout
    assert metrics_of(result.local.stdout) == {"score": 4 * 2.5 + 5 + 100 + 10 + 1}


def test_compile_with_output_path_and_parameter(lab, tmp_path):
    script = lab.custom_script("params")
    target = tmp_path / "custom" / "out.yaml"
    target.parent.mkdir()
    proc = run([PYTHON, script, "--output", target, "-p", "COUNT", "7", "-p", "LABEL", "zz"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert target.is_file()
    assert not script.with_suffix(".yaml").exists()
    spec = yaml.safe_load(target.read_text(encoding="utf-8"))
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {"COUNT", "RATE", "LABEL", "FLAG", "ITEMS", "OPTIONS", "WORDS", "MAPPING"}
    assert parameters["ITEMS"]["defaultValue"] == "[1, 2, 3]"  # a Python literal, read back exactly in the step
    assert parameters["COUNT"]["defaultValue"] == 7
    assert parameters["LABEL"]["defaultValue"] == "zz"
    assert parameters["RATE"]["defaultValue"] == 0.5


@pytest.mark.parametrize("args, name", [
    (["-p", "NOPE", "1"], "NOPE"),
    (["-p", "COUNT", "abc"], "COUNT"),
    (["-p", "RATE", "fast"], "RATE"),
    (["-p", "FLAG", "maybe"], "FLAG"),
    (["-p", "WORDS", '{"a": 1}'], "WORDS"),
    (["-p", "MAPPING", "[1, 2"], "MAPPING"),
    (["--local", "-p", "COUNT", "1.5"], "COUNT"),
])
def test_bad_parameter_exits_2_naming_it(lab, tmp_path, args, name):
    script = lab.custom_script("params")
    proc = run([PYTHON, script, *args], cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout
    error_lines = [line for line in proc.stdout.splitlines() if "error:" in line]
    assert error_lines, proc.stdout
    assert name in error_lines[-1]
    assert not any(tmp_path.iterdir())
    assert "Running pipeline" not in proc.stdout


# --- a failing step ----------------------------------------------------------------------------


def test_failing_step_exits_1_naming_the_step_and_the_cell(lab):
    result = lab.result("failing")
    assert result.local.returncode == 1, result.local.stdout[-8000:]
    output = result.local.stdout
    assert "Pipeline 'failing' failed: step 'explode' failed" in output
    assert "ZeroDivisionError" in output
    # cells numbered as JupyterLab shows them: the failing cell is the fourth
    assert 'File "<cell 4>", line 2' in output
    assert "(in notebook cell 4, line 2 of step 'explode')" in output
    assert "step 'setup' finished" in output
    assert "step 'explode' failed" in output
    assert "step 'after' started" not in output
    assert "NOT REACHED" not in output.replace('print("NOT REACHED")', "")


# --- data between steps --------------------------------------------------------------------------


def test_dataframe_mutated_in_place_arrives_mutated(lab):
    result = lab.result("mutation")
    assert_succeeded(result, "mutation")
    assert "COLUMNS x,z" in result.local.stdout
    assert metrics_of(result.local.stdout) == {"z_sum": 3.0}


def test_list_mutated_by_a_method_call_arrives_mutated(lab):
    result = lab.result("mutation")
    assert_succeeded(result, "mutation")
    assert "ITEMS [1, 2, 3, 4]" in result.local.stdout


def test_function_defined_in_one_step_works_in_a_descendant(lab):
    result = lab.result("function")
    assert_succeeded(result, "function")
    assert metrics_of(result.local.stdout) == {"tripled": 18.0}


def test_class_instance_passes_to_a_later_step(lab):
    result = lab.result("class_unnamed")
    assert_succeeded(result, "class-unnamed")
    assert metrics_of(result.local.stdout) == {"box_value": 42.0}


def test_class_instance_passes_to_a_later_step_that_names_the_class(lab):
    result = lab.result("class_named")
    assert_succeeded(result, "class-named")
    assert metrics_of(result.local.stdout) == {"box_value": 42.0}


def test_lambda_passes_between_steps(lab):
    result = lab.result("lambda")
    assert_succeeded(result, "lambda")
    assert metrics_of(result.local.stdout) == {"lambda_value": 101.0}
    formats = [json.loads(p.read_text()) for p in (result.directory / "local_outputs").rglob("executor_output.json")]
    assert "dill" in json.dumps(formats)


def test_steps_named_like_builtins_and_script_names_compile_and_run(lab, tmp_path):
    result = lab.result("builtin_names")
    compiled = run([PYTHON, result.script, "--output", tmp_path / "names.yaml"], cwd=result.directory)
    assert compiled.returncode == 0, compiled.stdout
    tasks = yaml.safe_load((tmp_path / "names.yaml").read_text(encoding="utf-8"))["root"]["dag"]["tasks"]
    display = {task.get("taskInfo", {}).get("name") for task in tasks.values()}
    assert set(BUILTIN_STEPS) <= display | set(tasks)
    assert_succeeded(result, "builtin-names")
    assert metrics_of(result.local.stdout) == {"total": 23.0}
    assert set(STARTED.findall(result.local.stdout)) >= set(BUILTIN_STEPS)


# --- the generated script does not need nbconvert_kfp ---------------------------------------------


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")


def test_generated_scripts_import_nbconvert_kfp_only_from_what_they_carry(lab):
    """Every function of a script that imports nbconvert_kfp first puts the archive it carries on sys.path."""
    assert not lab.conversion_errors, lab.conversion_errors
    scripts = [run_.script for run_ in lab.custom.values()]
    for stem in FIXTURES:
        result = lab.result(stem)
        result.check_converted()
        scripts.append(result.script)
    loaders = ("_script_tools()", "_step_runtime()", "sys.path.insert(0, bundle.path)")
    for script in scripts:
        text = script.read_text(encoding="utf-8")
        tree = ast.parse(text)
        imported = set(_imports(tree))
        third_party = {m.split(".")[0] for m in imported} - set(sys.stdlib_module_names)
        assert third_party <= {"kfp", "nbconvert_kfp"}, (script, imported)
        for function in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
            if any(m.split(".")[0] == "nbconvert_kfp" for m in _imports(function)):
                assert any(loader in ast.get_source_segment(text, function) for loader in loaders), \
                    (script, function.name)


SCRIPT_WITHOUT_PACKAGE = textwrap.dedent(r"""
    import importlib.util, runpy, sys

    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]  # the editable install's finder
    for name in [m for m in sys.modules if m.split(".")[0] == "nbconvert_kfp"]:
        del sys.modules[name]
    assert importlib.util.find_spec("nbconvert_kfp") is None, "nbconvert_kfp is importable"
    namespace = runpy.run_path(sys.argv[1], run_name="isolated")
    sys.exit(namespace["main"](["--output", sys.argv[2]]))
""")


def test_generated_script_compiles_where_nbconvert_kfp_is_not_installed(lab, tmp_path):
    script = lab.custom_script("lambda")
    output = tmp_path / "isolated.yaml"
    proc = run([PYTHON, "-c", SCRIPT_WITHOUT_PACKAGE, script, output], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert yaml.safe_load(output.read_text(encoding="utf-8"))["pipelineInfo"]["name"] == "lambda"


ISOLATED_PROBE = textwrap.dedent(r"""
    import importlib.util, json, os, sys, tempfile

    assert importlib.util.find_spec("nbconvert_kfp") is None, "nbconvert_kfp is importable"
    assert importlib.util.find_spec("kfp") is None, "kfp is importable"
    assert importlib.util.find_spec("dill") is None, "dill is importable"
    with open(sys.argv[1], encoding="utf-8") as fh:
        source = fh.read()
    namespace = {}
    exec(compile(source, "<_step_runtime>", "exec"), namespace)
    namespace["_step_runtime"]()
    from nbconvert_kfp.runtime.step import Step
    import nbconvert_kfp.marshal as marshal
    print("MARSHAL_FILE", marshal.__file__[len(marshal.__loader__.archive) + 1:].replace(os.sep, "/"))
    print("PACKAGE_IS_EMBEDDED", type(sys.modules["nbconvert_kfp"].__loader__).__name__ == "zipimporter")

    class Artifact:
        def __init__(self, path):
            self.path, self.metadata = path, {}

    with tempfile.TemporaryDirectory() as tmp:
        data_out = Artifact(os.path.join(tmp, "data_out"))
        with Step("produce") as step:
            step.run([(0, "\ndata = {'a': [1, 2], 'b': (3, 'x')}\nfunc = lambda v: v\n")])
            step.save({"data": data_out})
            try:
                step.save({"func": Artifact(os.path.join(tmp, "func_out"))})
            except marshal.MarshalError as err:
                print("LAMBDA_ERROR", "dill" in str(err))
        print("FILES", sorted(os.listdir(data_out.path)), data_out.metadata["format"])
        with Step("consume") as step:
            step.load({"data": data_out})
            step.run([(1, "\nresult = data['b'][1] * data['a'][1]\n")])
            print("RESULT", json.dumps(step.namespace["result"]))
""")


def _shipped_runtime(tmp_path, runtime):
    """The code KFP ships to a step for the runtime mode, as a file that defines ``_step_runtime()``."""
    from nbconvert_kfp.exporters import KFPExporter

    text, _ = KFPExporter(runtime=runtime).from_notebook_node(
        build_notebook(LAMBDA, markdown=True, dedent=True), {"metadata": {"name": "shipped"}})
    tree = ast.parse(text)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if runtime == "embedded":
        # exactly what KFP ships to a step: the function passed as the components' additional_funcs
        source = ast.get_source_segment(text, functions["_step_runtime"])
    else:
        # the shared-code step writes the archive to its output artifact; the steps put it on sys.path
        body = ast.unparse(ast.Module(body=functions["shared_code"].body[1:], type_ignores=[]))
        source = ("import os, sys, tempfile\n"
                  "class _Out:\n    path = os.path.join(tempfile.mkdtemp(), 'bundle')\n"
                  "def _step_runtime():\n    bundle = _Out()\n"
                  + textwrap.indent(body, "    ") + "\n    sys.path.insert(0, bundle.path)\n")
    path = tmp_path / "step_runtime.py"
    path.write_text(source, encoding="utf-8")
    return path


@pytest.mark.parametrize("runtime", ["embedded", "artifact"])
def test_shipped_step_runtime_works_without_site_packages(tmp_path, runtime):
    source_file = _shipped_runtime(tmp_path, runtime)
    proc = run([PYTHON, "-I", "-S", "-c", ISOLATED_PROBE, source_file], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert "MARSHAL_FILE nbconvert_kfp/runtime/marshal.py" in out
    assert "PACKAGE_IS_EMBEDDED True" in out
    assert "[nbconvert-kfp] step 'produce' finished" in out
    assert "FILES ['value.pkl'] pkl" in out
    assert "LAMBDA_ERROR True" in out
    assert 'RESULT "xx"' in out
