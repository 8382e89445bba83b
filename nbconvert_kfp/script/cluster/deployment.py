"""Deployment: upload a compiled pipeline to a KFP cluster and start a run, with kfp.Client.

The generated script carries this module (``--upload``, ``--run``) and the Jupyter server
extension imports it. It uses the standard library and kfp only, and imports kfp inside
its functions, so that the steps, which install the same modules, never load kfp.Client.

- Credentials come from where kfp.Client looks: a token (``KF_PIPELINES_TOKEN``), a
  service-account token file (``KF_PIPELINES_SA_TOKEN_PATH`` or KFP's projected token),
  IAP settings, ``~/.config/kfp/context.json``, the in-cluster service or the kube
  config. TLS certificates are verified unless the caller turns that off.
- Uploading a name that exists adds a version to that pipeline; a run references the
  uploaded version rather than sending the package again. With ``reuse``, a package
  the pipeline already has is not uploaded again: versions are named by a hash of the
  compiled pipeline (``NAME-<12 hex>``), and a version of that name, or a latest
  version whose spec equals the package's, is used instead.
- Without a namespace (neither given nor in kfp's context file), a deployment from a Kubeflow
  notebook server goes to the server's own namespace (``notebookpod``).
- Every failure is a ``DeploymentError`` whose one-line message says what failed, the
  HTTP status and the server's message, and what to do. It never contains the token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
import warnings
from pathlib import Path

from . import notebookpod, redaction
from ..silence import silenced
from ..exceptions import ScriptError

#: Environment variable holding a bearer token for the KFP API.
TOKEN_ENV = "KF_PIPELINES_TOKEN"
#: kfp's own variable naming a service-account token file, and its default path.
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"

_HINTS = {
    400: "the server rejected the request; check the pipeline and its parameters",
    401: f"the server did not accept the credentials; set {TOKEN_ENV} to a valid token, or "
         f"{SA_TOKEN_ENV} to a service-account token file, or log in with your kube config",
    403: "the credentials lack permission; check --namespace and the account's KFP access",
    404: "not found; check that the host is the KFP API endpoint (for example https://HOST/pipeline)",
    409: "it already exists on the server",
}


class DeploymentError(ScriptError):
    """A deployment step failed; the message is one line, for the user, without secrets."""


class MalformedAnswer(DeploymentError):
    """The KFP API answered something of the wrong shape; the message names what was wrong."""

    def __init__(self, what: str):
        super().__init__(f"the KFP API's answer is malformed: {what}")


#: How much of a server's message an error shows.
MESSAGE_LIMIT = 300


def _secret_free(text: str, token: str | None, limit: int | None = None) -> str:
    """``text`` on one line, without terminal control sequences, with ``token`` (and any remembered
    secret) masked in the forms servers echo it (``redaction``), then, with ``limit``, cut to that
    many characters. Masking comes first, so a cut can never leave a part of the token behind."""
    from .redaction import clean

    text = " ".join(clean(text, [token]).split())
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def _server_message(body) -> str:
    """The message of a KFP error reply (google.rpc.Status JSON), else its text, on one line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body)
        text = data.get("message") or data.get("error") or body if isinstance(data, dict) else body
    except (TypeError, ValueError):
        text = body or ""
    return " ".join(str(text).split())


def describe(error: BaseException, action: str, host: str | None, token: str | None = None) -> str:
    """One line saying what failed and what to do."""
    from kfp_server_api.exceptions import ApiException

    where = f" at {host}" if host else ""
    if isinstance(error, DeploymentError):
        return _secret_free(str(error), token)
    if isinstance(error, ApiException) and error.status:
        status = int(error.status)
        message = _secret_free(_server_message(error.body) or error.reason or "", token, MESSAGE_LIMIT)
        hint = _HINTS.get(status) or ("the KFP server failed; see the ml-pipeline API server's log and retry"
                                      if status >= 500 else "")
        text = f"{action} failed{where}: HTTP {status}" + (f": {message}" if message else "")
        return _secret_free(text + (f" ({hint})" if hint else ""), token)
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    if "SSL" in text or "certificate" in text.lower():
        return _secret_free(f"{action} failed{where}: TLS error: {text} (the server's certificate is not "
                            "trusted; give the CA certificate with --ca-cert, or use a trusted certificate)",
                            token)
    if isinstance(error, (OSError, TimeoutError)) or type(error).__module__.startswith("urllib3"):
        return _secret_free(f"{action} failed: cannot reach the KFP API{where}: {text} (check the host "
                            "URL and that the server is reachable, e.g. with kubectl port-forward)", token)
    unreadable = isinstance(error, ApiException) and not error.status and text.startswith("Failed to parse")
    if unreadable or isinstance(error, (ValueError, TypeError, KeyError, AttributeError, IndexError)):
        # kfp_server_api builds its models from the answer: a field of the wrong type or value ends here
        return _secret_free(f"{action} failed{where}: the KFP API's answer is malformed ({type(error).__name__}: "
                            f"{text})", token, MESSAGE_LIMIT * 2)
    return _secret_free(f"{action} failed{where}: {type(error).__name__}: {text}", token)


