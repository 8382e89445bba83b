"""Hyperparameter tuning from Kale's ``kubeflow_notebook.katib_metadata``: the search checked at conversion,
``--tune`` running its trials as local runs of the generated script, and the Katib Experiment for a
cluster checked against Katib's own API models and its admission webhook's rules."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from helpers import EXAMPLES, JUPYTER, PYTHON, VENV_BIN, build_notebook, run, script_constant
from nbconvert_kfp.errors import NotebookError
from nbconvert_kfp.exporters import KFPExporter
from nbconvert_kfp.script.tuning import katib, search as algorithms, tuner
from nbconvert_kfp.script.tuning.searchspace import Search

CELLS = [
    (["imports"], "import math"),
    (["pipeline-parameters"], "LR = 0.1\nDEPTH = 3\nKIND = 'gini'\nFLAG = True"),
    (["step:train"], "score = LR * DEPTH\nloss_value = 1 - score"),
    (["pipeline-metrics"], "print(score)\nprint(loss_value)"),
]
#: A search over the parameters of CELLS, as Kale's panel writes it (numbers as strings).
KATIB = {
    "algorithm": {"algorithmName": "random"},
    "maxFailedTrialCount": 2, "maxTrialCount": 6, "parallelTrialCount": 2,
    "objective": {"type": "maximize", "objectiveMetricName": "score", "goal": 0.9},
    "parameters": [
        {"name": "LR", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "0.3"}},
        {"name": "DEPTH", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "5", "step": "2"}},
        {"name": "KIND", "parameterType": "categorical", "feasibleSpace": {"list": ["gini", "entropy"]}},
    ],
}
#: The search in Kale's own xgboost serving example (katib_run true there): a grid whose algorithmSettings
#: still hold the Bayesian optimization settings of Kale's panel, which Katib's grid service refuses.
KALE_IRIS = {
    "algorithm": {"algorithmName": "grid", "algorithmSettings": [
        {"name": "random_state", "value": "10"}, {"name": "acq_optimizer", "value": "auto"},
        {"name": "acq_func", "value": "gp_hedge"}, {"name": "base_estimator", "value": "GP"}]},
    "maxFailedTrialCount": 3, "maxTrialCount": 15,
    "objective": {"additionalMetricNames": ["precision", "recall", "f1"], "goal": 1,
                  "objectiveMetricName": "accuracy", "type": "maximize"},
    "parallelTrialCount": 3,
    "parameters": [
        {"feasibleSpace": {"max": "0.3", "min": "0.1", "step": "0.1"}, "name": "ETA", "parameterType": "double"},
        {"feasibleSpace": {"max": "6", "min": "2", "step": "1"}, "name": "MAX_DEPTH", "parameterType": "int"},
        {"feasibleSpace": {"list": ["multi:softprob", "multi:softmax"]}, "name": "OBJECTIVE",
         "parameterType": "categorical"},
        {"feasibleSpace": {"max": "100", "min": "20", "step": "10"}, "name": "STEPS", "parameterType": "int"}],
}
KALE_IRIS_CELLS = [
    (["pipeline-parameters"], 'ETA = .3\nMAX_DEPTH = 3\nOBJECTIVE = "multi:softprob"\nSTEPS = 20'),
    (["step:train"], "accuracy = precision = recall = f1 = ETA * MAX_DEPTH / STEPS"),
    (["pipeline-metrics"], "print(precision)\nprint(recall)\nprint(f1)\nprint(accuracy)"),
]


def metadata(katib_metadata, run=True):
    return {"kubeflow_notebook": {"katib_run": run, "katib_metadata": katib_metadata}}


def convert(cells, katib_metadata, run=True):
    nb = build_notebook(cells, metadata=metadata(katib_metadata, run))
    return KFPExporter().from_notebook_node(nb, {"metadata": {"name": "tune_nb"}})


def changed(path: str, value):
    """KATIB with the entry at ``path`` (dotted, list indexes as numbers) set to ``value`` (None deletes it)."""
    data = json.loads(json.dumps(KATIB))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    target = data
    for part in parents:
        target = target[part]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return data


# --- the search at conversion ----------------------------------------------------------------------------

def test_kales_own_katib_metadata_becomes_the_scripts_search(caplog):
    with caplog.at_level(logging.INFO):
        script, resources = convert(KALE_IRIS_CELLS, KALE_IRIS)
    search = Search.from_data(script_constant(script, "TUNING"))
    assert resources["kfp"]["tuning"] == search.to_data()
    assert [(p.name, p.type) for p in search.parameters] == [
        ("ETA", "double"), ("MAX_DEPTH", "int"), ("OBJECTIVE", "categorical"), ("STEPS", "int")]
    assert search.parameters[2].values == ("multi:softprob", "multi:softmax")
    assert (search.objective.metric, search.objective.type, search.objective.goal) == ("accuracy", "maximize", 1.0)
    assert [m for m, _ in search.objective.additional] == ["precision", "recall", "f1"]
    assert (search.algorithm, search.max_trials, search.parallel, search.max_failed) == ("grid", 15, 3, 3)
    # Katib's grid service takes only random_state: the panel's leftovers are dropped, each with a warning.
    assert search.settings == (("random_state", "10"),)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for setting in ("acq_optimizer", "acq_func", "base_estimator"):
        assert any("algorithmSettings" in w and repr(setting) in w for w in warnings), (setting, warnings)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("--tune" in line and "katib_metadata" in line for line in info), info
    assert not any("recognised but not applied" in w for w in warnings), warnings


def test_kale_metric_names_with_dashes_mean_the_variables_with_underscores():
    script, _ = convert(CELLS, changed("objective.objectiveMetricName", "loss-value"))
    objective = script_constant(script, "TUNING")["objective"]
    assert (objective["metric"], objective["variable"]) == ("loss-value", "loss_value")


@pytest.mark.parametrize("path, value, key, words", [
    ("parameters.0.name", "LRATE", "parameters[0].name", "'LRATE' is not a pipeline parameter (parameters: LR, DEPTH"),
    ("objective.objectiveMetricName", "accuracy", "objective.objectiveMetricName",
     "'accuracy' is not a pipeline-metrics variable (metrics: score, loss_value)"),
    ("objective.type", "maximise", "objective.type", "'maximise' is not maximize or minimize"),
    ("parameters.0.feasibleSpace.min", "0.5", "parameters[0].feasibleSpace", "min 0.5 is above max 0.3"),
    ("parameters.1.feasibleSpace.max", "5.5", "parameters[1].feasibleSpace.max", "expected an integer"),
    ("parameters.1.feasibleSpace.step", "0", "parameters[1].feasibleSpace.step", "must be above 0"),
    ("parameters.0.feasibleSpace.max", None, "parameters[0].feasibleSpace.max", "missing"),
    ("parameters.0.feasibleSpace", {"list": ["0.1"]}, "parameters[0].feasibleSpace.list", "not a list"),
    ("parameters.2.feasibleSpace.list", [], "parameters[2].feasibleSpace.list", "non-empty list"),
    ("parameters.0.parameterType", "float", "parameters[0].parameterType", "not one of int, double"),
    ("parameters.1.parameterType", "double", "parameters[1].parameterType",
     "double values do not fit pipeline parameter 'DEPTH', which is int"),
    ("parameters.2.name", "DEPTH", "parameters[2].feasibleSpace.list[0]", "'gini' does not fit pipeline parameter"),
    ("parameters.0.feasibleSpace.distribution", "gaussian", "parameters[0].feasibleSpace.distribution", "not one of"),
    ("algorithm.algorithmName", "annealing", "algorithm.algorithmName", "'annealing' is not a Katib algorithm"),
    ("algorithm.algorithmName", "darts", "algorithm.algorithmName", "neural architecture search"),
    ("algorithm.algorithmName", "grid", "parameters[0].feasibleSpace.step", "grid search needs a step"),
    ("maxTrialCount", 0, "maxTrialCount", "must be at least 1, got 0"),
    ("parallelTrialCount", -2, "parallelTrialCount", "must be at least 1"),
    ("maxFailedTrialCount", "three", "maxFailedTrialCount", "expected a whole number"),
    ("parallelTrialCount", 7, "parallelTrialCount", "7 is above maxTrialCount 6"),
    ("parameters", [], "parameters", "no parameters to search"),
])
def test_a_search_that_cannot_run_stops_the_conversion_naming_the_metadata_key(path, value, key, words):
    with pytest.raises(NotebookError) as caught:
        convert(CELLS, changed(path, value))
    message = str(caught.value)
    assert message.startswith(f"kubeflow_notebook.katib_metadata.{key}: "), message
    assert words in message and "\n" not in message
    assert caught.value.cell_index is None


@pytest.mark.slow
def test_a_bad_search_is_one_line_from_jupyter_nbconvert_and_writes_nothing(tmp_path):
    path = tmp_path / "bad_search.ipynb"
    path.write_text(json.dumps(build_notebook(CELLS, metadata=metadata(changed("parameters.0.name", "LRATE")))),
                    encoding="utf-8")
    result = run([JUPYTER, "nbconvert", "--to", "kfp", path.name], cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stdout
    [error] = [line for line in result.stdout.splitlines() if "ERROR" in line]
    assert error.endswith("kubeflow_notebook.katib_metadata.parameters[0].name: 'LRATE' is not a pipeline parameter "
                          "(parameters: LR, DEPTH, KIND, FLAG)")
    assert not (tmp_path / "bad_search_pipeline.py").exists()


@pytest.mark.slow
def test_without_katib_run_a_bad_search_is_a_warning_and_tune_says_there_is_none(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        script, resources = convert(CELLS, changed("objective.objectiveMetricName", "val-loss"), run=False)
    assert resources["kfp"]["tuning"] is None and script_constant(script, "TUNING") is None
    [warning] = [r.getMessage() for r in caplog.records if "katib_metadata" in r.getMessage()]
    assert "objectiveMetricName: 'val-loss' is not a pipeline-metrics variable" in warning
    assert "no hyperparameter search (--tune)" in warning
    path = tmp_path / "x_pipeline.py"
    path.write_text(script, encoding="utf-8")
    result = run([PYTHON, path.name, "--tune"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    assert ("--tune: the notebook has no hyperparameter search; give it kubeflow_notebook.katib_metadata"
            in result.stdout)


def test_kales_untouched_default_search_is_quiet_unless_katib_run_asks_for_it(caplog):
    default = {"algorithm": {"algorithmName": "grid"}, "maxFailedTrialCount": 3, "maxTrialCount": 12,
               "objective": {"objectiveMetricName": "", "type": "minimize"}, "parallelTrialCount": 3, "parameters": []}
    with caplog.at_level(logging.INFO):
        script, _ = convert(CELLS, default, run=False)
    assert script_constant(script, "TUNING") is None
    assert not [r for r in caplog.records if "katib" in r.getMessage()]
    with pytest.raises(NotebookError, match="katib_run is true but kubeflow_notebook.katib_metadata names no search"):
        convert(CELLS, default, run=True)


def test_hostile_values_stay_data_in_the_script():
    hostile = changed("parameters.2.feasibleSpace.list", ['gi"ni\n', "$(touch x)", "'); import os #"])
    script, _ = convert(CELLS, hostile)
    compile(script, "script", "exec")
    assert script_constant(script, "TUNING")["parameters"][2]["list"] == ['gi"ni\n', "$(touch x)", "'); import os #"]


# --- search algorithms ----------------------------------------------------------------------------------------

def search_of(katib_metadata, cells=CELLS) -> Search:
    _, resources = convert(cells, katib_metadata)
    return Search.from_data(resources["kfp"]["tuning"])


def test_grid_points_are_katibs_and_a_smaller_grid_budget_is_a_seeded_choice():
    grid = changed("algorithm.algorithmName", "grid")
    grid["parameters"][0]["feasibleSpace"].update(min="0.1", max="0.3", step="0.1")
    grid["maxTrialCount"] = 12
    search = search_of(grid)
    assert algorithms.grid_values(search.parameters[0]) == ["0.1", "0.2", "0.3"]
    assert algorithms.grid_values(search.parameters[1]) == ["1", "3", "5"]
    sampler = algorithms.sampler(search, seed=1)
    points = list(iter(sampler.ask, None))
    assert len(points) == 12 == len({tuple(p.values()) for p in points})
    full = set(itertools.product(["0.1", "0.2", "0.3"], ["1", "3", "5"], ["gini", "entropy"]))
    assert {tuple(p.values()) for p in points} <= full
    assert points == list(iter(algorithms.sampler(search, seed=1).ask, None))
    assert points != list(iter(algorithms.sampler(search, seed=2).ask, None))


def test_random_draws_are_reproducible_and_stay_in_the_feasible_space():
    logarithmic = changed("parameters.0.feasibleSpace.distribution", "logUniform")
    search = search_of(logarithmic)
    sampler, again = algorithms.sampler(search, seed=7), algorithms.sampler(search, seed=7)
    draws = [sampler.ask() for _ in range(200)]
    assert draws == [again.ask() for _ in range(200)]
    assert all(0.01 <= float(d["LR"]) <= 0.3 for d in draws)
    assert {d["DEPTH"] for d in draws} == {"1", "3", "5"} and {d["KIND"] for d in draws} == {"gini", "entropy"}
    # logUniform: about as many draws below the geometric mean (0.055) as above it
    below = sum(float(d["LR"]) < (0.01 * 0.3) ** 0.5 for d in draws)
    assert 70 < below < 130


def test_tpe_runs_with_optuna_and_learns_from_the_results():
    search = search_of(changed("algorithm.algorithmName", "tpe"))
    sampler = algorithms.sampler(search, seed=3)
    seen = []
    for _ in range(30):
        assignment = sampler.ask()
        value = float(assignment["LR"]) * int(assignment["DEPTH"]) + (assignment["KIND"] == "entropy")
        seen.append(value)
        sampler.tell(assignment, value)
    assert max(seen[20:]) > sorted(seen[:10])[5]  # later suggestions beat the median of the first ten
    replay = algorithms.sampler(search, seed=3)
    assert replay.ask() == algorithms.sampler(search, seed=3).ask()


def test_cluster_only_algorithms_say_so(caplog):
    with caplog.at_level(logging.WARNING):
        search = search_of(changed("algorithm.algorithmName", "bayesianoptimization"))
    assert "bayesianoptimization runs on a Katib cluster only (--katib-experiment)" in caplog.text
    with pytest.raises(algorithms.SearchUnavailable, match="runs on the cluster only.*--katib-experiment"):
        algorithms.sampler(search, seed=0)


# --- the tuner, against a stand-in script that keeps the generated script's contract --------------------------

#: A stand-in for a generated script: same constants, same command line (``--local -p NAME VALUE ...``, what a
#: Katib trial runs) and trial-worker contract (``--local --trial-worker FD``: trials as JSON lines on standard
#: input, a result line each on FD); it writes its metric where a kfp.local run does
#: (RUN/TASK/executor_output.json) and sleeps a little so that trials overlap.
STAND_IN = textwrap.dedent('''
    PIPELINE_NAME = "stand-in"
    PARAMETER_TYPES = {"LR": float, "DEPTH": int, "KIND": str, "FLAG": bool}
    TUNING = %r

    def trial(values, root, folder, record):
        import json, os, time
        with open(os.path.join(folder, "argv.json"), "w") as fh:
            json.dump(record, fh)
        with open(os.path.join(folder, "pid"), "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(float(os.environ.get("STAND_IN_SECONDS", "0.3")))
        if values.get("KIND") == "boom":
            return None
        task = os.path.join(root, "stand-in-1", "train")
        os.makedirs(task)
        score = float(values["LR"]) * int(values["DEPTH"])
        with open(os.path.join(task, "executor_output.json"), "w") as fh:
            json.dump({"artifacts": {"metrics": {"artifacts": [{"metadata": {"score": score}}]}}}, fh)
        return score

    if __name__ == "__main__":
        import json, os, sys
        args = sys.argv[1:]
        if "--trial-worker" not in args:  # one run, as a Katib trial starts it
            values = {args[i + 1]: args[i + 2] for i, a in enumerate(args) if a == "-p"}
            root = args[args.index("--pipeline-root") + 1] if "--pipeline-root" in args else "local_outputs"
            if trial(values, root, os.path.dirname(os.path.abspath(root)), args) is None:
                sys.exit("step 'train' failed")
            sys.exit(0)
        results = os.fdopen(int(args[args.index("--trial-worker") + 1]), "w", buffering=1)
        for line in sys.stdin:
            request = json.loads(line)
            score = trial(dict(request["parameters"]), request["pipeline_root"], os.path.dirname(request["log"]),
                          {"argv": args, "request": request})
            if score is None:
                with open(request["log"], "w") as fh:
                    fh.write("step 'train' failed\\n")
            results.write(json.dumps({"number": request["number"], "status": 0 if score is not None else 1,
                                      "metrics": {} if score is None else {"score": score}}) + "\\n")
''')


def stand_in(tmp_path, katib_metadata) -> Path:
    path = tmp_path / "stand_in_pipeline.py"
    path.write_text(STAND_IN % (search_of(katib_metadata).to_data(),), encoding="utf-8")
    return path


@pytest.mark.slow
def test_tune_stops_once_a_trial_reaches_the_goal(tmp_path):
    grid = changed("algorithm.algorithmName", "grid")
    grid["parameters"][0]["feasibleSpace"].update(min="0.1", max="0.3", step="0.1")
    grid["parameters"] = grid["parameters"][:2]
    grid["objective"]["goal"] = 0.5
    grid.update(maxTrialCount=9, parallelTrialCount=1)
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        tuning = tuner.tune(stand_in(tmp_path, grid), parallel=1, out=fh)
    # in grid order, LR=0.1 DEPTH=5 is the first point at or above 0.5
    assert [t.assignment for t in tuning.trials] == [{"LR": "0.1", "DEPTH": "1"}, {"LR": "0.1", "DEPTH": "3"},
                                                    {"LR": "0.1", "DEPTH": "5"}]
    assert tuning.stopped == "trial 3 reached the goal 0.5" and tuning.best().number == 3
    assert "trial 3/9 succeeded" in out.read_text()


@pytest.mark.slow
def test_tune_stops_after_max_failed_trials_and_reports_no_best(tmp_path):
    failing = changed("parameters.2.feasibleSpace.list", ["boom"])
    failing["objective"].pop("goal")
    out = tmp_path / "out.txt"
    with out.open("w") as fh:
        tuning = tuner.tune(stand_in(tmp_path, failing), parallel=1, seed=0, out=fh)
    assert [t.status for t in tuning.trials] == ["failed", "failed"] and tuning.best() is None
    assert tuning.stopped == "2 trials failed (maxFailedTrialCount 2)"
    assert "exit status 1: step 'train' failed" in tuning.trials[0].message
    lines = out.read_text().splitlines()
    assert sum("failed in" in line for line in lines) == 2 and all(str(t.folder) in out.read_text()
                                                                   for t in tuning.trials)


@pytest.mark.slow
@pytest.mark.parametrize("goal", ["maximize", "minimize"])
def test_tune_is_reproducible_with_a_seed_and_passes_fixed_parameters(tmp_path, goal):
    spec = changed("objective.goal", None)
    spec["objective"]["type"] = goal
    script = stand_in(tmp_path, spec)
    runs = []
    for _ in range(2):
        with (tmp_path / "out.txt").open("w") as fh:
            runs.append(tuner.tune(script, seed=11, parameters={"FLAG": "false"}, out=fh))
    assert [t.assignment for t in runs[0].trials] == [t.assignment for t in runs[1].trials]
    assert len(runs[0].trials) == 6 and runs[0].folder != runs[1].folder
    assert f"up to 6 trials, {min(2, os.cpu_count() or 1)} at a time, seed 11" in (tmp_path / "out.txt").read_text()
    started = json.loads((runs[0].trials[0].folder / "argv.json").read_text())
    assert started["argv"][:3] == ["--local", "--trial-worker", started["argv"][2]]
    assert started["request"]["parameters"][0] == ["FLAG", "false"]
    assert started["request"]["cache_root"] == str(runs[0].folder / ".kfp_cache")  # one cache for all trials
    saved = json.loads((runs[0].folder / "trials.json").read_text())
    assert saved["seed"] == 11 and [t["parameters"] for t in saved["trials"]] == [t.assignment for t in runs[0].trials]
    best = (max if goal == "maximize" else min)(runs[0].trials, key=lambda t: t.objective)
    assert saved["best"] == runs[0].best().number and runs[0].best().objective == best.objective
    assert len({t.objective for t in runs[0].trials}) > 1


@pytest.mark.slow
@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_tune_stops_its_trials_and_still_reports(tmp_path, signum):
    script = stand_in(tmp_path, changed("objective.goal", None))
    code = ("import sys; from nbconvert_kfp.script.tuning import tuner; "
            "t = tuner.tune(sys.argv[1], parallel=2, seed=1); tuner.report(t, sys.argv[1])")
    process = subprocess.Popen([PYTHON, "-c", code, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=dict(os.environ, STAND_IN_SECONDS="60"))
    lines = []
    while sum(" started: " in line for line in lines) < 2:
        lines.append(process.stdout.readline())
    [folder] = (tmp_path / "local_outputs").glob("tune-stand-in-*")
    deadline = time.monotonic() + 30
    while len(list(folder.glob("trial-*/pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in folder.glob("trial-*/pid")]
    process.send_signal(getattr(subprocess.signal, signum))
    rest, _ = process.communicate(timeout=60)
    if signum != "SIGKILL":  # a killed tuning cannot report; its trials still end with it
        assert process.returncode == 0 and "Tuning finished: interrupted; 0 of 2 trials succeeded." in rest
        assert sum(" stopped " in line for line in rest.splitlines()) == 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a reaped parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_tune_refuses_a_searched_parameter_given_with_p(tmp_path):
    with pytest.raises(tuner.TuningError, match="parameter 'LR' is searched"):
        tuner.tune(stand_in(tmp_path, KATIB), parameters={"LR": "0.2"})


# --- the Katib Experiment -------------------------------------------------------------------------------------

def check_with_katib(manifest: dict) -> None:
    """Check an Experiment with Katib's API models and the rules of Katib's admission webhook that apply to it."""
    from kubeflow_katib_api.models import IoK8sApiCoreV1PodTemplateSpec, V1beta1Experiment

    # Katib's models take every field, typed as Katib's API has it; nothing is dropped on the way.
    assert V1beta1Experiment.from_dict(manifest).to_dict() == manifest
    spec = manifest["spec"]
    job = spec["trialTemplate"]["trialSpec"]
    assert (job["apiVersion"], job["kind"], set(job["spec"])) == ("batch/v1", "Job", {"backoffLimit", "template"})
    template = job["spec"]["template"]
    assert IoK8sApiCoreV1PodTemplateSpec.from_dict(template).to_dict() == template
    # pkg/webhook/v1beta1/experiment/validator: name, counts, objective, trial template, metrics collector
    name = manifest["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 40
    assert spec["maxFailedTrialCount"] <= spec["maxTrialCount"] and spec["parallelTrialCount"] <= spec["maxTrialCount"]
    assert spec["objective"]["objectiveMetricName"] not in spec["objective"].get("additionalMetricNames", [])
    trial = spec["trialTemplate"]
    assert trial["successCondition"] and trial["failureCondition"]
    names = [p["name"] for p in trial["trialParameters"]]
    references = [p["reference"] for p in trial["trialParameters"]]
    assert len(set(names)) == len(names) and len(set(references)) == len(references)
    assert set(references) <= {p["name"] for p in spec["parameters"]}
    text = json.dumps(job)
    assert set(re.findall(r"\$\{trialParameters\.(.+?)\}", text)) == set(names)
    assert trial["primaryContainerName"] in [c["name"] for c in template["spec"]["containers"]]
    for p in spec["parameters"]:
        space = p["feasibleSpace"]
        if p["parameterType"] in ("int", "double"):
            assert "list" not in space and space["min"] and space["max"]
        else:
            assert not {"min", "max", "step"} & set(space)
    for metrics_format in spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]:
        assert re.compile(metrics_format).groups >= 2 and re.match(r".*\(.*\).*\(.*\).*", metrics_format)


def katib_trial(manifest: dict, assignment: dict, cwd: Path, **env) -> str:
    """Run the manifest's trial container as Katib does (its StdOut collector appends a redirection to the
    ``sh -c`` line) with the trial's values; return what the collector would read."""
    trial = manifest["spec"]["trialTemplate"]
    [container] = trial["trialSpec"]["spec"]["template"]["spec"]["containers"]
    values = {p["name"]: assignment[p["reference"]] for p in trial["trialParameters"]}
    variables = {}
    for variable in container["env"]:
        variables[variable["name"]] = re.sub(r"\$\{trialParameters\.(.+?)\}", lambda m: values[m.group(1)],
                                             variable["value"])
    assert container["command"][:2] == ["sh", "-c"]
    line = f"{container['command'][2]} 1>metrics.log 2>&1 && echo completed > done.pid"
    environment = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", **variables, **env)
    subprocess.run(["sh", "-c", line], cwd=cwd, env=environment, timeout=300, check=False)
    return (cwd / "metrics.log").read_text(encoding="utf-8")


