"""The Jupyter server extension: a real `jupyter server` on a loopback port, its API, its auth.

The server is enabled by the same config file that the package installs
(jupyter-config/jupyter_server_config.d/nbconvert_kfp.json), placed in a temporary
JUPYTER_CONFIG_DIR. Deployments go to the fake KFP API of tests/fakekfp.py.
"""

from __future__ import annotations

import contextlib
import copy
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest
import yaml
from fakekfp import FakeKFP, SilentHost

from nbconvert_kfp.exporters import compile_script
from helpers import REPO, free_port, stop_process

ROOT = REPO
ENABLE_FILE = ROOT / "jupyter-config" / "jupyter_server_config.d" / "nbconvert_kfp.json"
KFP_TOKEN = "kfp-0d9c4e7a15b36f82e4a9c1d07b5e3f6a28c4d91e"
ALLOWED_HOST = "kfp.allowed.example:8443"
DEPLOY_TIMEOUT = 20


class Server:
    """A running `jupyter server` and helpers to call it."""

    def __init__(self, url: str, token: str, process: subprocess.Popen, log: Path):
        self.url, self.token, self.process, self.log = url, token, process, log

    def post(self, path: str, body, token: str | None = "default", headers=None, opener=None):
        """POST JSON (or raw bytes); return (status, parsed JSON or text)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        token = self.token if token == "default" else token
        if token:
            request.add_header("Authorization", f"token {token}")
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=90) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


@pytest.fixture(scope="module")
def fake_kfp_module():
    with FakeKFP() as server:
        yield server


@contextlib.contextmanager
def _jupyter_server(base: Path, kfp_url: str, policy: dict):
    """A `jupyter server` with the extension enabled, deploying to ``kfp_url`` under ``policy`` (DeployPolicy)."""
    config = base / "config" / "jupyter_server_config.d"
    config.mkdir(parents=True)
    shutil.copy(ENABLE_FILE, config)  # what installing the package puts in etc/jupyter
    (base / "root").mkdir()
    token, port = secrets.token_hex(16), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KF_PIPELINES", "JUPYTER"))}
    env.update(HOME=str(base / "home"), JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), KF_PIPELINES_TOKEN=KFP_TOKEN,
               KF_PIPELINES_ENDPOINT=kfp_url)
    (config.parent / "jupyter_server_config.json").write_text(json.dumps({"DeployPolicy": policy}))
    log = base / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "jupyter"), "server", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={base / 'root'}"],
            cwd=base, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("jupyter server did not start:\n" + log.read_text()) from None
                time.sleep(0.2)
        yield Server(url, token, process, log)
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fake_kfp_module):
    # Deployments may also go to this https host; a slow one gives up after DEPLOY_TIMEOUT seconds.
    with _jupyter_server(tmp_path_factory.mktemp("jupyter"), fake_kfp_module.url,
                         {"allowed_hosts": [ALLOWED_HOST], "timeout": DEPLOY_TIMEOUT}) as running:
        yield running


def _notebook(tags_of_cell_2=("step:train", "prev:load")) -> dict:
    """A notebook as a browser sends it: nbformat JSON whose cell sources are lists of lines."""
    cells = [
        nbformat.v4.new_code_cell("SEED = 1\nRATE = 0.5", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("data = list(range(SEED + 3))\nprint(len(data))", metadata={"tags": ["step:load"]}),
        nbformat.v4.new_code_cell("model = sum(data) * RATE", metadata={"tags": list(tags_of_cell_2)}),
    ]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    data = json.loads(nbformat.writes(nb))
    for cell in data["cells"]:
        cell["source"] = cell["source"].splitlines(keepends=True) if isinstance(cell["source"], str) else cell["source"]
    assert isinstance(data["cells"][1]["source"], list) and len(data["cells"][1]["source"]) == 2
    return data


CONVERT = "/nbconvert-kfp/api/convert"
DEPLOY = "/nbconvert-kfp/api/deploy"


def test_the_installed_config_file_enables_the_extension():
    assert json.loads(ENABLE_FILE.read_text()) == {"ServerApp": {"jpserver_extensions": {"nbconvert_kfp": True}}}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = project["tool"]["setuptools"]["data-files"]["etc/jupyter/jupyter_server_config.d"]
    assert shipped == ["jupyter-config/jupyter_server_config.d/nbconvert_kfp.json"]
    # jupyter_server is the 'server' extra (JupyterLab brings it), not a dependency of the CLI
    assert any(d.startswith("jupyter_server") for d in project["project"]["optional-dependencies"]["server"])
    assert not any(d.startswith("jupyter_server") for d in project["project"]["dependencies"])
    import nbconvert_kfp  # the package stays import-light: the hooks import the server lazily

    assert nbconvert_kfp._jupyter_server_extension_points() == [{"module": "nbconvert_kfp"}]
    code = "import sys, nbconvert_kfp; sys.exit('jupyter_server' in sys.modules or 'tornado' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_unauthenticated_requests_are_refused(server):
    body = {"notebook": _notebook()}
    status, reply = server.post(CONVERT, body, token=None)
    assert status == 403
    status, _ = server.post(CONVERT, body, token="not-the-token")
    assert status == 403
    # With a matching XSRF cookie and header but no credentials, authentication still refuses.
    status, _ = server.post(CONVERT, body, token=None, headers={"Cookie": "_xsrf=00ff", "X-XSRFToken": "00ff"})
    assert status == 403
    assert "Traceback" not in server.log.read_text()


def test_a_browser_session_needs_the_xsrf_token(server):
    """A cookie-authenticated request (a browser logged in with the token) passes only with XSRF."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{server.url}/login", timeout=10).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"_xsrf": xsrf, "password": server.token}).encode()
    opener.open(urllib.request.Request(f"{server.url}/login", data=form), timeout=10).read()
    assert any(c.name.startswith("username-") for c in jar)
    body = {"notebook": _notebook()}
    status, reply = server.post(CONVERT, body, token=None, opener=opener)
    assert status == 403 and "xsrf" in reply["message"].lower()
    status, reply = server.post(CONVERT, body, token=None, opener=opener, headers={"X-XSRFToken": xsrf})
    assert status == 200, reply


