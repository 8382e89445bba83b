"""The ``nbconvert-kfp`` command, run as a user runs it, against the fake KFP API (tests/fakekfp.py).

The command talks to the fake server through the real kfp.Client, with no network. One test runs the
installed console script as a process, as do the subcommands that run pipelines (``local``, ``tune``:
what their steps print goes to the process's own output); the others call the same entry point
(``nbconvert_kfp.command:main``) in this process, with the same command line, environment and checks.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess

import nbformat
import pytest
import yaml
import fakekfp

from helpers import EXAMPLES, PYTHON, VENV_BIN, build_notebook, nbconvert_kfp

fake_kfp = fakekfp.fake_kfp  # the fixture
SCRIPT = VENV_BIN / "nbconvert-kfp"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [PYTHON, "-m", "nbconvert_kfp.command"]
TOKEN = "s3cret-token-never-printed"
CELLS = [
    ("parameters", "SEED = 1\nRATE = 0.5"),
    ("step:load", "data = list(range(SEED + 3))"),
    (["step:train", "prev:load"], "score = sum(data) * RATE"),
    ("pipeline-metrics", "print(score)"),
]
FAST = ("--interval", "0.05")


@pytest.fixture
def notebook(tmp_path):
    """A small tagged notebook, tiny.ipynb, in its own folder."""
    path = tmp_path / "tiny.ipynb"
    nbformat.write(build_notebook(CELLS), path)
    return path


def command(notebook_dir, *args, process: bool = False, **env):
    """Run nbconvert-kfp in the notebook's folder, without the machine's KFP settings, in this process (or, with
    ``process``, as the console script); check that it printed no escape codes, traceback or secret, and (but
    for a local run, whose progress lines are kfp.local's own) no INFO lines."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("KF_PIPELINES") and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    environment.update(HOME=str(notebook_dir / "home"), **env)
    if process:
        result = subprocess.run([*COMMAND, *map(str, args)], cwd=notebook_dir, capture_output=True, text=True,
                                timeout=180, env=environment)
    else:
        result = nbconvert_kfp(args, notebook_dir, environment)
    output = result.stdout + result.stderr
    assert "\x1b[" not in output and "Traceback" not in output and TOKEN not in output, output
    assert args[0] in ("local", "tune") or (" INFO " not in output and "INFO]" not in output), output
    return result


def uploads(server) -> int:
    return len(server.calls("POST", "/pipelines/upload")) + len(server.calls("POST", "/pipelines/upload_version"))


def test_run_uploads_once_reuses_the_version_and_follows_the_run_to_success(fake_kfp, notebook):
    fake_kfp.require_token = TOKEN
    fake_kfp.metric_values = {"train": {"score": 3.5}}
    params = notebook.parent / "params.yaml"
    params.write_text("SEED: 4\nRATE: 0.25\n")
    first = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, "-f", params.name,
                    "-p", "RATE", "2", *FAST, process=True, KF_PIPELINES_TOKEN=TOKEN)
    assert first.returncode == 0, first.stderr
    second = command(notebook.parent, "run", notebook.name, *FAST, process=True, KF_PIPELINES_ENDPOINT=fake_kfp.url,
                     KF_PIPELINES_TOKEN=TOKEN)
    assert second.returncode == 0, second.stderr

    assert uploads(fake_kfp) == 1  # the second, identical run uses the version the first one uploaded
    [pipeline] = fake_kfp.pipelines.values()
    [version] = fake_kfp.versions[pipeline["pipeline_id"]]
    first_run, second_run = fake_kfp.runs.values()
    for run in (first_run, second_run):
        assert run["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    assert first_run["runtime_config"]["parameters"] == {"SEED": 4, "RATE": 2.0}  # -f, then -p wins
    assert second_run["runtime_config"]["parameters"] == {}
    assert "Unchanged: reusing the version of pipeline 'tiny'" in second.stdout
    assert (notebook.parent / "tiny_pipeline.py").is_file()  # written next to the notebook, as nbconvert does

    lines = first.stdout.splitlines()
    follow = lines[lines.index(f"Run {first_run['run_id']}: RUNNING"):]
    assert follow == [
        f"Run {first_run['run_id']}: RUNNING",
        "  step shared code: RUNNING", "  step shared code: SUCCEEDED (40s)",
        "  step load: RUNNING", "  step load: SUCCEEDED (40s)",
        "  step train: RUNNING", "  step train: SUCCEEDED (40s)",
        "  metric train.score = 3.5",
        f"Run {first_run['run_id']} SUCCEEDED in 4m 55s",
    ]


def test_a_failed_run_exits_3_and_names_the_failed_step(fake_kfp, notebook):
    fake_kfp.fail_steps = {"train"}
    result = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, *FAST)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "  step load: SUCCEEDED (40s)" in result.stdout
    assert "  step train: FAILED (40s): step train exited with code 1" in result.stdout
    [run] = fake_kfp.runs.values()
    assert f"Run {run['run_id']} FAILED after 4m 55s: step 'train' failed" in result.stderr
    assert f"nbconvert-kfp logs {run['run_id']}" in result.stderr


