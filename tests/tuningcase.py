"""The tuning notebook, its Katib metadata and the stand-ins of a cluster, for the tuning tests of every tier."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import yaml

from nbconvert_kfp.exporters import KFPExporter
from nbconvert_kfp.script.tuning.searchspace import Search

from helpers import VENV_BIN, build_notebook

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


def search_of(katib_metadata, cells=CELLS) -> Search:
    _, resources = convert(cells, katib_metadata)
    return Search.from_data(resources["kfp"]["tuning"])


def stand_in(tmp_path, katib_metadata) -> Path:
    path = tmp_path / "stand_in_pipeline.py"
    path.write_text(STAND_IN % (search_of(katib_metadata).to_data(),), encoding="utf-8")
    return path


def check_with_katib(manifest: dict) -> None:
    """Check an Experiment with Katib's API models and the rules of Katib's admission webhook that apply to it."""
    from kubeflow_katib_api.models import (
        IoK8sApiCoreV1PodTemplateSpec,
        V1beta1Experiment,
    )

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