def test_convert_returns_a_script_that_compiles_its_yaml_and_the_dag(server, tmp_path):
    body = {"notebook": _notebook(), "name": "my notebook.ipynb",
            "options": {"pipeline_name": "api-pipe", "pipeline_description": "From the API",
                        "base_image": "python:3.11-slim", "experiment": "api-exp",
                        "parameters": {"SEED": 4, "RATE": "0.25"}}}
    status, reply = server.post(CONVERT, body)
    assert status == 200, reply
    assert reply["filename"] == "my notebook_pipeline.py"
    assert reply["pipeline_name"] == "api-pipe" and reply["experiment"] == "api-exp"
    assert 'EXPERIMENT = "api-exp"' in reply["script"] and 'BASE_IMAGE = "python:3.11-slim"' in reply["script"]
    spec = yaml.safe_load(reply["yaml"])
    assert spec["pipelineInfo"] == {"name": "api-pipe", "description": "From the API"}
    defaults = {n: p["defaultValue"] for n, p in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert defaults == {"SEED": 4, "RATE": 0.25}
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {"python:3.11-slim"}
    # The script the user downloads compiles, as a file run by Python, to the same pipeline.
    script = tmp_path / reply["filename"].replace(" ", "_")
    script.write_text(reply["script"], encoding="utf-8")
    run = subprocess.run([sys.executable, str(script), "-p", "SEED", "4", "-p", "RATE", "0.25"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert yaml.safe_load(script.with_suffix(".yaml").read_text())["root"] == spec["root"]
    svg = ET.fromstring(reply["dag"])
    steps = [g.get("data-step") for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "step"]
    assert steps == ["load", "train"]
    assert reply["mermaid"].startswith("flowchart TD")


@pytest.mark.parametrize(("body", "status", "expected"), [
    ({"notebook": _notebook(("step:train", "prev:lod"))}, 400,
     {"cell_index": 2, "cell_number": 3, "subject": "prev:lod", "message": re.compile(r"^cell 3: tag 'prev:lod' names step 'lod'")}),
    ({"notebook": _notebook(("step:;",))}, 400, {"cell_index": 2, "subject": "step:;"}),
    (b"{not json", 400, {"message": re.compile("^the body is not JSON")}),
    ({"notebook": {"cells": "nope"}}, 400, {"message": re.compile("^not a valid notebook")}),
    ({"notebook": _notebook(), "options": {"template_file": "x"}}, 400, {"message": re.compile("^unknown options")}),
    ({"notebook": _notebook(), "options": {"parameters": {"SEED": "many"}}}, 400,
     {"message": "parameter 'SEED': expected an integer, got 'many'"}),
    ({"notebook": _notebook(), "options": {"parameters": {"EPOCHS": 3}}}, 400,
     {"message": "unknown parameters EPOCHS; the pipeline's: SEED, RATE"}),
])
def test_bad_requests_get_400_with_json_naming_the_problem(server, body, status, expected):
    got, reply = server.post(CONVERT, body)
    assert got == status, reply
    for key, value in expected.items():
        assert value.search(reply[key]) if isinstance(value, re.Pattern) else reply[key] == value, reply


def test_deploy_through_the_api_uploads_versions_and_runs(server, fake_kfp_module):
    kfp = fake_kfp_module
    kfp.require_token = KFP_TOKEN  # the Jupyter server's own credentials (KF_PIPELINES_TOKEN)
    body = {"notebook": _notebook(), "name": "deployed.ipynb", "host": kfp.url,
            "options": {"experiment": "from-jupyter", "parameters": {"SEED": 9}}}
    status, first = server.post(DEPLOY, body)
    assert status == 200, first
    assert first["created"] and "run_id" not in first
    status, second = server.post(DEPLOY, dict(copy.deepcopy(body), run=True))
    assert status == 200, second
    assert second["pipeline_id"] == first["pipeline_id"] and second["version_id"] != first["version_id"]
    assert [p["display_name"] for p in kfp.pipelines.values()] == ["deployed"]
    assert len(kfp.versions[first["pipeline_id"]]) == 2
    assert second["run_url"] == f"{kfp.url}/#/runs/details/{second['run_id']}"
    run = kfp.runs[second["run_id"]]
    assert run["pipeline_version_reference"]["pipeline_version_id"] == second["version_id"]
    assert run["runtime_config"]["parameters"] == {"SEED": 9}
    assert [e["display_name"] for e in kfp.experiments.values()] == ["from-jupyter"]
    assert {r.headers.get("authorization") for r in kfp.requests} == {f"Bearer {KFP_TOKEN}"}

    kfp.fail("POST", "/runs", 500, "the database is down")
    status, reply = server.post(DEPLOY, dict(body, run=True))
    assert status == 502
    assert re.match(r"^starting run '.*' failed at http://127\.0\.0\.1:\d+: HTTP 500: the database is down",
                    reply["message"])
    status, reply = server.post(DEPLOY, dict(body, host="ftp://nowhere"))
    assert status == 400 and "host" in reply["message"]
    assert KFP_TOKEN not in server.log.read_text()


def test_conversion_warnings_and_parameter_values_in_process():
    """The API's work, without a server: warnings go to the reply; values are read as -p reads them."""
    from nbconvert_kfp import serverextension

    nb = _notebook()
    nb["cells"][1]["source"] = ["import nosuchmodule_for_this_test\n", "data = [SEED]\n"]
    reply = serverextension.convert({"notebook": nb, "options": {"parameters": {"SEED": "7", "RATE": 1}}})
    assert any("nosuchmodule_for_this_test" in w for w in reply["warnings"])
    assert reply["arguments"] == {"SEED": 7, "RATE": 1.0} and isinstance(reply["arguments"]["RATE"], float)
    assert compile_script(reply["script"], reply["arguments"]) == reply["yaml"]
    with pytest.raises(serverextension.RequestError, match='"run" must be true or false'):
        serverextension.deploy({"notebook": nb, "run": "yes"})


# --- hardening -------------------------------------------------------------------------------------------

def _token_pieces(text: str) -> list[str]:
    """The 6-character pieces of the server's KFP token that ``text`` shows."""
    return [KFP_TOKEN[i:i + 6] for i in range(len(KFP_TOKEN) - 5) if KFP_TOKEN[i:i + 6] in text]


def test_a_502_never_shows_a_part_of_the_token_a_kfp_server_echoes(server, fake_kfp_module):
    kfp = fake_kfp_module
    body = {"notebook": _notebook(), "name": "echo.ipynb"}
    try:
        for padding in range(250, 300, 9):  # the token starts before, at and after the cut of the message
            kfp.echo_authorization = "." * padding + " refused: {authorization}"
            status, reply = server.post(DEPLOY, body)
            assert status == 502, reply
            assert "HTTP 401" in reply["message"] and _token_pieces(json.dumps(reply)) == [], reply
    finally:
        kfp.echo_authorization = None
    assert _token_pieces(server.log.read_text()) == []


@pytest.mark.parametrize("host", ["http://127.0.0.1:9", "https://attacker.example", "http://kfp.allowed.example:8443"])
def test_the_credentials_go_only_to_the_configured_or_allowed_hosts(server, fake_kfp_module, host):
    before = len(fake_kfp_module.requests)
    status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "elsewhere.ipynb", "host": host})
    assert status == 403, reply
    assert repr(host) in reply["message"] and "allowed_hosts" in reply["message"]
    assert len(fake_kfp_module.requests) == before


@pytest.fixture(scope="module")
def attacker():
    """Another server on 127.0.0.1 that records every connection and request it gets."""
    with FakeKFP() as server:
        yield server


#: Host texts that name the configured host to one URL parser and the attacker to another, or
#: hide the attacker behind user info, percent-encoding, brackets, case, dots or whitespace.
DISGUISES = [
    "http://{a}\\@{k}/pipeline", "http://{a}\\\\@{k}", "HTTP://{a}\\@{k}/pipeline", "http://{a}@{k}",
    "http://user:pass@{k}", "http://{a}\\@{k}./pipeline", "http://{a}\\@[::ffff:127.0.0.1]:{kp}",
    "http://127.0.0.1%3A{ap}\\@{k}", "http://{a}%5C@{k}", "http://{a}\t@{k}", " http://{a}\\@{k}",
    "http://{a}\\@{k} ", "http://{a}\x00@{k}", "http://{a}\r\n@{k}", "http://{a}#@{k}", "http://{a}?@{k}",
    "https://{a}\\@" + ALLOWED_HOST + "/pipeline", "https://{a}@" + ALLOWED_HOST, "https://{a}\\@KFP.Allowed.Example.:8443",
]


@pytest.mark.parametrize("disguise", DISGUISES)
def test_no_host_disguise_sends_the_credentials_to_another_server(server, fake_kfp_module, attacker, disguise):
    kfp_address, attacker_address = fake_kfp_module.url.split("//")[1], attacker.url.split("//")[1]
    host = disguise.format(a=attacker_address, k=kfp_address, ap=attacker_address.split(":")[1],
                           kp=kfp_address.split(":")[1])
    status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "disguised.ipynb", "host": host})
    assert status in (400, 403), reply
    assert attacker.connections == 0 and attacker.requests == []
    assert "host" in reply["message"] and "\n" not in reply["message"]