@contextlib.contextmanager
def _step(action: str, host: str | None, token: str | None = None):
    """Run one deployment action quietly: kfp's own prints and warnings are dropped, and any
    failure becomes a DeploymentError."""
    urllib3_log = logging.getLogger("urllib3")
    level = urllib3_log.level
    urllib3_log.setLevel(logging.ERROR)  # its retry warnings; the error says it all
    try:
        with warnings.catch_warnings(), silenced():
            warnings.simplefilter("ignore")
            yield
    except DeploymentError:
        raise
    except Exception as error:  # kfp and urllib3 raise many types; all end here
        raise DeploymentError(describe(error, action, host, token)) from None
    finally:
        urllib3_log.setLevel(level)


def endpoint_url(host: str | None) -> str | None:
    """The KFP API URL to connect to, rebuilt from the checked parts of ``host`` (``endpoint``); a URL
    that HTTP libraries could read as another host is a DeploymentError, before any credential is sent."""
    from . import endpoint

    if not host:
        return None
    try:
        return endpoint.parse(host).url
    except endpoint.EndpointError as error:
        shown = "".join(c if " " <= c <= "~" else "?" for c in str(host)[:200])
        raise DeploymentError(f"the KFP host {shown!r} is not usable: {error}") from None


def client(host: str | None = None, token: str | None = None, verify_ssl: bool = True,
           ssl_ca_cert: str | None = None):
    """A ``kfp.Client`` for ``host``, with the credentials kfp.Client knows how to find.

    The namespace is given to each call, not here: kfp.Client's own ``namespace``
    argument also selects the in-cluster service's namespace.
    """
    import kfp

    host = endpoint_url(host or os.environ.get("KF_PIPELINES_ENDPOINT") or None)
    token = token or os.environ.get(TOKEN_ENV) or None
    credentials = None
    if host and not token:
        # kfp.Client reads a service-account token file by itself only when it finds no host.
        path = os.environ.get(SA_TOKEN_ENV)
        if path and not os.path.isfile(path):
            raise DeploymentError(f"{SA_TOKEN_ENV} names {path}, which is not a file")
        if path or os.path.isfile(SA_TOKEN_PATH):
            from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

            credentials = ServiceAccountTokenVolumeCredentials(path or SA_TOKEN_PATH)
    elif not host and not (os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("KUBECONFIG")
                           or os.path.isfile(os.path.expanduser("~/.kube/config"))):
        raise DeploymentError("no KFP host: give the KFP API URL (--host URL) or set KF_PIPELINES_ENDPOINT")

    class Client(kfp.Client):
        def get_kfp_healthz(self, sleep_duration=5):
            # kfp retries five times, 5 s apart; one answer is enough to report a problem.
            _limit_time(self)
            return self._healthz_api.healthz_service_get_healthz()

    secret = token
    if credentials is not None:
        with contextlib.suppress(OSError):
            secret = Path(path or SA_TOKEN_PATH).read_text(encoding="utf-8").strip() or None
    redaction.remember(secret)
    with _step("connecting to KFP", host, secret):
        kfp_client = Client(host=host, existing_token=token, credentials=credentials, verify_ssl=verify_ssl,
                            ssl_ca_cert=ssl_ca_cert)
    _limit_time(kfp_client)
    redaction.remember(_token(kfp_client))  # one kfp.Client found by itself (kube config, context.json)
    return kfp_client


def _limit_time(kfp_client) -> None:
    """Bound every request of the client in time and size (``transport``; kfp sets no limit, so a
    silent or trickling server would hang it, and a huge answer would fill the memory)."""
    from .transport import bound

    bound(getattr(getattr(getattr(kfp_client, "_healthz_api", None), "api_client", None), "rest_client", None))


def _host(kfp_client) -> str | None:
    try:
        return kfp_client._existing_config.host
    except AttributeError:
        return None


def _token(kfp_client) -> str | None:
    try:
        return kfp_client._existing_config.api_key.get("authorization")
    except AttributeError:
        return None