def collected(log: str, manifest: dict) -> dict[str, str]:
    """The metrics Katib's collector takes from the trial's output: lines its filter matches, names it expects."""
    objective = manifest["spec"]["objective"]
    wanted = {objective["objectiveMetricName"], *objective.get("additionalMetricNames", [])}
    [metrics_format] = manifest["spec"]["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"]
    found = {}
    for line in log.splitlines():
        match = re.search(metrics_format, line)
        if match and match.group(1).strip() in wanted:
            found[match.group(1).strip()] = match.group(2).strip()
    return found


@pytest.mark.slow
def test_katib_values_reach_the_script_as_data_whatever_they_hold(tmp_path):
    spec = changed("parameters.2.feasibleSpace.list", ["a b", "$(touch pwned)", "it's; rm -rf x", "`id`"])
    script = stand_in(tmp_path, spec)
    search = search_of(spec)
    manifest = katib.experiment(search, "stand-in", image="example.org/tune:1", script=str(script), python=PYTHON)
    check_with_katib(manifest)
    for value in spec["parameters"][2]["feasibleSpace"]["list"]:
        (tmp_path / "argv.json").unlink(missing_ok=True)
        katib_trial(manifest, {"LR": "0.2", "DEPTH": "3", "KIND": value}, tmp_path)
        argv = json.loads((tmp_path / "argv.json").read_text())
        assert argv[argv.index("KIND") + 1] == value
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "new\nline"])
def test_katib_values_that_its_template_cannot_carry_are_refused(value):
    search = search_of(changed("parameters.2.feasibleSpace.list", ["gini", value]))
    with pytest.raises(katib.KatibError, match=r"parameters\[2\]\.feasibleSpace\.list\[1\]: .*cannot hold a quote"):
        katib.experiment(search, "x", image="example.org/x:1", script="/app/x.py")


