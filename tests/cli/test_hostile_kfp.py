"""The ``nbconvert-kfp`` command against a hostile KFP host (tests/fakekfp.py's hostile modes).

Malformed but plausible answers, HTTP errors, escape sequences in every string, echoed tokens,
and hosts that trickle, stay silent or send huge or gzip-bombed answers: each command ends
within its deadline, with one line and a documented exit status, never a traceback, a raw
terminal control character or the token in any form. The deadline of one request is short here
(``NBCONVERT_KFP_HTTP_DEADLINE``), and so is the answer cap (``NBCONVERT_KFP_MAX_RESPONSE``).
The command runs in this process (its ``main``, with the same command line and environment), but
where the bytes a terminal would get are the point.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from urllib.parse import quote

import nbformat
import pytest
from fakekfp import ANSWER_MODES, TRANSPORT_MODES, FakeKFP, gzip_bomb

from helpers import PYTHON, build_notebook, nbconvert_kfp

COMMAND = [PYTHON, "-m", "nbconvert_kfp.command"]
TOKEN = "kfp/Tok+en=9f3c1a7e5b2d4c6a8e0f"
DEADLINE = 1.0
#: How long a command may take in all against a hostile host: a few requests, each within DEADLINE.
WALL = 25.0
CELLS = [
    ("parameters", "SEED = 1"),
    ("step:load", "data = list(range(SEED + 3))"),
    (["step:train", "prev:load"], "score = sum(data)"),
    ("pipeline-metrics", "print(score)"),
]
#: Raw terminal control characters: C0 but newline and tab, DEL, C1.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def token_forms() -> list[str]:
    """The token as a careless message could show it."""
    return [TOKEN, TOKEN.upper(), TOKEN.lower(), quote(TOKEN, safe=""), quote(TOKEN), TOKEN[:12],
            base64.b64encode(TOKEN.encode()).decode()[:16], quote(TOKEN, safe="")[:14]]


@pytest.fixture(scope="module")
def kfp():
    with FakeKFP() as server:
        server.require_token = TOKEN
        server.metric_values = {"train": {"score": 6.0}}
        yield server


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    nbformat.write(build_notebook(CELLS), folder / "tiny.ipynb")
    return folder


def command(folder, *args, limit: float = WALL, process: bool = False, **env) -> subprocess.CompletedProcess:
    """Run nbconvert-kfp in this process (or, with ``process``, as a new process); check it ended within
    ``limit`` seconds and printed no traceback, no raw control character and no form of the token."""
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("KF_PIPELINES", "NBCONVERT_KFP")) and k not in ("KUBECONFIG",
                                                                                         "KUBERNETES_SERVICE_HOST")}
    environment.update(HOME=str(folder / "home"), KF_PIPELINES_TOKEN=TOKEN,
                       NBCONVERT_KFP_HTTP_DEADLINE=str(DEADLINE), NBCONVERT_KFP_MAX_RESPONSE=str(1024 * 1024), **env)
    started = time.monotonic()
    if process:
        ran = subprocess.run([*COMMAND, *map(str, args)], cwd=folder, capture_output=True, timeout=limit + 60,
                             env=environment)
        result = subprocess.CompletedProcess(ran.args, ran.returncode, ran.stdout.decode("utf-8", "replace"),
                                             ran.stderr.decode("utf-8", "replace"))
    else:
        result = nbconvert_kfp(args, folder, environment)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert took < limit, f"took {took:.1f} s: {output}"
    assert "Traceback" not in output, output
    assert not CONTROL.search(output.replace("\r\n", "\n")), repr(output)
    assert [form for form in token_forms() if form.lower() in output.lower()] == [], output
    return result


@pytest.fixture(scope="module")
def finished_run(kfp, workdir):
    """A run that the fake server took to SUCCEEDED, with a metric: its id."""
    result = command(workdir, "run", "tiny.ipynb", "--host", kfp.url, "--interval", "0.05", limit=120)
    assert result.returncode == 0, result.stderr
    assert "metric train.score = 6" in result.stdout
    return list(kfp.runs)[-1]


@pytest.fixture
def hostile(kfp):
    """Set a hostile mode for one test; the server is honest again after it."""
    def set_mode(answers: str | None = None, transport: str | None = None):
        if transport == "gzip-bomb":
            gzip_bomb()  # packed now (about 1 s), not while the command's deadline runs
        kfp.hostile, kfp.transport = answers, transport
    yield set_mode
    kfp.hostile = kfp.transport = None


#: mode -> the exit status of (status, logs, list --all): 0 where the answer still says what is asked,
#: 1 where it cannot (docs/command.md's "KFP API failure").
EXPECTED = {
    "ansi": (0, 0, 0), "naive-times": (0, 0, 0), "no-run-id": (1, 1, 1), "bare-tasks": (0, 0, 0),
    "bad-spec": (1, 1, 0), "wrong-types": (1, 1, 1), "truncated-metrics": (0, 0, 0), "odd-metrics": (0, 0, 0),
    "garbage": (1, 1, 1), "http-500": (1, 1, 1), "echo-token": (1, 1, 1),
}
assert set(EXPECTED) == set(ANSWER_MODES)


@pytest.mark.parametrize("mode", ANSWER_MODES)
def test_malformed_answers_end_in_one_line_and_a_documented_status(kfp, workdir, finished_run, hostile, mode):
    hostile(mode)
    for subcommand, expected in zip((["status", finished_run], ["logs", finished_run], ["list", "--all"]),
                                    EXPECTED[mode]):
        result = command(workdir, *subcommand, "--host", kfp.url)
        assert result.returncode == expected, (subcommand, result.stdout, result.stderr)
        if expected:
            [line] = result.stderr.splitlines()
            assert line.startswith(f"nbconvert-kfp {subcommand[0]}: "), line
        elif subcommand[0] == "status":
            assert result.stdout.startswith("Run "), result.stdout


@pytest.mark.parametrize("mode", ["truncated-metrics", "odd-metrics"])
def test_status_says_why_malformed_metrics_cannot_be_shown(kfp, workdir, finished_run, hostile, mode):
    hostile(mode)
    result = command(workdir, "status", finished_run, "--host", kfp.url)
    assert result.returncode == 0
    assert "SUCCEEDED" in result.stdout and re.search(r"metrics: not available: .*malformed", result.stdout), \
        result.stdout


def test_a_run_that_succeeded_exits_0_when_its_metrics_are_malformed(kfp, workdir, finished_run, hostile):
    hostile("truncated-metrics")
    result = command(workdir, "run", "tiny.ipynb", "--host", kfp.url, "--interval", "0.05", limit=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Run \S+ SUCCEEDED", result.stdout) and "metrics: not available" in result.stdout


def test_escape_sequences_from_the_server_are_not_printed(kfp, workdir, finished_run, hostile):
    hostile("ansi")
    result = command(workdir, "logs", finished_run, "--host", kfp.url, process=True)  # the bytes a terminal gets
    assert result.returncode == 0, result.stderr
    status = command(workdir, "status", finished_run, "--host", kfp.url)
    assert status.returncode == 0 and "  step train: SUCCEEDED (40s)" in status.stdout
    for output in (result.stdout, status.stdout):  # the text stays; each control sequence goes, whole
        assert "[train] done" in result.stdout
        assert not re.search(r"\[31m|pwned|2J", output), output


def test_list_of_an_unknown_pipeline_or_a_failing_server_is_one_line(kfp, workdir, finished_run, hostile):
    unknown = command(workdir, "list", "--pipeline", "no-such-pipeline", "--host", kfp.url)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "nbconvert-kfp list: no pipeline is named 'no-such-pipeline' on the server"
    hostile("http-500")
    failing = command(workdir, "list", "--pipeline", "tiny", "--host", kfp.url)
    assert failing.returncode == 1 and "HTTP 500" in failing.stderr


@pytest.mark.parametrize("mode", TRANSPORT_MODES)
def test_a_slow_silent_or_flooding_host_ends_within_the_deadline(kfp, workdir, finished_run, hostile, mode):
    hostile(transport=mode)
    # in-process: the command fails if a request's thread still reads from the host 5 s after it returned
    result = command(workdir, "status", finished_run, "--host", kfp.url, limit=10 * DEADLINE + 8)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert re.search(r"within 1 s|larger than 1 MiB", line), line


@pytest.mark.parametrize("disguise", ["http://{a}\\@{k}", "http://u:p@{k}", "http://{k}%2F", "http://{k}\t",
                                      "http://[::1\\@{k}]"])
def test_a_disguised_host_gets_no_request(kfp, workdir, disguise):
    with FakeKFP() as attacker:
        host = disguise.format(a=attacker.url.split("//")[1], k=kfp.url.split("//")[1])
        before = len(kfp.requests)
        result = command(workdir, "status", "run-1", "--host", host)
        assert result.returncode == 1
        assert "is not usable" in result.stderr
        assert attacker.connections == 0 and len(kfp.requests) == before


def test_the_generated_script_refuses_a_disguised_host_too(kfp, workdir):
    assert command(workdir, "compile", "tiny.ipynb").returncode == 0
    with FakeKFP() as attacker:
        host = f"http://{attacker.url.split('//')[1]}\\@{kfp.url.split('//')[1]}/pipeline"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("KF_PIPELINES")}
        result = subprocess.run([PYTHON, "tiny_pipeline.py", "--host", host, "--upload"], cwd=workdir,
                                capture_output=True, text=True, timeout=120,
                                env=dict(environment, HOME=str(workdir / "home"), KF_PIPELINES_TOKEN=TOKEN))
        assert result.returncode == 1
        assert result.stderr.strip().startswith("Deployment failed: the KFP host") and "backslash" in result.stderr
        assert attacker.connections == 0 and TOKEN not in result.stdout + result.stderr
