"""Tuning runs: trials until the goal, failed-trial limits, seeds, interruption, the example grid locally."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from nbconvert_kfp.script.tuning import katib, tuner

from helpers import EXAMPLES, PYTHON, nbconvert, run
from tuningcase import changed, check_with_katib, katib_trial, stand_in


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a reaped parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


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


TABLE_ROW = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+succeeded\s+([0-9.]+) s$")


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


def test_tune_runs_the_example_grid_locally_and_its_katib_experiment_validates(tmp_path):
    shutil.copy(EXAMPLES / "tuning.ipynb", tmp_path)
    converted = nbconvert(["--to", "kfp", "tuning.ipynb"], cwd=tmp_path, merge=True)
    assert converted.returncode == 0, converted.stdout
    assert "katib_metadata: grid search over MAX_DEPTH, MIN_SAMPLES_LEAF" in converted.stdout
    started = time.monotonic()
    result = run([PYTHON, "tuning_pipeline.py", "--tune", "--parallel", "2"], cwd=tmp_path)
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert sum(" started: " in line for line in lines) == 8 and sum(" succeeded in " in line for line in lines) == 8, \
        result.stdout
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
