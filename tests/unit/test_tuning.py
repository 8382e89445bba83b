"""Hyperparameter tuning from Kale's ``kubeflow_notebook.katib_metadata``: the search checked at conversion,
``--tune`` running its trials as local runs of the generated script, and the Katib Experiment for a
cluster checked against Katib's own API models and its admission webhook's rules."""

from __future__ import annotations

import itertools
import logging

import pytest

from helpers import script_constant
from nbconvert_kfp.errors import NotebookError
from nbconvert_kfp.script.tuning import katib, search as algorithms, tuner
from nbconvert_kfp.script.tuning.searchspace import Search
from tuningcase import CELLS, KATIB, changed, convert, search_of, stand_in

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








def test_tune_refuses_a_searched_parameter_given_with_p(tmp_path):
    with pytest.raises(tuner.TuningError, match="parameter 'LR' is searched"):
        tuner.tune(stand_in(tmp_path, KATIB), parameters={"LR": "0.2"})


# --- the Katib Experiment -------------------------------------------------------------------------------------








@pytest.mark.parametrize("value", ['say "hi"', "back\\slash", "new\nline"])
def test_katib_values_that_its_template_cannot_carry_are_refused(value):
    search = search_of(changed("parameters.2.feasibleSpace.list", ["gini", value]))
    with pytest.raises(katib.KatibError, match=r"parameters\[2\]\.feasibleSpace\.list\[1\]: .*cannot hold a quote"):
        katib.experiment(search, "x", image="example.org/x:1", script="/app/x.py")



# --- end to end: the example notebook -------------------------------------------------------------------------




# --- --katib-submit, against a stand-in Kubernetes API server on loopback -------------------------------------




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
