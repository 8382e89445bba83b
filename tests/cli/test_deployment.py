"""Deploying to KFP: nbconvert_kfp.deployment and the script's --upload/--run, against a fake KFP API.

The real kfp.Client talks to tests/fakekfp.py, a local HTTP server that speaks the v2beta1
endpoints kfp.Client calls. No test reaches the network.
"""

from __future__ import annotations

import os
import re
import runpy
import socket
import subprocess
import sys
import time

import pytest
import yaml
import fakekfp
from fakekfp import FakeKFP

from nbconvert_kfp.script.cluster import deployment
from nbconvert_kfp.exporters import compile_script
from nbconvert_kfp.script.cluster.deployment import DeploymentError

fake_kfp = fakekfp.fake_kfp  # the fixture
TOKEN = "s3cret-token-do-not-print"
CELLS = [
    ("parameters", "SEED = 1\nRATE = 0.5"),
    ("step:load", "data = list(range(SEED + 3))"),
    (["step:train", "prev:load"], "model = sum(data) * RATE"),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No credentials, kube config or kfp context from the machine running the tests."""
    import kfp

    for name in list(os.environ):
        if name.startswith("KF_PIPELINES") or name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "home" / "kfp-context.json"))


@pytest.fixture
def package(tmp_path, make_nb, convert):
    """A compiled pipeline package (IR YAML)."""
    script, _ = convert(make_nb(CELLS), name="deploy_me")
    path = tmp_path / "deploy_me_pipeline.yaml"
    path.write_text(compile_script(script), encoding="utf-8")
    return path


def _env(home, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KF_PIPELINES") and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(HOME=str(home), **extra)
    return env


# --- the module, in process ---------------------------------------------------------------------------


def test_upload_twice_gives_one_pipeline_with_two_versions(fake_kfp, package):
    client = deployment.client(fake_kfp.url)
    first = deployment.upload(client, str(package), "deploy-me", "my description")
    second = deployment.upload(client, str(package), "deploy-me", "my description")
    assert first["created"] and not second["created"]
    assert first["pipeline_id"] == second["pipeline_id"]
    assert len(fake_kfp.pipelines) == 1
    versions = fake_kfp.versions[first["pipeline_id"]]
    assert [v["pipeline_version_id"] for v in versions] == [first["version_id"], second["version_id"]]
    assert second["version_name"].startswith("deploy-me-")
    # Both uploads sent the compiled package; the second went to upload_version with the pipeline's id.
    assert yaml.safe_load(fake_kfp.packages[second["version_id"]])["pipelineInfo"]["name"] == "deploy-me"
    [version_upload] = fake_kfp.calls("POST", "/pipelines/upload_version")
    assert version_upload.query["pipelineid"] == first["pipeline_id"]
    assert second["pipeline_url"] == (f"{fake_kfp.url}/#/pipelines/details/{first['pipeline_id']}"
                                      f"/version/{second['version_id']}")


def test_run_references_the_uploaded_version_and_sends_no_package(fake_kfp, package):
    client = deployment.client(fake_kfp.url)
    uploaded = deployment.upload(client, str(package), "deploy-me")
    started = deployment.run(client, uploaded["pipeline_id"], uploaded["version_id"], "nightly",
                             params={"SEED": 7})
    again = deployment.run(client, uploaded["pipeline_id"], uploaded["version_id"], "nightly")
    assert started["run_url"] == f"{fake_kfp.url}/#/runs/details/{started['run_id']}"
    assert [e["display_name"] for e in fake_kfp.experiments.values()] == ["nightly"]  # created once, then found
    assert again["experiment_id"] == started["experiment_id"]
    body = fake_kfp.calls("POST", "/runs")[0].body
    assert body["pipeline_version_reference"] == {"pipeline_id": uploaded["pipeline_id"],
                                                  "pipeline_version_id": uploaded["version_id"]}
    assert "pipeline_spec" not in body
    assert body["runtime_config"]["parameters"] == {"SEED": 7}
    assert body["experiment_id"] == started["experiment_id"]


def test_credentials_come_from_the_token_variable_or_a_token_file(fake_kfp, package, monkeypatch, tmp_path):
    fake_kfp.require_token = TOKEN
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    client = deployment.client(fake_kfp.url)
    deployment.upload(client, str(package), "deploy-me")
    assert {r.headers.get("authorization") for r in fake_kfp.requests} == {f"Bearer {TOKEN}"}
    assert client._existing_config.verify_ssl is True  # TLS is verified unless turned off

    monkeypatch.delenv("KF_PIPELINES_TOKEN")
    token_file = tmp_path / "sa-token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    deployment.upload(deployment.client(fake_kfp.url), str(package), "deploy-me")
    assert fake_kfp.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"

    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(DeploymentError, match="KF_PIPELINES_SA_TOKEN_PATH names .*missing, which is not a file"):
        deployment.client(fake_kfp.url)


def _one_line(error: DeploymentError) -> str:
    message = str(error)
    assert "\n" not in message and TOKEN not in message and "Traceback" not in message
    return message


def test_errors_become_one_line_messages_without_the_token(fake_kfp, package):
    fake_kfp.require_token = TOKEN
    with pytest.raises(DeploymentError) as caught:  # a wrong token: refused at the health check
        deployment.client(fake_kfp.url, token="wrong-token")
    message = _one_line(caught.value)
    assert "connecting to KFP failed" in message and "HTTP 401" in message and "KF_PIPELINES_TOKEN" in message

    client = deployment.client(fake_kfp.url, token=TOKEN)
    uploaded = deployment.upload(client, str(package), "deploy-me")
    fake_kfp.fail("POST", "/pipelines/upload_version", 409, "version name already exists")
    with pytest.raises(DeploymentError) as caught:
        deployment.upload(client, str(package), "deploy-me", version_name="v1")
    assert _one_line(caught.value) == (f"adding version 'v1' to pipeline 'deploy-me' failed at {fake_kfp.url}: "
                                       "HTTP 409: version name already exists (it already exists on the server)")

    # A server message that echoes the token is shown without it.
    fake_kfp.fail("POST", "/runs", 500, f"internal error; header was Bearer {TOKEN}")
    with pytest.raises(DeploymentError) as caught:
        deployment.run(client, uploaded["pipeline_id"], uploaded["version_id"], "Default")
    message = _one_line(caught.value)
    assert "HTTP 500: internal error; header was Bearer ***" in message and "log" in message

    fake_kfp.fail("GET", "/pipelines", 403, "user is not authorized in namespace team-a")
    with pytest.raises(DeploymentError, match=r"looking up pipeline 'deploy-me' failed .*HTTP 403: user is not "
                                              r"authorized in namespace team-a \(.*--namespace"):
        deployment.upload(client, str(package), "deploy-me", namespace="team-a")


def test_unreachable_hosts_and_tls_failures(fake_kfp):
    port = fake_kfp.server_address[1]
    fake_kfp.stop()  # nothing listens there any more
    with pytest.raises(DeploymentError) as caught:
        deployment.client(f"http://127.0.0.1:{port}")
    assert "cannot reach the KFP API at http://127.0.0.1:" in _one_line(caught.value)

    with FakeKFP() as plain_http:
        with pytest.raises(DeploymentError) as caught:  # TLS to a server that speaks plain HTTP
            deployment.client(plain_http.url.replace("http://", "https://"))
        assert "TLS error" in _one_line(caught.value)

    with pytest.raises(DeploymentError, match="no KFP host: give the KFP API URL"):
        deployment.client(None)


def test_a_silent_server_times_out(monkeypatch):
    monkeypatch.setenv("NBCONVERT_KFP_HTTP_DEADLINE", "0.5")  # the deadline of one request, in seconds
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(DeploymentError) as caught:
            deployment.client(f"http://127.0.0.1:{silent.getsockname()[1]}")
    assert time.monotonic() - started < 10
    assert "cannot reach the KFP API" in _one_line(caught.value) and "within 0.5 s" in str(caught.value)


# --- the generated script ------------------------------------------------------------------------------


@pytest.fixture
def script(tmp_path, make_nb, convert):
    text, _ = convert(make_nb(CELLS), name="deploy_me", pipeline_description="Deployment test")
    path = tmp_path / "deploy_me_pipeline.py"
    path.write_text(text, encoding="utf-8")
    return path


def _run_script(path, *args, **env):
    return subprocess.run([sys.executable, str(path), *args], cwd=path.parent, capture_output=True, text=True,
                          timeout=120, env=_env(path.parent / "home", **env))


def test_script_upload_then_run_reports_ids_and_the_run_url(fake_kfp, script):
    fake_kfp.require_token = TOKEN
    first = _run_script(script, "--host", fake_kfp.url, "--upload", KF_PIPELINES_TOKEN=TOKEN)
    assert first.returncode == 0, first.stderr
    second = _run_script(script, "--host", fake_kfp.url, "--run", "--experiment", "exp-1", "-p", "SEED", "5",
                         KF_PIPELINES_TOKEN=TOKEN)
    assert second.returncode == 0, second.stderr
    [pipeline] = fake_kfp.pipelines.values()
    assert pipeline["display_name"] == "deploy-me" and pipeline["description"] == "Deployment test"
    # The run's parameters travel with the run: the version uploaded first holds this pipeline, so it is reused.
    [first_version] = fake_kfp.versions[pipeline["pipeline_id"]]
    assert f"Uploaded new pipeline 'deploy-me' (pipeline id {pipeline['pipeline_id']}" in first.stdout
    assert "Unchanged: reusing the version of pipeline 'deploy-me'" in second.stdout
    assert first_version["pipeline_version_id"] in second.stdout
    [run] = fake_kfp.runs.values()
    assert f"Run URL: {fake_kfp.url}/#/runs/details/{run['run_id']}" in second.stdout
    assert run["pipeline_version_reference"]["pipeline_version_id"] == first_version["pipeline_version_id"]
    assert run["runtime_config"]["parameters"] == {"SEED": 5}
    assert [e["display_name"] for e in fake_kfp.experiments.values()] == ["exp-1"]
    assert "pipeline_spec" not in fake_kfp.calls("POST", "/runs")[0].body
    # --upload with -p sets the defaults of the uploaded package: another pipeline, so another version,
    # named by the hash of its content.
    third = _run_script(script, "--host", fake_kfp.url, "--upload", "-p", "SEED", "5", KF_PIPELINES_TOKEN=TOKEN)
    assert third.returncode == 0, third.stderr
    _, second_version = fake_kfp.versions[pipeline["pipeline_id"]]
    assert re.fullmatch(r"deploy-me-[0-9a-f]{12}", second_version["display_name"])
    assert "Added a version to pipeline 'deploy-me'" in third.stdout
    spec = yaml.safe_load(fake_kfp.packages[second_version["pipeline_version_id"]])
    assert spec["root"]["inputDefinitions"]["parameters"]["SEED"]["defaultValue"] == 5
    for result in (first, second, third):
        assert TOKEN not in result.stdout + result.stderr


def test_script_failures_exit_1_with_one_clear_line(fake_kfp, script):
    fake_kfp.require_token = TOKEN
    result = _run_script(script, "--host", fake_kfp.url, "--upload", KF_PIPELINES_TOKEN="not-" + TOKEN)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and TOKEN not in result.stderr + result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Deployment failed: connecting to KFP failed at {fake_kfp.url}: HTTP 401")


def test_script_deploy_options_are_checked(script):
    from nbconvert_kfp.script.cli import parse_arguments

    namespace = runpy.run_path(str(script), run_name="deploy_options_test")

    def parse(argv):
        return parse_arguments(namespace, argv)

    args = parse(["--run", "--host", "https://kfp.example.com", "--namespace", "team-a"])
    assert (args.run, args.host, args.namespace, args.experiment) == (True, "https://kfp.example.com", "team-a", None)
    for argv in (["--local", "--run"], ["--host", "https://kfp.example.com"], ["--namespace", "x"]):
        with pytest.raises(SystemExit) as caught:
            parse(argv)
        assert caught.value.code == 2
