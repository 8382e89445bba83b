"""Step log: the log of a step of a KFP run, read from the KFP API server or from the KFP UI's server.

KFP's v2beta1 API gives each task's pods (``pod_name``, ``child_tasks``) but has no log call.
Two HTTP endpoints outside it serve a pod's log, and this module tries them in turn:

- the API server's ``GET /apis/v1alpha1/runs/{run_id}/nodes/{pod}/log`` (the pod's main
  container while the pod exists, else the run's archived log where the backend archives logs);
- the KFP UI server's ``GET /k8s/pod/logs?podname=&runid=&podnamespace=``, which its *Logs*
  tab shows (the host is then the KFP UI or the Kubeflow gateway, ``https://HOST/pipeline``).

When neither answers, ``LogUnavailable`` says why and what to do. Standard library and kfp only.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from ..exceptions import ScriptError


class LogUnavailable(ScriptError):
    """No endpoint of this host served the log; the message says why, in one line, without secrets."""


def _endpoints(run_id: str, pod: str, namespace: str | None) -> list[tuple[str, dict]]:
    ui_query = {"podname": pod, "runid": run_id}
    if namespace:
        ui_query["podnamespace"] = namespace
    return [(f"/apis/v1alpha1/runs/{quote(run_id, safe='')}/nodes/{quote(pod, safe='')}/log", {}),
            ("/k8s/pod/logs", ui_query)]


def _error_text(body) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        data = None
    if isinstance(data, dict):
        body = data.get("error_message") or data.get("message") or data.get("error") or ""
    return " ".join(str(body or "").split())


def read(kfp_client, run_id: str, pod: str, namespace: str | None = None) -> str:
    """The log of ``pod`` of run ``run_id``; raise LogUnavailable when this host serves it nowhere."""
    from kfp_server_api.exceptions import ApiException

    from .deployment import _secret_free, _token, raw_request

    reasons = []
    for path, query in _endpoints(run_id, pod, namespace):
        try:
            response = raw_request(kfp_client, "GET", path, query=query)
        except ApiException as error:
            message = _secret_free(_error_text(error.body), _token(kfp_client), 200)
            reasons.append(f"{path.split('?')[0].rsplit('/runs/', 1)[0]}…: HTTP {error.status}"
                           + (f" {message}" if message else ""))
            continue
        except Exception as error:  # urllib3 and socket errors
            reasons.append(f"{type(error).__name__}: {error}")
            continue
        if "text/html" in response.headers.get("Content-Type", ""):  # a UI's index page, not a log
            reasons.append(f"{path}: a web page, not a log")
            continue
        return response.data.decode("utf-8", "replace")
    where = f" (namespace {namespace})" if namespace else ""
    text = (f"the log of pod {pod}{where} is not available from this host: {'; '.join(reasons)}. KFP serves logs "
            f"from the API server's /apis/v1alpha1 log endpoint or the KFP UI's /k8s/pod/logs; with cluster "
            f"access, run: kubectl logs {pod} -c main" + (f" -n {namespace}" if namespace else ""))
    raise LogUnavailable(_secret_free(text, _token(kfp_client)))