def raw_request(kfp_client, method: str, path: str, *, query: dict | None = None, headers: dict | None = None,
                body: bytes | None = None, host: str | None = None):
    """A request to an endpoint of the KFP host that kfp_server_api has no method for (run logs, ML
    Metadata), with kfp.Client's credentials, TLS settings and time limit. Returns the urllib3 response;
    an HTTP error raises kfp_server_api's ApiException, as its own calls do."""
    api_client = kfp_client._run_api.api_client
    return api_client.call_api(path, method, query_params=list((query or {}).items()),
                               header_params=dict(headers or {}), body=body, auth_settings=["Bearer"],
                               _preload_content=False, _return_http_data_only=True, _host=host)


def ui_url(kfp_client, fragment: str) -> str:
    """A link into the KFP UI (``KF_PIPELINES_UI_ENDPOINT``, else the host), as kfp prints it."""
    try:
        prefix = kfp_client._get_url_prefix()
    except AttributeError:
        prefix = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or _host(kfp_client) or ""
    return f"{prefix.rstrip('/')}/#/{fragment}"


def _pipeline_id(kfp_client, name: str, namespace: str | None) -> str | None:
    found = kfp_client.list_pipelines(page_size=2, namespace=namespace, filter=json.dumps(
        {"predicates": [{"operation": 1, "key": "display_name", "stringValue": name}]}))
    pipelines = [p for p in found.pipelines or [] if p.display_name in (None, name)]
    if len(pipelines) > 1:
        raise DeploymentError(f"several pipelines are named {name!r}; delete all but one in the KFP UI")
    return pipelines[0].pipeline_id if pipelines else None


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def content_version_name(name: str, package_path: str) -> str:
    """The name of the version that holds exactly this package: ``NAME-`` and 12 hex digits of its SHA-256."""
    with open(package_path, "rb") as package:
        digest = hashlib.sha256(package.read()).hexdigest()
    return f"{name}-{digest[:12]}"


def _canonical(value):
    """A spec as comparable data: numbers that are integers as ints (the API returns them as floats)."""
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _package_spec(package_path: str):
    """The package as the KFP API returns a version's ``pipeline_spec``, or None when kfp cannot read it."""
    try:
        from kfp.client.client import _extract_pipeline_yaml

        return _canonical(_extract_pipeline_yaml(package_path).to_dict())
    except Exception:  # another kfp release: no comparison, a new version is uploaded
        return None


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": 1, "key": "display_name", "stringValue": name}]})


def _same_version(kfp_client, pipeline_id: str, package_path: str, version_name: str):
    """The version of the pipeline that holds this package: the one named by its content hash,
    else the latest version when its spec equals the package's; None when there is none."""
    found = kfp_client.list_pipeline_versions(pipeline_id, page_size=1, filter=_name_filter(version_name))
    for version in found.pipeline_versions or []:
        if (version.display_name or version.name) == version_name:
            return version
    latest = kfp_client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
    latest = (latest.pipeline_versions or [None])[0]
    if latest is None:
        return None
    spec = _package_spec(package_path)
    if spec is None:
        return None
    detail = kfp_client.get_pipeline_version(pipeline_id, latest.pipeline_version_id)
    return latest if _canonical(detail.pipeline_spec) == spec else None


def upload(kfp_client, package_path: str, name: str, description: str | None = None,
           namespace: str | None = None, version_name: str | None = None, reuse: bool = False) -> dict:
    """Upload ``package_path`` as pipeline ``name``; when it exists, add a version to it.

    With ``reuse``, a version that already holds this package is used instead of a new one,
    and a new version is named by the package's content hash.
    Returns ``{"pipeline_id", "version_id", "version_name", "created", "reused", "pipeline_url"}``.
    """
    host, token = _host(kfp_client), _token(kfp_client)
    with _step(f"looking up pipeline {name!r}", host, token):
        pipeline_id = _pipeline_id(kfp_client, name, namespace)
    if reuse:
        version_name = version_name or content_version_name(name, package_path)
        if pipeline_id is not None:
            with _step(f"looking up the versions of pipeline {name!r}", host, token):
                version = _same_version(kfp_client, pipeline_id, package_path, version_name)
            if version is not None:
                return _uploaded(kfp_client, pipeline_id, version, version_name, created=False, reused=True)
    created = False
    if pipeline_id is None:
        from kfp_server_api.exceptions import ApiException

        with _step(f"uploading pipeline {name!r}", host, token):
            try:
                pipeline_id = kfp_client.upload_pipeline(package_path, pipeline_name=name,
                                                         description=description, namespace=namespace).pipeline_id
                created = True
            except ApiException as error:
                if error.status != 409:  # 409: someone uploaded the name meanwhile; add a version
                    raise
                pipeline_id = _pipeline_id(kfp_client, name, namespace)
                if pipeline_id is None:
                    raise
    if created:
        with _step(f"reading the version of new pipeline {name!r}", host, token):
            versions = kfp_client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
            version = (versions.pipeline_versions or [None])[0]
        if version is None:
            raise DeploymentError(f"pipeline {name!r} was uploaded (id {pipeline_id}) but the server lists no "
                                  "version of it; see the ml-pipeline API server's log")
    else:
        version_name = version_name or f"{name}-{_stamp()}"
        with _step(f"adding version {version_name!r} to pipeline {name!r}", host, token):
            version = kfp_client.upload_pipeline_version(package_path, version_name, pipeline_id=pipeline_id,
                                                         description=description)
    return _uploaded(kfp_client, pipeline_id, version, version_name, created=created, reused=False)