def test_a_canceled_run_exits_4(fake_kfp, notebook):
    fake_kfp.cancel_steps = {"load"}
    result = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, *FAST)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "  step load: CANCELED (40s)" in result.stdout and "step train" not in result.stdout
    [run] = fake_kfp.runs.values()
    assert f"Run {run['run_id']} CANCELED after" in result.stderr


def test_time_limit_exits_6_and_no_wait_returns_at_once(fake_kfp, notebook):
    fake_kfp.stuck_steps = {"train"}
    result = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, "--timeout", "1",
                     "--interval", "0.1")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "  step train: RUNNING" in result.stdout
    assert "is still RUNNING at the time limit (running: train); it goes on in KFP" in result.stderr

    started = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, "--no-wait")
    assert started.returncode == 0, started.stderr
    second = list(fake_kfp.runs)[-1]
    assert f"Started run {second}" in started.stdout and "step" not in started.stdout
    assert len(fake_kfp.calls("GET", f"/runs/{second}")) == 0


def test_run_name_and_no_cache(fake_kfp, notebook):
    result = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, "--run-name", "nightly-1",
                     "--no-cache", "--experiment", "ci", *FAST)
    assert result.returncode == 0, result.stderr
    [run] = fake_kfp.runs.values()
    assert run["display_name"] == "nightly-1"
    assert [e["display_name"] for e in fake_kfp.experiments.values()] == ["ci"]
    spec = yaml.safe_load(fake_kfp.packages[run["pipeline_version_reference"]["pipeline_version_id"]])
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks and all(not task.get("cachingOptions", {}).get("enableCache") for task in tasks.values())

    cached = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, *FAST)
    assert cached.returncode == 0, cached.stderr
    # Another pipeline (caching on), so another version, named by the hash of its content.
    _, version = next(iter(fake_kfp.versions.values()))
    assert re.fullmatch(r"tiny-[0-9a-f]{12}", version["display_name"])
    spec = yaml.safe_load(fake_kfp.packages[version["pipeline_version_id"]])
    assert all(task["cachingOptions"].get("enableCache") for task in spec["root"]["dag"]["tasks"].values())


def test_conversion_and_parameter_errors_are_one_line(tmp_path, fake_kfp):
    broken = tmp_path / "broken.ipynb"
    nbformat.write(build_notebook([("step:load", "x = 1"), (["step:train", "prev:lod"], "y = x")]), broken)
    result = command(tmp_path, "run", broken.name, "--host", fake_kfp.url)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("nbconvert-kfp run: broken.ipynb: cell 2: tag 'prev:lod' names step 'lod'")
    assert not (tmp_path / "broken_pipeline.py").exists() and fake_kfp.requests == []

    nbformat.write(build_notebook(CELLS), tmp_path / "tiny.ipynb")
    for args, message in [(["-p", "SPEED", "1"], "unknown parameter 'SPEED'; known: SEED, RATE"),
                          (["-p", "SEED", "many"], "parameter SEED: expected an integer, got 'many'")]:
        result = command(tmp_path, "run", "tiny.ipynb", "--host", fake_kfp.url, *args)
        assert result.returncode == 2
        assert result.stderr.strip() == f"nbconvert-kfp run: {message}"
    assert command(tmp_path, "run", "missing.ipynb").stderr.strip() == "nbconvert-kfp run: missing.ipynb: no such notebook"
    assert fake_kfp.requests == []


