"""The Katib Experiment (``kubeflow.org/v1beta1``) that runs the search on a Kubernetes cluster, and its submission.

Each Katib trial is a Kubernetes Job whose one container runs the generated script with ``--local`` and
the trial's parameter values, in an image the user builds with the script, kfp and the notebook's
libraries. Trials run the pipeline in their own pod because KFP's API does not return a v2 run's
metrics (they live in ML Metadata, reachable only over its gRPC API), so a trial that only started a
KFP run could not read its objective. With ``--katib-metrics`` the script prints each Katib metric as
``nbconvert-kfp katib metric NAME=VALUE``; Katib's StdOut metrics collector reads those lines, and only
those (:data:`METRICS_FORMAT`), so numbers the notebook prints never pass for metrics.

The trial's values reach the script as environment variables that the container's ``sh -c`` command
quotes: Katib joins a container's command into one shell line, so a value in the command itself would
be read by the shell. Uses the standard library and, inside functions, PyYAML and the ``kubernetes``
package, which kfp depends on.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from .searchspace import Search
from ..exceptions import ScriptError

API_VERSION = "kubeflow.org/v1beta1"
#: What the script prints for each metric with ``--katib-metrics``.
METRIC_LINE = "nbconvert-kfp katib metric {name}={value}"
#: The metrics collector's filter: Katib reads a metric from a line only through it.
METRICS_FORMAT = r"nbconvert-kfp katib metric ([\w|-]+)=([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
#: The trial container's name (the Katib primary container).
CONTAINER = "trial"
#: The environment variable that carries parameter N's value into the trial.
VALUE_VARIABLE = "NBCONVERT_KFP_TRIAL_VALUE_{}"
#: Katib's conditions for a Job trial (its defaults for batch/v1 Job).
SUCCESS_CONDITION = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
FAILURE_CONDITION = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_|-]+$")
#: Characters a value cannot hold: Katib puts values into the trial's JSON text without escaping them.
_UNSAFE_VALUE = re.compile(r'["\\\x00-\x1f\x7f]')


class KatibError(ScriptError):
    """The Experiment cannot be written or submitted; the message is one line."""


def experiment_name(pipeline: str) -> str:
    """A valid Katib Experiment name from the pipeline's name (Katib allows 40 characters)."""
    name = re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"tune-{name}".rstrip("-")
    return name[:40].rstrip("-")


def trial_command(search: Search, script: str, python: str = "python3") -> str:
    """The trial container's shell line: the script with ``--local --katib-metrics`` and each value as a
    quoted environment variable."""
    words = [shlex.quote(python), shlex.quote(script), "--local", "--katib-metrics"]
    for index, parameter in enumerate(search.parameters):
        words += ["-p", shlex.quote(parameter.argument), f'"${VALUE_VARIABLE.format(index)}"']
    return " ".join(words)