def test_a_host_in_another_case_or_with_a_slash_still_reaches_the_configured_server(server, fake_kfp_module, attacker):
    before = len(fake_kfp_module.requests)
    host = fake_kfp_module.url.replace("http://", "HTTP://") + "/"
    status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "cased.ipynb", "host": host})
    assert status == 200, reply
    assert len(fake_kfp_module.requests) > before and attacker.connections == 0


def test_an_allowed_https_host_is_tried(server):
    # Nothing listens there: the deployment is attempted (502), not refused (403).
    status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "allowed.ipynb",
                                         "host": f"https://{ALLOWED_HOST}/pipeline"})
    assert status == 502, reply
    assert ALLOWED_HOST in reply["message"]


def test_a_slow_kfp_host_never_blocks_a_conversion(server, fake_kfp_module):
    import threading

    kfp = fake_kfp_module
    kfp.hold, replies = threading.Event(), []
    kfp.request_arrived.clear()
    deploying = threading.Thread(target=lambda: replies.append(
        server.post(DEPLOY, {"notebook": _notebook(), "name": "slow.ipynb"})))
    deploying.start()
    try:
        assert kfp.request_arrived.wait(60), "the deployment never reached KFP"
        status, reply = server.post(CONVERT, {"notebook": _notebook(), "name": "meanwhile.ipynb"})
        assert status == 200, reply
        assert deploying.is_alive() and not replies  # the conversion finished while KFP held the deployment
    finally:
        kfp.hold.set()
        kfp.hold = None
        deploying.join(90)
    [(status, reply)] = replies
    assert status == 200, reply