@pytest.fixture
def finished_run(fake_kfp, notebook):
    """A run of tiny.ipynb that the fake server has taken to its end: its id."""
    fake_kfp.metric_values = {"train": {"score": 3.5, "loss": 0.125}}
    result = command(notebook.parent, "run", notebook.name, "--host", fake_kfp.url, *FAST)
    assert result.returncode == 0, result.stderr
    return list(fake_kfp.runs)[-1]


def test_status_gives_the_state_each_step_and_the_metrics(fake_kfp, notebook, finished_run):
    result = command(notebook.parent, "status", finished_run, KF_PIPELINES_ENDPOINT=fake_kfp.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(rf"Run {finished_run} \(tiny-[\d-]+-[0-9a-f]{{4}}\): SUCCEEDED, took 4m 55s", lines[0])
    assert lines[1:] == ["  step shared code: SUCCEEDED (40s)", "  step load: SUCCEEDED (40s)",
                         "  step train: SUCCEEDED (40s)", "  metric train.loss = 0.125",
                         "  metric train.score = 3.5"]

    fake_kfp.metadata_enabled = False
    result = command(notebook.parent, "status", finished_run, "--host", fake_kfp.url)
    assert result.returncode == 0
    assert "  metrics: not available: /ml_metadata.MetadataStoreService/GetArtifactsByID is not served by this " \
           "host (HTTP 404)" in result.stdout

    missing = command(notebook.parent, "status", "run-9999", "--host", fake_kfp.url)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (f"nbconvert-kfp status: reading run run-9999 failed at {fake_kfp.url}: HTTP 404: "
                                      "Run run-9999 not found (not found; check that the host is the KFP API "
                                      "endpoint (for example https://HOST/pipeline))")


def test_logs_of_every_step_or_one_from_the_api_server_or_the_ui(fake_kfp, notebook, finished_run):
    every = command(notebook.parent, "logs", finished_run, "--host", fake_kfp.url)
    assert every.returncode == 0, every.stderr
    pod = f"{finished_run}-system-container-impl-1002"
    assert every.stdout.count("==> step ") == 3
    assert f"==> step train (SUCCEEDED, pod {pod}) <==\n[train] started\n[train] done\n" in every.stdout
    assert fake_kfp.calls("GET", f"/apis/v1alpha1/runs/{finished_run}/nodes/{pod}/log")

    fake_kfp.log_endpoint = "ui"  # the host is the KFP UI: its /k8s/pod/logs serves the log
    one = command(notebook.parent, "logs", finished_run, "train", "--host", fake_kfp.url, "--namespace", "team-a")
    assert one.returncode == 0, one.stderr
    assert one.stdout == "[train] started\n[train] done\n"
    [ui_call] = [r for r in fake_kfp.requests if r.path == "/k8s/pod/logs"]
    assert ui_call.query == {"podname": pod, "runid": finished_run, "podnamespace": "team-a"}

    fake_kfp.log_endpoint = None
    unavailable = command(notebook.parent, "logs", finished_run, "train", "--host", fake_kfp.url)
    assert unavailable.returncode == 1
    [line] = unavailable.stderr.strip().splitlines()
    assert f"the log of pod {pod} is not available from this host" in line
    assert "HTTP 404" in line and "a web page, not a log" in line and f"kubectl logs {pod} -c main" in line

    unknown = command(notebook.parent, "logs", finished_run, "trian", "--host", fake_kfp.url)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (f"nbconvert-kfp logs: run {finished_run} has no step 'trian'; "
                                      "steps: shared code, load, train")


def test_list_gives_the_runs_of_the_notebooks_pipeline_or_all(fake_kfp, notebook, finished_run, tmp_path):
    other = tmp_path / "other" / "other.ipynb"
    other.parent.mkdir()
    nbformat.write(build_notebook([("step:only", "x = 1")]), other)
    assert command(other.parent, "run", other.name, "--host", fake_kfp.url, "--no-wait").returncode == 0
    other_run = list(fake_kfp.runs)[-1]

    mine = command(notebook.parent, "list", notebook.name, "--host", fake_kfp.url)
    assert mine.returncode == 0, mine.stderr
    header, *rows = mine.stdout.splitlines()
    assert header.split() == ["RUN", "ID", "STATE", "CREATED", "DURATION", "NAME"]
    assert [row.split()[:2] for row in rows] == [[finished_run, "SUCCEEDED"]]

    every = command(notebook.parent, "list", "--all", "--host", fake_kfp.url)
    assert [row.split()[0] for row in every.stdout.splitlines()[1:]] == [other_run, finished_run]
    by_name = command(notebook.parent, "list", "--pipeline", "other", "--host", fake_kfp.url)
    assert [row.split()[0] for row in by_name.stdout.splitlines()[1:]] == [other_run]
    neither = command(notebook.parent, "list", "--host", fake_kfp.url)
    assert neither.returncode == 2 and "give a NOTEBOOK, --pipeline NAME or --all" in neither.stderr


def test_the_generated_script_waits_too(fake_kfp, notebook):
    fake_kfp.metric_values = {"train": {"score": 3.5}}
    assert command(notebook.parent, "compile", notebook.name).returncode == 0
    script = notebook.parent / "tiny_pipeline.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES")}
    env["HOME"] = str(notebook.parent / "home")
    ok = subprocess.run([PYTHON, str(script), "--host", fake_kfp.url, "--run", "--wait", *FAST], cwd=notebook.parent,
                        capture_output=True, text=True, timeout=120, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "  step train: SUCCEEDED (40s)" in ok.stdout and "  metric train.score = 3.5" in ok.stdout
    fake_kfp.fail_steps = {"load"}
    failed = subprocess.run([PYTHON, str(script), "--host", fake_kfp.url, "--run", "--wait", "--run-name", "again",
                             *FAST], cwd=notebook.parent, capture_output=True, text=True, timeout=120, env=env)
    assert failed.returncode == 3
    assert "step 'load' failed" in failed.stderr and "step train" not in failed.stdout
    assert uploads(fake_kfp) == 1 and list(fake_kfp.runs.values())[-1]["display_name"] == "again"


def test_compile_dag_and_local(notebook):
    compiled = command(notebook.parent, "compile", notebook.name, "-p", "SEED", "7")
    assert compiled.returncode == 0, compiled.stderr
    spec = yaml.safe_load((notebook.parent / "tiny_pipeline.yaml").read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["SEED"]["defaultValue"] == 7
    drawn = command(notebook.parent, "dag", notebook.name, "--output", "tiny.mmd")
    assert drawn.returncode == 0 and "load" in (notebook.parent / "tiny.mmd").read_text()
    png = command(notebook.parent, "dag", notebook.name, "--output", "tiny.png")
    assert png.returncode == 2 and png.stderr.count("\n") == 1 and ".svg, .md, .mmd" in png.stderr, png.stderr
    assert not (notebook.parent / "tiny.png").exists()

    local = command(notebook.parent, "local", notebook.name, "-p", "SEED", "2", process=True)
    assert local.returncode == 0, local.stdout + local.stderr
    assert "Pipeline 'tiny' succeeded" in local.stdout and "metric score = 5.0" in local.stdout
    # the script's local-run options pass through: the cache, one step, everything printed
    again = command(notebook.parent, "local", notebook.name, "-p", "SEED", "2", "--step", "train", process=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.findall(r"^  (cached|started|finished) +(\w+)", again.stdout, re.MULTILINE) == [
        ("cached", "load"), ("started", "train"), ("finished", "train")], again.stdout
    fresh = command(notebook.parent, "local", notebook.name, "-p", "SEED", "2", "--no-cache", "--verbose",
                    process=True)
    assert fresh.returncode == 0 and "  cached" not in fresh.stdout and "[nbconvert-kfp] step 'train'" in fresh.stdout


def test_tune_runs_the_notebooks_search(tmp_path):
    notebook = tmp_path / "tuning.ipynb"
    notebook.write_bytes((EXAMPLES / "tuning.ipynb").read_bytes())
    result = command(tmp_path, "tune", notebook.name, "--max-trials", "2", "--parallel", "1", "--seed", "3",
                     process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 of 2 trials succeeded" in result.stdout and re.search(r"^Best trial \d+: accuracy = ", result.stdout,
                                                                      re.MULTILINE), result.stdout


def test_ml_metadata_reply_is_read_as_the_ui_reads_it():
    """The wire format the command decodes is the one the fake server encodes independently."""
    from nbconvert_kfp.script.cluster import metadata

    frame = metadata.request_frame([5, 300])
    assert fakekfp.mlmd_requested_ids(frame) == [5, 300]
    message = (fakekfp._delimited(1, fakekfp.mlmd_artifact(5, {"display_name": "metrics", "acc": 0.5}))
               + fakekfp._delimited(1, fakekfp.mlmd_artifact(300, {"loss": -2.0})))
    assert metadata.decode_artifacts(message) == {5: {"display_name": "metrics", "acc": 0.5}, 300: {"loss": -2.0}}
    trailer = b"grpc-status:5\r\ngrpc-message:artifact not found\r\n"
    with pytest.raises(metadata.MetadataUnavailable, match="gRPC status 5: artifact not found"):
        metadata.read_frames(b"\x80" + struct.pack(">I", len(trailer)) + trailer, {})


def test_upload_adds_a_version_only_for_a_changed_pipeline(fake_kfp, notebook):
    first = command(notebook.parent, "upload", notebook.name, "--host", fake_kfp.url)
    again = command(notebook.parent, "upload", notebook.name, "--host", fake_kfp.url)
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert "Uploaded new pipeline 'tiny'" in first.stdout
    assert "Unchanged: reusing the version of pipeline 'tiny'" in again.stdout and uploads(fake_kfp) == 1
    changed = command(notebook.parent, "upload", notebook.name, "--host", fake_kfp.url, "-p", "SEED", "9")
    assert "Added a version to pipeline 'tiny'" in changed.stdout and uploads(fake_kfp) == 2
    # Back to the defaults: the latest version holds another pipeline, so a version named by this one's hash
    # is added once, and found by its name from then on.
    back = command(notebook.parent, "upload", notebook.name, "--host", fake_kfp.url)
    assert "Added a version" in back.stdout and uploads(fake_kfp) == 3
    changed_again = command(notebook.parent, "upload", notebook.name, "--host", fake_kfp.url, "-p", "SEED", "9")
    back_again = command(notebook.parent, "upload", notebook.name, "--host", fake_kfp.url)
    assert "Unchanged" in changed_again.stdout and "Unchanged" in back_again.stdout and uploads(fake_kfp) == 3
    names = [v["display_name"] for v in next(iter(fake_kfp.versions.values()))]
    assert names[0] == "tiny" and all(re.fullmatch(r"tiny-[0-9a-f]{12}", name) for name in names[1:])
    assert fake_kfp.runs == {}


def test_the_exit_statuses_are_documented_where_users_look():
    """``run --help`` and docs/command.md list the exit status of every way a run can end."""
    from nbconvert_kfp.command.pipeline import EXIT_STATUSES
    from nbconvert_kfp.script.cluster.monitor import EXIT_ERROR, EXIT_STATUS

    from helpers import REPO

    page = (REPO / "docs" / "command.md").read_text(encoding="utf-8")
    for state, code in [*EXIT_STATUS.items(), ("error", EXIT_ERROR)]:
        assert re.search(rf"^  {code}  ", EXIT_STATUSES, re.MULTILINE) or f"    {code}  " in EXIT_STATUSES, state
        assert re.search(rf"^\| {code} \| ", page, re.MULTILINE), state
    for state in ("FAILED", "CANCELED", "ERROR", "TIMEOUT"):
        assert re.search(rf"^\| {EXIT_STATUS[state]} \| .*{state.lower() if state == 'TIMEOUT' else state}",
                         page.replace("--timeout", "timeout"), re.MULTILINE), state