def experiment(search: Search, pipeline: str, *, image: str, script: str, name: str | None = None,
               namespace: str | None = None, service_account: str | None = None,
               python: str = "python3") -> dict[str, Any]:
    """The Katib Experiment manifest, as plain data."""
    name = name or experiment_name(pipeline)
    if not _NAME.match(name) or len(name) > 40:
        raise KatibError(f"Katib Experiment name {name!r}: use lower-case letters, digits and '-', starting with a "
                         "letter, at most 40 characters")
    if not image.strip():
        raise KatibError("--katib-image: give the image that holds the pipeline script, kfp and the notebook's "
                         "libraries")
    objective = search.objective
    named = [("objective.objectiveMetricName", objective.metric),
             *((f"objective.additionalMetricNames[{i}]", m) for i, (m, _) in enumerate(objective.additional))]
    for key, metric in named:
        if not _METRIC_NAME.match(metric):
            raise KatibError(f"kubeflow_notebook.katib_metadata.{key}: Katib's metrics collector reads only names of "
                             f"ASCII letters, digits, '_' and '-', not {metric!r}")
    parameters = []
    for index, p in enumerate(search.parameters):
        for position, value in enumerate(p.values):
            if _UNSAFE_VALUE.search(value):
                raise KatibError(f"kubeflow_notebook.katib_metadata.parameters[{index}].feasibleSpace.list[{position}]:"
                                 f" Katib writes values into the trial unescaped, so {value!r} cannot hold a quote, "
                                 "a backslash or a control character")
        parameters.append({"name": p.name, "parameterType": p.type, "feasibleSpace": p.katib_space()})
    katib_objective: dict[str, Any] = {"type": objective.type, "objectiveMetricName": objective.metric}
    if objective.goal is not None:
        katib_objective["goal"] = objective.goal
    if objective.additional:
        katib_objective["additionalMetricNames"] = [metric for metric, _ in objective.additional]
    algorithm: dict[str, Any] = {"algorithmName": search.algorithm}
    if search.settings:
        algorithm["algorithmSettings"] = [{"name": key, "value": value} for key, value in search.settings]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{
            "name": CONTAINER,
            "image": image,
            "command": ["sh", "-c", trial_command(search, script, python)],
            "env": [{"name": VALUE_VARIABLE.format(index), "value": f"${{trialParameters.{p.name}}}"}
                    for index, p in enumerate(search.parameters)],
        }],
    }
    if service_account:
        pod["serviceAccountName"] = service_account
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": "Experiment",
        "metadata": metadata,
        "spec": {
            "objective": katib_objective,
            "algorithm": algorithm,
            "parallelTrialCount": search.parallel,
            "maxTrialCount": search.max_trials,
            "maxFailedTrialCount": search.max_failed,
            "parameters": parameters,
            "metricsCollectorSpec": {"collector": {"kind": "StdOut"},
                                     "source": {"filter": {"metricsFormat": [METRICS_FORMAT]}}},
            "trialTemplate": {
                "primaryContainerName": CONTAINER,
                "successCondition": SUCCESS_CONDITION,
                "failureCondition": FAILURE_CONDITION,
                "trialParameters": [{"name": p.name, "description": f"pipeline parameter {p.argument}",
                                     "reference": p.name} for p in search.parameters],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {"backoffLimit": 0, "template": {
                        "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                        "spec": pod}},
                },
            },
        },
    }


def experiment_of(script: str | Path, *, image: str, location: str | None = None, **options: Any) -> dict[str, Any]:
    """The Katib Experiment of a generated script's search (read from its source, not run); ``location`` is
    where the script is in the image (default ``/app/<file name>``); ``options`` as for :func:`experiment`."""
    from .tuner import TuningError, script_constants

    try:
        constants = script_constants(Path(script))
    except TuningError as err:
        raise KatibError(str(err)) from None
    if not constants["TUNING"]:
        raise KatibError("the notebook has no hyperparameter search: give it kubeflow_notebook.katib_metadata and "
                         "convert it again")
    return experiment(Search.from_data(constants["TUNING"]), constants["PIPELINE_NAME"], image=image,
                      script=location or f"/app/{Path(script).name}", **options)


def write(manifest: dict[str, Any], path: Path) -> None:
    """Write the manifest as YAML."""
    import yaml

    text = "# Katib Experiment written by nbconvert-kfp: kubectl apply -f THIS_FILE\n"
    text += yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def submit(manifest: dict[str, Any], namespace: str | None = None) -> str:
    """Create the Experiment with the Kubernetes API (kube config or in-cluster); return where it went."""
    try:
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise KatibError("--katib-submit needs the kubernetes package (kfp brings it: pip install kubernetes); or "
                         "apply the written file with kubectl") from None
    try:
        config.load_incluster_config()
        context_namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except (ConfigException, OSError):
        try:
            config.load_kube_config()
            _, context = config.list_kube_config_contexts()
            context_namespace = (context or {}).get("context", {}).get("namespace") or "default"
        except (ConfigException, OSError, TypeError) as err:
            raise KatibError(f"no Kubernetes configuration found (in-cluster or kube config): {err}") from None
    namespace = namespace or manifest["metadata"].get("namespace") or context_namespace
    name = manifest["metadata"]["name"]
    try:
        client.CustomObjectsApi().create_namespaced_custom_object(
            "kubeflow.org", "v1beta1", namespace, "experiments", manifest)
    except ApiException as err:
        reason = (err.body or err.reason or "").strip().replace("\n", " ")
        raise KatibError(f"creating Katib Experiment {namespace}/{name} failed: HTTP {err.status}: {reason[:500]}") \
            from None
    except Exception as err:  # a refused connection, TLS
        raise KatibError(f"creating Katib Experiment {namespace}/{name} failed: {err}") from None
    return f"{namespace}/{name}"