def _uploaded(kfp_client, pipeline_id: str, version, version_name: str | None, created: bool, reused: bool) -> dict:
    return {
        "pipeline_id": pipeline_id,
        "version_id": version.pipeline_version_id,
        "version_name": version.display_name or version.name or version_name,
        "created": created,
        "reused": reused,
        "pipeline_url": ui_url(kfp_client, f"pipelines/details/{pipeline_id}/version/{version.pipeline_version_id}"),
    }


def run(kfp_client, pipeline_id: str, version_id: str, experiment: str, namespace: str | None = None,
        params: dict | None = None, job_name: str | None = None) -> dict:
    """Start a run of an uploaded pipeline version in ``experiment`` (created when missing).

    The run references the version; the package is not sent again. Returns
    ``{"run_id", "run_url", "experiment_id"}``.
    """
    host, token = _host(kfp_client), _token(kfp_client)
    with _step(f"finding or creating experiment {experiment!r}", host, token):
        experiment_id = kfp_client.create_experiment(experiment, namespace=namespace).experiment_id
    job_name = job_name or f"run-{_stamp()}"
    with _step(f"starting run {job_name!r}", host, token):
        started = kfp_client.run_pipeline(experiment_id=experiment_id, job_name=job_name, pipeline_id=pipeline_id,
                                          version_id=version_id, params=dict(params or {}))
    if not (isinstance(started.run_id, str) and started.run_id):
        raise MalformedAnswer(f"the run {job_name!r} was started, but the answer gives it no run_id")
    return {"run_id": started.run_id, "run_url": ui_url(kfp_client, f"runs/details/{started.run_id}"),
            "experiment_id": experiment_id}


def default_namespace(kfp_client) -> str | None:
    """The namespace a deployment goes to when none is given: kfp's context file's (kfp applies it itself,
    so None), else, from a Kubeflow notebook server, the server's namespace."""
    try:
        if kfp_client.get_user_namespace():
            return None
    except (AttributeError, OSError, ValueError):
        pass
    return notebookpod.namespace()


def deploy(package_path: str, name: str, *, description: str | None = None, host: str | None = None,
           experiment: str = "Default", namespace: str | None = None, start_run: bool = False,
           params: dict | None = None, token: str | None = None, verify_ssl: bool = True,
           ssl_ca_cert: str | None = None, reuse: bool = False, run_name: str | None = None,
           kfp_client=None) -> dict:
    """Upload a compiled pipeline (a new version when the name exists; with ``reuse``, the
    version that already holds it) and, with ``start_run``, run that version as ``run_name``.
    Returns the ids and UI links, and ``namespace`` when it is the notebook server's (``default_namespace``)."""
    kfp_client = kfp_client or client(host, token=token, verify_ssl=verify_ssl, ssl_ca_cert=ssl_ca_cert)
    chosen = namespace or default_namespace(kfp_client)
    try:
        result = upload(kfp_client, package_path, name, description, chosen, reuse=reuse)
        if chosen != namespace:
            result["namespace"] = chosen
        if start_run:
            result.update(run(kfp_client, result["pipeline_id"], result["version_id"], experiment, chosen, params,
                              job_name=run_name or f"{name}-{_stamp()}"))
    except DeploymentError as error:
        if chosen == namespace:
            raise
        raise DeploymentError(f"{error} [namespace {chosen}: this Kubeflow notebook server's]") from None
    return result


def summary(result: dict, name: str) -> list[str]:
    """The lines that tell the user what was deployed."""
    what = ("Uploaded new pipeline" if result["created"] else
            "Unchanged: reusing the version of pipeline" if result.get("reused") else "Added a version to pipeline")
    lines = []
    if result.get("namespace"):
        lines.append(f"Namespace {result['namespace']}: this Kubeflow notebook server's (--namespace chooses another)")
    lines += [f"{what} {name!r} (pipeline id {result['pipeline_id']}, version "
              f"{result['version_name']!r}, version id {result['version_id']})",
              f"  {result['pipeline_url']}"]
    if result.get("run_id"):
        lines += [f"Started run {result['run_id']}", f"Run URL: {result['run_url']}"]
    return lines