@pytest.mark.slow
def test_katib_experiment_options_come_as_a_set(tmp_path):
    script, _ = convert(CELLS, KATIB)
    path = tmp_path / "x_pipeline.py"
    path.write_text(script, encoding="utf-8")
    result = run([PYTHON, path.name, "--katib-experiment", "x.yaml"], cwd=tmp_path)
    assert result.returncode == 2 and "--katib-experiment needs --katib-image" in result.stdout
    result = run([PYTHON, path.name, "--katib-image", "x:1"], cwd=tmp_path)
    assert result.returncode == 2 and "--katib-image: only with --katib-experiment" in result.stdout
    result = run([PYTHON, path.name, "--seed", "3"], cwd=tmp_path)
    assert result.returncode == 2 and "--seed: only with --tune" in result.stdout
    assert not (tmp_path / "x.yaml").exists()


# --- end to end: the example notebook -------------------------------------------------------------------------

TABLE_ROW = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+succeeded\s+([0-9.]+) s$")


@pytest.mark.e2e
@pytest.mark.slow
def test_tune_runs_the_example_grid_locally_and_its_katib_experiment_validates(tmp_path):
    shutil.copy(EXAMPLES / "tuning.ipynb", tmp_path)
    converted = run([JUPYTER, "nbconvert", "--to", "kfp", "tuning.ipynb"], cwd=tmp_path)
    assert converted.returncode == 0, converted.stdout
    assert "katib_metadata: grid search over MAX_DEPTH, MIN_SAMPLES_LEAF" in converted.stdout
    started = time.monotonic()
    result = run([PYTHON, "tuning_pipeline.py", "--tune", "--parallel", "2"], cwd=tmp_path)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert sum(" started: " in line for line in lines) == 8 and sum(" succeeded in " in line for line in lines) == 8
    rows = {int(m.group(1)): m.groups()[1:] for m in map(TABLE_ROW.match, lines) if m}
    assert sorted(rows) == list(range(1, 9))
    # the whole grid, each point once
    assert {(depth, leaf) for depth, leaf, *_ in rows.values()} == set(itertools.product(
        ["1", "2", "3", "4"], ["1", "15"]))
    # each trial's objective, read from its own run's outputs, as the table shows it
    [folder] = (tmp_path / "local_outputs").glob("tune-tree-tuning-*")
    objectives = {}
    for number, (depth, leaf, shown, _) in rows.items():
        outputs = folder / f"trial-{number:03d}" / "outputs"
        [executor_output] = outputs.glob("tree-tuning-*/train/executor_output.json")
        logged = json.loads(executor_output.read_text())["artifacts"]["metrics"]["artifacts"][0]["metadata"]
        objectives[number] = logged["accuracy"]
        assert float(shown) == pytest.approx(logged["accuracy"], rel=1e-5)
        [step_log] = outputs.glob("tree-tuning-*/train/step.log")  # what the trial's train step printed
        assert f"depth {depth}, leaf {leaf}: accuracy" in step_log.read_text()  # it ran with its own values
    # two trial workers ran the 8 trials; the step upstream of the searched parameters ran once per worker at most
    assert len(list(folder.glob("worker-*.log"))) == 2
    trial_logs = [(folder / f"trial-{number:03d}" / "log.txt").read_text() for number in rows]
    assert sum("(1 step ran, 1 reused from the cache)" in log for log in trial_logs) >= 6
    [best_line] = [line for line in lines if line.startswith("Best trial ")]
    best = int(best_line.split()[2].rstrip(":"))
    assert objectives[best] == max(objectives.values())
    depth, leaf = rows[best][:2]
    assert f"with MAX_DEPTH={depth}, MIN_SAMPLES_LEAF={leaf}" in best_line
    assert f"python tuning_pipeline.py --local -p MAX_DEPTH {depth} -p MIN_SAMPLES_LEAF {leaf}" in result.stdout
    print(f"--tune: 8 trials, 2 at a time, in {wall:.1f} s (slowest trial {max(float(r[3]) for r in rows.values())} s)")

    # the same search for a cluster: a Katib Experiment that Katib's models and webhook rules accept ...
    written = run([PYTHON, "tuning_pipeline.py", "--katib-experiment", "experiment.yaml", "--katib-image",
                   "registry.example.com/tree-tuning:1", "--katib-script", str(tmp_path / "tuning_pipeline.py"),
                   "--katib-namespace", "team-a"], cwd=tmp_path)
    assert written.returncode == 0, written.stdout
    manifest = yaml.safe_load((tmp_path / "experiment.yaml").read_text())
    check_with_katib(manifest)
    assert manifest == katib.experiment_of(tmp_path / "tuning_pipeline.py", image="registry.example.com/tree-tuning:1",
                                           location=str(tmp_path / "tuning_pipeline.py"), namespace="team-a")
    spec = manifest["spec"]
    assert (manifest["metadata"], spec["algorithm"]) == ({"name": "tree-tuning", "namespace": "team-a"},
                                                         {"algorithmName": "grid"})
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == (8, 2, 3)
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "accuracy",
                                 "additionalMetricNames": ["train-accuracy"]}
    # ... whose trial, run as Katib runs it, prints the best trial's objective for Katib's collector
    log = katib_trial(manifest, {"MAX_DEPTH": depth, "MIN_SAMPLES_LEAF": leaf}, tmp_path)
    metrics = collected(log, manifest)
    assert set(metrics) == {"accuracy", "train-accuracy"}
    assert float(metrics["accuracy"]) == pytest.approx(objectives[best])
    assert (tmp_path / "done.pid").exists()