def _deep(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _notebook_with(change) -> dict:
    notebook = _notebook()
    change(notebook)
    return notebook


@pytest.mark.parametrize("body, expected", [
    (b'{"notebook": ' + b"[" * 50000 + b"]" * 50000 + b"}", {"message": re.compile("nests deeper")}),
    ({"notebook": _notebook(), "options": {"parameters": {"SEED": _deep(500)}}},
     {"message": re.compile("nests deeper")}),
    (b'{"notebook": %s, "options": {"parameters": {"RATE": NaN}}}' % json.dumps(_notebook()).encode(),
     {"message": re.compile("NaN is not a JSON value")}),
    (b'{"notebook": %s, "options": {"parameters": {"RATE": Infinity}}}' % json.dumps(_notebook()).encode(),
     {"message": re.compile("Infinity is not a JSON value")}),
    ({"notebook": _notebook(), "options": {"parameters": {"RATE": "inf"}}},
     {"message": "parameter 'RATE': inf cannot go into a compiled KFP pipeline (finite numbers only)"}),
    ({"notebook": _notebook(), "options": {"parameters": {"RATE": 10 ** 400}}},
     {"message": re.compile("^parameter 'RATE': a 401-digit integer is too large")}),
    ({"notebook": _notebook(), "name": "n" * 5000 + ".ipynb"}, {"message": re.compile('^"name" must be a file name')}),
    ({"notebook": _notebook_with(lambda nb: nb["cells"][1]["metadata"].update(tags="step:load"))},
     {"cell_number": 2, "subject": "metadata.tags", "message": re.compile("^cell 2: .*metadata.tags")}),
    ({"notebook": _notebook_with(lambda nb: nb["cells"][2]["metadata"].update(tags=[1]))},
     {"cell_number": 3, "message": re.compile("^cell 3: .*metadata.tags")}),
])
def test_hostile_bodies_get_400_naming_the_problem(server, body, expected):
    status, reply = server.post(CONVERT, body)
    assert status == 400, reply
    for key, value in expected.items():
        assert value.search(reply[key]) if isinstance(value, re.Pattern) else reply[key] == value, reply


def test_a_string_parameter_cannot_add_keys_to_the_yaml(server):
    injected = "x\nsdkVersion: evil\ndefaultPipelineRoot: s3://attacker/loot\n#\x1b\x85\u2028"
    notebook = _notebook_with(lambda nb: nb["cells"][0].update(source=["SEED = 1\n", "RATE = 0.5\n", "LABEL = 'a'"]))
    status, reply = server.post(CONVERT, {"notebook": notebook, "options": {"parameters": {"LABEL": injected}}})
    assert status == 200, reply
    [document] = yaml.safe_load_all(reply["yaml"])
    assert set(document) == {"components", "deploymentSpec", "pipelineInfo", "root", "schemaVersion", "sdkVersion"}
    assert document["root"]["inputDefinitions"]["parameters"]["LABEL"]["defaultValue"] == injected


def test_the_file_menu_export_of_a_bad_notebook_is_a_400_naming_the_cell(server):
    root = server.log.parent / "root"
    good = _notebook()
    (root / "good.ipynb").write_text(json.dumps(good))
    bad = _notebook(tags_of_cell_2=("step:train", "prev:nowhere"))
    (root / "bad.ipynb").write_text(json.dumps(bad))
    for name, expected in (("good.ipynb", 200), ("bad.ipynb", 400)):
        request = urllib.request.Request(f"{server.url}/nbconvert/kfp/{name}?download=true",
                                         headers={"Authorization": f"token {server.token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        assert status == expected, text[:500]
        if expected == 200:
            assert "@dsl.pipeline" in text
        else:
            assert "The notebook cannot become a KFP pipeline" in text
            assert "cell 3" in text and "nowhere" in text and "Internal Server Error" not in text


# --- conversions at the same time -------------------------------------------------------------------------


def _marked(marker: str) -> dict:
    return _notebook_with(lambda nb: nb["cells"][1]["source"].extend([f"\nimport nosuchmodule_{marker}\n"]))


def test_conversions_asked_at_the_same_time_all_succeed_each_with_its_own_warnings():
    """Requests arrive together; each conversion replies with its script and only its own warnings (they
    run one at a time: kfp's compiler and CPython 3.11's syntax trees are not safe in several threads)."""
    import threading

    from nbconvert_kfp import serverextension

    markers = [f"n{index}" for index in range(6)]
    replies: dict[str, object] = {}
    start = threading.Barrier(len(markers))

    def convert(marker: str) -> None:
        start.wait(30)
        try:
            replies[marker] = serverextension.convert({"notebook": _marked(marker), "name": f"{marker}.ipynb"})
        except Exception as error:  # checked below
            replies[marker] = error

    threads = [threading.Thread(target=convert, args=(marker,), daemon=True) for marker in markers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for marker in markers:
        reply = replies[marker]
        assert isinstance(reply, dict) and reply["yaml"], reply
        warnings = " ".join(reply["warnings"])
        assert f"nosuchmodule_{marker}" in warnings, warnings
        assert not any(f"nosuchmodule_{other}" in warnings for other in markers if other != marker), warnings


def test_a_notebook_of_more_steps_than_the_server_converts_is_refused_at_once_naming_the_step():
    """ConvertPolicy.max_steps: a NotebookError, which the API answers with 400 and the cell."""
    from traitlets.config import Config

    from nbconvert_kfp import serverextension
    from nbconvert_kfp.errors import NotebookError

    notebook = _notebook()
    for index in range(6):
        cell = copy.deepcopy(notebook["cells"][2])
        cell.update(id=f"more{index}", source=[f"model_{index} = model + {index}"],
                    metadata={"tags": [f"step:more{index}"]})
        notebook["cells"].append(cell)
    config = Config({"ConvertPolicy": {"max_steps": 5}})
    start = time.monotonic()
    with pytest.raises(NotebookError) as caught:
        serverextension.convert({"notebook": notebook}, config)
    assert time.monotonic() - start < 5
    assert str(caught.value).startswith("cell 7: the notebook has 8 steps, more than the 5 this conversion takes")
    assert caught.value.subject == "more3"
    assert serverextension.convert({"notebook": notebook}, Config({"ConvertPolicy": {"max_steps": 8}}))["yaml"]


# --- deployments to a host that hangs --------------------------------------------------------------------

#: The time a deploy request has in the tests of hanging hosts, and how late its work may end.
BUDGET = 4.0
MARGIN = 1.5


def _work_threads() -> list:
    """The threads of deployments and of their requests to KFP still alive in this process."""
    import threading

    return [t for t in threading.enumerate() if t.name.startswith(("nbconvert-kfp-deploy", "nbconvert-kfp-request"))]


def _wait(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_a_deploy_to_a_silent_host_stops_with_its_budget_and_frees_its_threads(monkeypatch):
    """In process: each deploy has DeployPolicy.timeout from its start, and its requests end with it."""
    import threading

    from traitlets.config import Config

    from nbconvert_kfp import serverextension

    monkeypatch.setenv("KF_PIPELINES_TOKEN", KFP_TOKEN)
    serverextension.convert({"notebook": _notebook()})  # imports kfp, so the budgets below are the deploys'
    with SilentHost() as silent, FakeKFP() as healthy:
        config = Config({"DeployPolicy": {"host": healthy.url, "allowed_hosts": [silent.url], "timeout": BUDGET}})
        outcomes: list[tuple[str, object, float]] = []

        def deploy(host: str | None) -> None:
            start = time.monotonic()
            try:
                result: object = serverextension.deploy({"notebook": _notebook(), "name": "x.ipynb", "host": host},
                                                        config)
            except Exception as error:  # the outcome is checked below
                result = error
            outcomes.append((host or "healthy", result, time.monotonic() - start))

        threads = [threading.Thread(target=deploy, args=(silent.url,), daemon=True) for _ in range(3)]
        threads.append(threading.Thread(target=deploy, args=(None,), daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BUDGET + 10)
        assert not any(t.is_alive() for t in threads), "a deploy outlived its budget by more than 10 s"
        by_host = {host: [(r, s) for h, r, s in outcomes if h == host] for host in (silent.url, "healthy")}
        [(healthy_result, _)] = by_host["healthy"]
        assert isinstance(healthy_result, dict) and healthy_result["version_id"], healthy_result
        for result, seconds in by_host[silent.url]:
            assert isinstance(result, serverextension.DeployTimeout), result
            assert "longer than 4 s" in str(result) and "\n" not in str(result)
            assert seconds < BUDGET + MARGIN, seconds
        assert silent.accepted >= 3
        # nothing of theirs goes on: no request thread, no connection to the silent host
        assert _wait(lambda: not _work_threads() and not silent.open, MARGIN), (_work_threads(), silent.open)


@pytest.fixture(scope="module")
def hanging(tmp_path_factory):
    """A server whose deploys have BUDGET seconds, a KFP host that answers, and an allowed one that hangs."""
    with SilentHost() as silent, FakeKFP() as healthy, _jupyter_server(
            tmp_path_factory.mktemp("jupyter-hanging"), healthy.url,
            {"allowed_hosts": [silent.url], "timeout": BUDGET}) as running:
        yield running, silent, healthy


def test_a_deployment_slower_than_the_timeout_answers_504(hanging):
    server, _, healthy = hanging
    healthy.hold = hold = __import__("threading").Event()
    try:
        status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "too-slow.ipynb"})
    finally:
        hold.set()
        healthy.hold = None
    assert status == 504, reply
    assert f"longer than {BUDGET:g} s" in reply["message"]


def test_deploys_to_a_hanging_host_never_hold_up_a_deploy_to_another(hanging):
    import threading

    server, silent, healthy = hanging
    assert server.post(CONVERT, {"notebook": _notebook()})[0] == 200  # the server has imported kfp
    replies: list[tuple[int, dict, float]] = []

    def deploy() -> None:
        start = time.monotonic()
        status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "hangs.ipynb", "host": silent.url})
        replies.append((status, reply, time.monotonic() - start))

    threads = [threading.Thread(target=deploy, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert _wait(lambda: silent.accepted >= 2, BUDGET), "no deployment reached the hanging host"
    start = time.monotonic()
    status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "healthy.ipynb"})
    took = time.monotonic() - start
    assert status == 200, reply
    assert took < BUDGET and reply["version_id"]
    assert [p["display_name"] for p in healthy.pipelines.values()].count("healthy") == 1
    for thread in threads:
        thread.join(BUDGET + 15)
    assert sorted(status for status, _, _ in replies) == [503, 503, 504, 504], replies
    for status, reply, seconds in replies:
        assert "\n" not in reply["message"]
        if status == 503:  # the host's 2 slots (DeployPolicy.per_host) are taken: at once, no waiting
            assert "2 deployments to https://127.0.0.1" in reply["message"] and "in progress" in reply["message"]
            assert seconds < BUDGET / 2, seconds
        else:
            assert f"longer than {BUDGET:g} s" in reply["message"] and seconds < BUDGET + MARGIN, seconds
    # their work ended with their budget: the server closed every connection to the hanging host
    assert _wait(lambda: not silent.open, MARGIN), silent.open
    status, reply = server.post(DEPLOY, {"notebook": _notebook(), "name": "hangs.ipynb", "host": silent.url})
    assert status == 504, reply  # the slots are free again
