"""Data files in runs: a local rerun recomputes exactly the steps whose files changed; a run the way a
cluster runs it (steps in an empty working directory, the pipeline's cluster settings) finds the files,
embedded in the pipeline or brought from an S3-compatible object store started on 127.0.0.1."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import textwrap
import uuid
from pathlib import Path

import nbformat
import pytest

from helpers import PYTHON, build_notebook, nbconvert, run, script_constant

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local runs fork (Linux)")

STEP_LINE = re.compile(r"^  (started|finished|FAILED|cached) +(\S+)", re.MULTILINE)
CELLS = [
    (["imports"], "import json"),
    (["step:load"], 'DATA = "data/"\nwith open(DATA + "rows.csv") as fh:\n    rows = fh.read().split()'),
    (["step:config"], 'settings = json.load(open("settings.json"))\nscale = settings["scale"]'),
    (["step:total"], "total = sum(float(r) for r in rows[1:]) * scale\nprint('TOTAL', total)"),
    (["pipeline-metrics"], "total"),
]


def _notebook(folder: Path, rows: bytes = b"x\n1\n2\n3\n") -> Path:
    (folder / "data").mkdir(exist_ok=True)
    (folder / "data" / "rows.csv").write_bytes(rows)
    (folder / "settings.json").write_text('{"scale": 2}')
    path = folder / "flow.ipynb"
    nbformat.write(build_notebook(CELLS), path)
    return path


def _convert(notebook: Path, *options: str) -> Path:
    result = nbconvert(["--to", "kfp", notebook.name, *options], cwd=notebook.parent, merge=True)
    assert result.returncode == 0, result.stdout
    assert "data file data/rows.csv (8 B) read by step load (cell 2)" in result.stdout, result.stdout
    return notebook.with_name(notebook.stem + "_pipeline.py")


def test_a_local_rerun_recomputes_the_steps_whose_files_changed_and_nothing_else(tmp_path):
    script = _convert(_notebook(tmp_path))
    first = run([PYTHON, script.name, "--local"], cwd=tmp_path, timeout=300)
    assert first.returncode == 0 and "metric total = 12.0" in first.stdout, first.stdout
    unchanged = run([PYTHON, script.name, "--local"], cwd=tmp_path, timeout=300)
    assert {step for event, step in STEP_LINE.findall(unchanged.stdout) if event == "cached"} == {
        "load", "config", "total"}, unchanged.stdout
    (tmp_path / "data" / "rows.csv").write_text("x\n10\n2\n3\n")
    changed = run([PYTHON, script.name, "--local"], cwd=tmp_path, timeout=300)
    events = STEP_LINE.findall(changed.stdout)
    assert ("finished", "load") in events and ("finished", "total") in events, changed.stdout
    assert ("cached", "config") in events and ("started", "config") not in events, changed.stdout
    assert "metric total = 30.0" in changed.stdout, changed.stdout


# --- as a cluster runs it --------------------------------------------------------------------------

#: Runs a generated script's pipeline with its cluster settings (not --local) through kfp.local, from an
#: empty working directory; importer artifacts at s3:// URIs are downloaded first to where KFP's launcher
#: puts them (/s3/BUCKET/KEY), from the S3 endpoint in $TEST_S3_ENDPOINT.
DRIVER = textwrap.dedent("""
    import importlib.util, os, sys, tempfile
    script, root = sys.argv[1], sys.argv[2]
    os.environ.pop("NBCONVERT_KFP_LOCAL_RUN", None)
    sys.argv = [script]
    spec = importlib.util.spec_from_file_location("generated", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not module.LOCAL_RUN
    from kfp import local
    from kfp.local import importer_handler

    original = importer_handler.run_importer

    def run_importer(*args, **kwargs):
        outputs, status = original(*args, **kwargs)
        import boto3
        client = boto3.client("s3", endpoint_url=os.environ["TEST_S3_ENDPOINT"])
        for artifact in outputs.values():
            bucket, _, prefix = artifact.uri[len("s3://"):].partition("/")
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
                for entry in page.get("Contents", []):
                    target = os.path.join("/s3", bucket, entry["Key"])
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    client.download_file(bucket, entry["Key"], target)
        return outputs, status

    importer_handler.run_importer = run_importer
    os.chdir(tempfile.mkdtemp(prefix="pod-"))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    module.pipeline()
    print("PIPELINE OK")
""")
NO_INSTALLS = ("--KFPExporter.install_packages=False", "--KFPExporter.install_kfp_package=False")


def _cluster_like(script: Path, tmp_path: Path, **env: str):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return run([PYTHON, str(driver), str(script), str(tmp_path / "root")], cwd=tmp_path, timeout=300, **env)


def test_embedded_files_reach_steps_that_run_in_an_empty_folder(tmp_path):
    script = _convert(_notebook(tmp_path), *NO_INSTALLS)
    assert {item["via"] for item in script_constant(script, "DATA").values()} == {"embedded"}
    result = _cluster_like(script, tmp_path, TEST_S3_ENDPOINT="http://127.0.0.1:9")
    assert "PIPELINE OK" in result.stdout, result.stdout[-3000:]
    assert "TOTAL 12.0" in result.stdout


@pytest.fixture
def s3_server():
    """An S3-compatible server (moto's) on 127.0.0.1, with a bucket and credentials in the environment."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "TEST_S3_ENDPOINT": endpoint}
    bucket = f"nbkfp-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    try:
        yield bucket, env
    finally:
        server.stop()
        shutil.rmtree(Path("/s3") / bucket, ignore_errors=True)


def test_large_files_go_through_the_object_store_and_reach_the_steps(tmp_path, s3_server):
    if os.geteuid() != 0:
        pytest.skip("the launcher's download folder /s3 needs root, as in a pod")
    bucket, env = s3_server
    rows = b"x\n" + b"\n".join(str(n).encode() for n in range(60_000)) + b"\n"
    notebook = _notebook(tmp_path, rows)
    result = nbconvert(["--to", "kfp", notebook.name, *NO_INSTALLS,
                  f"--KFPExporter.data_root=s3://{bucket}/data", "--KFPExporter.data_files=store"], cwd=tmp_path, merge=True)
    assert result.returncode == 0, result.stdout
    script = tmp_path / "flow_pipeline.py"
    data = script_constant(script, "DATA")
    assert {item["via"] for item in data.values()} == {"store"}

    pushed = run([PYTHON, script.name, "--push-data"], cwd=tmp_path, **env)
    assert pushed.returncode == 0, pushed.stdout
    digest = data["data/rows.csv"]["digest"]
    assert f"Copied data/rows.csv ({len(rows)} bytes) to s3://{bucket}/data/{digest}/" in pushed.stdout
    again = run([PYTHON, script.name, "--push-data"], cwd=tmp_path, **env)
    assert again.returncode == 0 and "Copied" not in again.stdout, again.stdout  # already there: not sent again

    result = _cluster_like(script, tmp_path, **env)
    assert "PIPELINE OK" in result.stdout, result.stdout[-3000:]
    assert f"TOTAL {float(sum(range(60_000))) * 2}" in result.stdout

    (tmp_path / "data" / "rows.csv").write_bytes(rows + b"7\n")
    stale = run([PYTHON, script.name, "--push-data"], cwd=tmp_path, **env)
    assert stale.returncode == 1, stale.stdout
    assert "data/rows.csv changed since the notebook was converted: convert it again" in stale.stdout
    assert "Traceback" not in stale.stdout