# --- --katib-submit, against a stand-in Kubernetes API server on loopback -------------------------------------

class KubernetesStandIn:
    """Answers the one call --katib-submit makes: create a namespaced Experiment (or refuses it)."""

    def __init__(self, status: int = 201):
        import http.server
        import threading

        self.created: list[tuple[str, dict]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.created.append((self.path, body))
                reply = body if status == 201 else {"kind": "Status", "status": "Failure", "code": status,
                                                    "message": "admission webhook denied the request: spec.algorithm"}
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{self.server.server_port}"}}],
            "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "team-b"}}]}))
        return path


@pytest.mark.slow
@pytest.mark.parametrize("status", [201, 403])
def test_katib_submit_creates_the_experiment_in_the_context_namespace(tmp_path, status):
    script, _ = convert(CELLS, KATIB)
    path = tmp_path / "x_pipeline.py"
    path.write_text(script, encoding="utf-8")
    cluster = KubernetesStandIn(status)
    try:
        result = run([PYTHON, path.name, "--katib-experiment", "x.yaml", "--katib-image", "example.org/x:1",
                      "--katib-submit"], cwd=tmp_path, KUBECONFIG=str(cluster.kubeconfig(tmp_path)),
                     KUBERNETES_SERVICE_HOST="")
    finally:
        cluster.server.shutdown()
    [(where, body)] = cluster.created
    assert where == "/apis/kubeflow.org/v1beta1/namespaces/team-b/experiments"
    assert body == yaml.safe_load((tmp_path / "x.yaml").read_text())
    assert "not-a-real-token" not in result.stdout and "Traceback" not in result.stdout
    if status == 201:
        assert result.returncode == 0 and "Created Katib Experiment team-b/tune-nb" in result.stdout
    else:
        assert result.returncode == 1
        [line] = [line for line in result.stdout.splitlines() if "failed" in line]
        assert line.startswith("--katib-experiment: creating Katib Experiment team-b/tune-nb failed: HTTP 403: ")
        assert "admission webhook denied the request" in line


def test_a_huge_grid_costs_only_the_trials_it_runs_and_odd_metadata_is_one_line():
    import copy
    import time

    from nbconvert_kfp.script.tuning import search as search_module
    from nbconvert_kfp.script.tuning import searchspace as tuning_module

    metadata = {"parameters": [
        {"name": "LR", "parameterType": "double", "feasibleSpace": {"min": "0.01", "max": "1", "step": "1e-8"}},
        {"name": "N", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "100000", "step": "1"}}],
        "objective": {"type": "maximize", "objectiveMetricName": "acc"}, "algorithm": {"algorithmName": "grid"},
        "maxTrialCount": 5}
    types = {"LR": ("LR", "float"), "N": ("N", "int")}
    search = tuning_module.parse(metadata, types, ["acc"], check_value=lambda kind, text: text, warn=lambda m: None)
    started = time.perf_counter()
    grid = search_module.GridSearch(search, seed=3)
    points = [grid.ask() for _ in range(6)]
    assert time.perf_counter() - started < 5  # 9.9e12 points: none is listed ahead
    assert points[5] is None and len({tuple(p.items()) for p in points[:5]}) == 5
    assert all(0.01 <= float(p["LR"]) <= 1 and 1 <= int(p["N"]) <= 100000 for p in points[:5])
    for change, words in [
        (lambda m: m["algorithm"].__setitem__("algorithmName", ["grid"]), "expected the name of an algorithm"),
        (lambda m: m["parameters"][1]["feasibleSpace"].__setitem__("max", "9" * 5000), "beyond the whole numbers"),
        (lambda m: m.__setitem__("maxTrialCount", "9" * 5000), "more than a search runs"),
        (lambda m: m["parameters"][0]["feasibleSpace"].update({"min": "-1e308", "max": "1e308", "step": "1"}),
         "more grid points than a number holds"),
    ]:
        broken = copy.deepcopy(metadata)
        change(broken)
        with pytest.raises(tuning_module.SearchError, match=words):
            tuning_module.parse(broken, types, ["acc"], check_value=lambda kind, text: text, warn=lambda m: None)
