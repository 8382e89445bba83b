"""Jupyter server extension: convert a notebook to a KFP pipeline, and deploy it, over HTTP.

Two endpoints, behind the Jupyter server's own authentication (token or login cookie,
with the XSRF check for cookie-authenticated requests):

``POST {base_url}nbconvert-kfp/api/convert``
    body ``{"notebook": <nbformat JSON>, "name": "x.ipynb", "options": {"pipeline_name",
    "pipeline_description", "base_image", "experiment", ..., "parameters": {NAME: value}}}``;
    answers ``{"script", "yaml", "filename", "pipeline_name", "dag" (SVG), "mermaid",
    "parameters", "warnings"}``.
``POST {base_url}nbconvert-kfp/api/deploy``
    the same body plus ``{"host", "namespace", "run": bool}``; uploads the pipeline to KFP
    (a new version when the name exists) and with ``run`` starts a run; answers
    ``{"pipeline_id", "version_id", "version_name", "created", "pipeline_url", "run_id",
    "run_url", "experiment_id", "filename", "warnings"}``.

A problem in the notebook answers 400 with ``{"message", "cell_index", "cell_number", "subject"}`` (a
notebook of more steps than ``ConvertPolicy.max_steps`` is one); a bad request body 400 with
``{"message"}``; a ``host`` the server may not send its credentials to 403; a failed deployment 502,
one that takes longer than ``DeployPolicy.timeout`` 504, and one to a host that already has
``DeployPolicy.per_host`` deployments in progress 503 at once, with ``{"message"}``. KFP credentials
are the Jupyter server's (see ``nbconvert_kfp.script.cluster.deployment``), never the request's, and go only
to the configured host (``KF_PIPELINES_ENDPOINT`` or ``DeployPolicy.host``) or to the https hosts of
``DeployPolicy.allowed_hosts``. The request's ``host`` is read strictly (``script.endpoint``: no user
info, backslash, percent-encoding, control character) and the deployment connects to the URL rebuilt
from its checked parts, so the host the policy compares is the host the HTTP library connects to.

Conversions run in worker threads, one at a time: kfp's compiler keeps global state, and CPython 3.11's
``ast`` module can fail with a ``SystemError`` when threads build syntax trees at the same time. A
conversion takes seconds at most: the analysis grows linearly with the steps and
``ConvertPolicy.max_steps`` caps them. A deploy request has ``DeployPolicy.timeout`` seconds from its
arrival: its conversion, and its talk to KFP in a thread of its own, whose every request to the host
is cut to the time left (``script.transport.within``), so the thread ends when the time does. Each
KFP host has ``DeployPolicy.per_host`` such threads at most: a host that does not answer holds only
its own, never a conversion or a deployment to another host.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Float, Int, List, Unicode
from traitlets.config import Configurable

#: The URL prefix of the API, under the server's base URL.
API_PATH = "nbconvert-kfp/api"
#: KFPExporter traits a request may set in ``options``.
OPTION_TRAITS = ("pipeline_name", "pipeline_description", "base_image", "experiment", "enable_caching", "volumes",
                 "steps_defaults", "install_packages", "extra_packages", "pip_index_urls", "step_reports")
#: Parameter types and the JSON values each accepts (a float also takes an int).
_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
               "dict": (dict,)}

#: How deep a request body's JSON may nest (a notebook needs a handful of levels).
MAX_DEPTH = 100
#: The longest notebook file name a request may give.
MAX_NAME = 255

# One conversion at a time: kfp's compiler builds a pipeline in module-level state, and syntax trees built in
# several threads at once can fail in CPython 3.11 ("AST constructor recursion depth mismatch").
_CONVERT_LOCK = threading.Lock()
#: Seconds a deploy request waits past its budget for its thread to report (its requests end by the budget).
GRACE = 5.0


class APIError(Exception):
    """The root of the API's refusals: the request gets ``status`` and the one-line message."""

    status = 500


class RequestError(APIError):
    """The request body is not what the API takes (answered with 400)."""

    status = 400


class HostRefused(APIError):
    """The deploy request names a host the server does not send its KFP credentials to (403)."""

    status = 403


class DeployTimeout(APIError):
    """A deployment took longer than ``DeployPolicy.timeout`` (504)."""

    status = 504


class DeployBusy(APIError):
    """The KFP host has ``DeployPolicy.per_host`` deployments in progress already (503)."""

    status = 503


class ConvertPolicy(Configurable):
    """How large a notebook the API converts."""

    max_steps = Int(
        500, help="The most steps a notebook may have for the API to convert it (0: no limit); more is a 400. "
                  "Argo's 1 MiB Workflow limit stops a run of a few hundred steps on a KFP cluster anyway "
                  "(about 200 trivial ones), and the conversion's time grows with the steps.").tag(config=True)


class DeployPolicy(Configurable):
    """Where the deploy endpoint may send the Jupyter server's KFP credentials, and how long it waits."""

    host = Unicode(
        help="The KFP API URL deployments go to when a request names no host (default: $KF_PIPELINES_ENDPOINT). "
             "A request may always name this host.").tag(config=True)
    allowed_hosts = List(
        Unicode(), help="Other KFP hosts a deploy request may name, as kfp.example.com[:PORT] or an https URL. "
                        "Only https: the server's KFP credentials travel to them.").tag(config=True)
    timeout = Float(
        300.0, help="Seconds a deploy request may take from its arrival (conversion and talk to KFP); then it "
                    "answers 504 and its work stops (an upload KFP already received may still finish).").tag(
        config=True)
    per_host = Int(
        2, help="Deployments to one KFP host at a time; a request for one more answers 503 at once. A host that "
                "does not answer holds only these, never a deployment to another host.").tag(config=True)

    def target(self, host: str | None) -> str | None:
        """The URL a deployment connects to; ``HostRefused`` for a host the credentials must not reach.

        The URL is rebuilt from the parts the policy checked (``script.endpoint``), so the host
        compared is the host connected to, whatever parser the HTTP library uses.
        """
        from .script.cluster import endpoint

        configured_text = self.host or os.environ.get("KF_PIPELINES_ENDPOINT") or ""
        try:
            configured = endpoint.parse(configured_text) if configured_text else None
        except endpoint.EndpointError as error:
            raise HostRefused(f"the configured KFP host (DeployPolicy.host or KF_PIPELINES_ENDPOINT) is not "
                              f"usable: {error}") from None
        if host is None:
            return configured.url if configured else None
        try:
            wanted = endpoint.parse(host, default_scheme=None)
        except endpoint.EndpointError as error:
            raise RequestError(f'"host" must be the KFP API URL, http(s)://HOST[:PORT][/PATH]: {error}') from None
        if configured is not None and wanted.origin == configured.origin:
            return wanted.url
        if wanted.scheme == "https" and wanted.origin in self._allowed():
            return wanted.url
        raise HostRefused(f"host {host!r} is not allowed: this server sends its KFP credentials only to "
                          f"{configured.url if configured else 'its configured host (KF_PIPELINES_ENDPOINT)'} "
                          "and to the https hosts of DeployPolicy.allowed_hosts")

    def _allowed(self) -> set[tuple[str, str, int]]:
        """The origins of ``allowed_hosts`` (https only; an entry that is no valid host is left out)."""
        from .script.cluster import endpoint

        origins = set()
        for entry in self.allowed_hosts:
            try:
                parsed = endpoint.parse(entry)
            except endpoint.EndpointError:
                continue
            if parsed.scheme == "https":
                origins.add(parsed.origin)
        return origins


def parse_body(raw: bytes) -> Any:
    """A request body as JSON: no NaN or Infinity, nested at most MAX_DEPTH deep; else ``RequestError``."""
    def constant(name: str) -> Any:
        raise RequestError(f"the body is not JSON: {name} is not a JSON value")

    try:
        body = json.loads(raw or b"", parse_constant=constant)
    except RecursionError:
        raise RequestError(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:
        raise RequestError(f"the body is not JSON: {error}") from None
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RequestError(f"the body nests deeper than {MAX_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return body


def _coerce(name: str, kind: str, value: Any) -> Any:
    """A parameter value of the parameter's type; strings are read as the script's ``-p`` reads them."""
    from .script.parametervalue import compiled_value, literal_text, parse_value

    if kind == "literal":  # carried as its Python literal: a string is read as -p reads it
        return parse_value(kind, value) if isinstance(value, str) else literal_text(value)
    if isinstance(value, str) and kind != "str":
        try:
            value = parse_value(kind, value)
        except ValueError as error:
            raise RequestError(f"parameter {name!r}: {error}") from None
    if not isinstance(value, _JSON_TYPES.get(kind, (object,))) or (isinstance(value, bool) and kind != "bool"):
        raise RequestError(f"parameter {name!r}: expected a {kind}, got {json.dumps(value)[:100]}")
    try:
        return compiled_value(kind, float(value) if kind == "float" else value)
    except ValueError as error:
        raise RequestError(f"parameter {name!r}: {error}") from None
    except OverflowError:
        raise RequestError(f"parameter {name!r}: a {len(str(value))}-digit integer is too large for a float") from None


def _read_body(body: Any) -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
    """The notebook node, its file name, exporter options and parameters of a request body."""
    import nbformat

    if not isinstance(body, dict) or not isinstance(body.get("notebook"), dict):
        raise RequestError('the body must be a JSON object with a "notebook" object (nbformat JSON)')
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise RequestError('"options" must be a JSON object')
    options = dict(options)
    parameters = options.pop("parameters", None) or {}
    if not isinstance(parameters, dict):
        raise RequestError('"options.parameters" must be a JSON object of NAME: value')
    unknown = sorted(set(options) - set(OPTION_TRAITS))
    if unknown:
        raise RequestError(f"unknown options {', '.join(unknown)}; known: parameters, {', '.join(OPTION_TRAITS)}")
    name = body.get("name") or body.get("path") or "notebook.ipynb"
    if not isinstance(name, str):
        raise RequestError('"name" must be the notebook\'s file name')
    if len(name) > MAX_NAME or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise RequestError(f'"name" must be a file name of at most {MAX_NAME} characters without control '
                           f"characters (got {len(name)} characters)")
    try:
        # nbformat's reader joins cell sources given as lists of lines, as in a file.
        notebook = nbformat.reads(json.dumps(body["notebook"]), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:
        raise _notebook_error(error) from None
    return notebook, name, options, parameters


def _notebook_error(error: Exception) -> Exception:
    """What nbformat says about an invalid notebook, naming the cell at fault when there is one."""
    from .errors import NotebookError

    message = " ".join(str(getattr(error, "message", None) or error).split())
    message = message if len(message) <= 300 else message[:299] + "…"
    path = list(getattr(error, "absolute_path", None) or getattr(error, "path", None) or [])
    if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
        field = ".".join(str(part) for part in path[2:]) or "the cell"
        return NotebookError(f"not a valid notebook cell: {field}: {message}", path[1], field)
    where = ".".join(str(part) for part in path)
    return RequestError(f"not a valid notebook: {where + ': ' if where else ''}{message}")


def convert(body: Any, config: Any = None, log: logging.Logger | None = None) -> dict[str, Any]:
    """Convert a request body's notebook; compile the script. Runs in a worker thread."""
    from traitlets.config import Config

    notebook, name, options, parameters = _read_body(body)
    stem = Path(name).name
    stem = stem[:-len(".ipynb")] if stem.endswith(".ipynb") else Path(stem).stem
    merged = Config(config) if config is not None else Config()
    merged.merge(Config({"KFPExporter": options}))
    limit = ConvertPolicy(config=merged).max_steps
    merged.merge(Config({"TagParser": {"max_steps": limit}}))
    with _CONVERT_LOCK:
        return _convert(notebook, name, stem, merged, parameters, log)


def _convert(notebook: Any, name: str, stem: str, merged: Any, parameters: dict[str, Any],
             log: logging.Logger | None) -> dict[str, Any]:
    """The conversion itself; one at a time (``_CONVERT_LOCK``)."""
    from .exporters import KFPExporter, compile_script
    from .script import dag

    warnings: list[str] = []
    collector = _Collector(warnings, threading.get_ident())
    logger = logging.getLogger(f"{__name__}.convert")  # the exporter's warnings go to the reply
    logger.propagate = False
    logger.addHandler(collector)
    try:
        try:
            exporter = KFPExporter(config=merged, log=logger)
        except Exception as error:  # a trait of the wrong type
            raise RequestError(f"bad option: {' '.join(str(error).split())[:300]}") from None
        script, resources = exporter.from_notebook_node(notebook, {"metadata": {"name": stem}})
        model = resources["kfp"]
        types = {p["name"]: p["type"] for p in model["parameters"]}
        unknown = sorted(set(parameters) - set(types))
        if unknown:
            raise RequestError(f"unknown parameters {', '.join(unknown)}; the pipeline's: "
                               f"{', '.join(types) or 'none'}")
        # the pipeline's own parameter names (a name that is a Python keyword gets a trailing '_')
        kfp_names = model["script"]["parameter_names"]
        arguments = {kfp_names[n]: _coerce(n, types[n], v) for n, v in parameters.items()}
        yaml_text = compile_script(script, arguments, stem=re.sub(r"\W", "_", stem) or "pipeline")
    finally:
        logger.removeHandler(collector)
        for warning in warnings:
            (log or logging.getLogger(__name__)).warning("nbconvert-kfp: %s: %s", name, warning)
    return {
        "script": script,
        "yaml": yaml_text,
        "filename": stem + exporter.script_suffix,
        "pipeline_name": model["pipeline"]["name"],
        "pipeline_description": model["pipeline"]["description"],
        "experiment": model["pipeline"]["experiment"],
        "parameters": [{"name": p["name"], "type": p["type"], "default": p["default"]}
                       for p in model["parameters"]],
        "arguments": arguments,
        "dag": dag.svg(model),
        "mermaid": dag.mermaid(model),
        "warnings": warnings,
    }


def deploy_target(body: Any, policy: DeployPolicy) -> tuple[str | None, str | None, bool]:
    """The host, namespace and ``run`` flag of a deploy request, checked; the host against ``policy``."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    host, namespace, run = body.get("host"), body.get("namespace"), body.get("run", False)
    if host is not None and not isinstance(host, str):
        raise RequestError('"host" must be the KFP API URL, http(s)://HOST[:PORT][/PATH]')
    if namespace is not None and not (isinstance(namespace, str) and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$|^$",
                                                                              namespace)):
        raise RequestError('"namespace" must be a Kubernetes namespace name')
    if not isinstance(run, bool):
        raise RequestError('"run" must be true or false')
    return policy.target(host or None), namespace or None, run


def upload(converted: dict[str, Any], host: str | None, namespace: str | None, run: bool) -> dict[str, Any]:
    """Upload a converted pipeline and, with ``run``, start a run: the network part of a deploy."""
    from .script.cluster import deployment

    with tempfile.TemporaryDirectory(prefix="nbconvert-kfp-deploy-") as directory:
        package = Path(directory) / f"{converted['pipeline_name']}.yaml"
        package.write_text(converted["yaml"], encoding="utf-8")
        result = deployment.deploy(
            str(package), converted["pipeline_name"], description=converted["pipeline_description"],
            host=host, experiment=converted["experiment"], namespace=namespace,
            start_run=run, params=converted["arguments"])
    result.update({"filename": converted["filename"], "warnings": converted["warnings"]})
    return result


def upload_within(converted: dict[str, Any], host: str | None, namespace: str | None, run: bool,
                  deadline: float, timeout: float) -> dict[str, Any]:
    """``upload`` with every request to KFP ending by ``deadline`` (``time.monotonic()``); ``DeployTimeout``
    when the time runs out (``timeout``: the seconds the deployment had in all, for the message)."""
    from .script.cluster import deployment, transport

    if time.monotonic() >= deadline:
        raise _too_late(host, timeout)
    with transport.within(deadline):
        try:
            return upload(converted, host, namespace, run)
        except deployment.DeploymentError:
            if transport.time_left() == 0:
                raise _too_late(host, timeout) from None
            raise


def _too_late(host: str | None, timeout: float) -> DeployTimeout:
    return DeployTimeout(f"deploying to {host or 'KFP'} took longer than {timeout:g} s, so it stopped; an upload "
                         "KFP received may still finish (look in the KFP UI), or the host is too slow")


def deploy(body: Any, config: Any = None, log: logging.Logger | None = None) -> dict[str, Any]:
    """Convert, compile, upload and (with ``"run": true``) run, in this thread, within ``DeployPolicy.timeout``."""
    policy = DeployPolicy(config=config) if config is not None else DeployPolicy()
    deadline = time.monotonic() + policy.timeout
    host, namespace, run = deploy_target(body, policy)
    return upload_within(convert(body, config, log), host, namespace, run, deadline, policy.timeout)


class HostSlots:
    """The deployments in progress to each KFP host, at most a given number per host."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy: dict[Any, int] = {}

    def take(self, host: Any, limit: int) -> bool:
        """Take a slot of ``host``; False when its ``limit`` slots are all taken."""
        with self._lock:
            if self._busy.get(host, 0) >= max(limit, 1):
                return False
            self._busy[host] = self._busy.get(host, 0) + 1
            return True

    def give_back(self, host: Any) -> None:
        """Free a slot ``take`` gave."""
        with self._lock:
            self._busy[host] -= 1
            if not self._busy[host]:
                del self._busy[host]


#: The deployments in progress, by KFP host (``host_key``).
_SLOTS = HostSlots()


def host_key(url: str | None) -> Any:
    """What tells KFP hosts apart: the origin of the URL a deployment connects to (None: the default host)."""
    from .script.cluster import endpoint

    return endpoint.parse(url).origin if url else None


def _in_own_thread(work: Callable[..., Any], *args: Any) -> Future:
    """Run ``work(*args)`` in a new thread of its own; its future."""
    future: Future = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(work(*args))
        except BaseException as error:  # handed to the request's coroutine
            future.set_exception(error)

    threading.Thread(target=run, name="nbconvert-kfp-deploy", daemon=True).start()
    return future


class _Collector(logging.Handler):
    """Keeps the warnings of one conversion (the records of the thread that runs it) for the reply."""

    def __init__(self, into: list[str], thread: int):
        super().__init__(logging.WARNING)
        self.into, self.thread = into, thread

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.into.append(record.getMessage())


class _Handler(APIHandler):
    auth_resource = "nbconvert"

    async def work(self, body: Any) -> dict[str, Any]:
        """The reply to a parsed request body."""
        raise NotImplementedError

    def _reply(self, status: int, reply: dict[str, Any]) -> None:
        self.set_status(status)
        if status == 503:
            self.set_header("Retry-After", "10")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        from .script.cluster import deployment
        from .errors import KFPExportError
        from .model import cell_number

        try:
            reply = await self.work(parse_body(self.request.body))
        except APIError as error:
            return self._reply(error.status, {"message": str(error)})
        except KFPExportError as error:
            number = cell_number(error.cell_index) if error.cell_index is not None else None
            return self._reply(400, {"message": str(error), "cell_index": error.cell_index,
                                     "cell_number": number, "subject": error.subject})
        except deployment.DeploymentError as error:
            return self._reply(502, {"message": str(error)})
        self._reply(200, reply)


class ConvertHandler(_Handler):
    """``POST nbconvert-kfp/api/convert``: the script, its YAML and a picture of the DAG."""

    async def work(self, body: Any) -> dict[str, Any]:
        """Convert in a worker thread."""
        return await asyncio.to_thread(convert, body, self.config, self.log)


class DeployHandler(_Handler):
    """``POST nbconvert-kfp/api/deploy``: upload to KFP, and run when asked."""

    async def work(self, body: Any) -> dict[str, Any]:
        """Check the host and take one of its slots, convert in a worker thread, then upload in a thread of
        its own; all within ``DeployPolicy.timeout`` seconds of the request's arrival."""
        policy = DeployPolicy(config=self.config)
        deadline = time.monotonic() + policy.timeout - self.request.request_time()
        host, namespace, run = deploy_target(body, policy)
        key = host_key(host)
        if not _SLOTS.take(key, policy.per_host):
            raise DeployBusy(f"{max(policy.per_host, 1)} deployments to {host or 'the KFP host'} are in progress, "
                             f"the most DeployPolicy.per_host allows; retry when one ends (each ends within "
                             f"{policy.timeout:g} s)")
        try:
            converted = await asyncio.to_thread(convert, body, self.config, self.log)
            future = _in_own_thread(upload_within, converted, host, namespace, run, deadline, policy.timeout)
        except BaseException:
            _SLOTS.give_back(key)
            raise
        future.add_done_callback(lambda _: _SLOTS.give_back(key))  # when the thread ends, not before
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()) + GRACE)
        except asyncio.TimeoutError:  # the thread did not report in time (its requests end by the deadline)
            raise _too_late(host, policy.timeout) from None


def _export_handler() -> type:
    """File -> Save and Export Notebook As with our formats: jupyter_server's own handler, but a notebook the
    conversion refuses is a 400 showing the one-line message that names the cell, not a 500."""
    from jupyter_server.nbconvert.handlers import NbconvertFileHandler

    from .errors import KFPExportError

    class ExportHandler(NbconvertFileHandler):
        """``GET /nbconvert/kfp/PATH`` (and ``kfp_yaml``): the notebook as a pipeline script (or its YAML)."""

        async def get(self, format: str, path: str) -> None:
            try:
                await super().get(format, path)
            except web.HTTPError as error:
                if isinstance(error.__cause__, KFPExportError):
                    raise web.HTTPError(400, "%s", str(error.__cause__),
                                        reason="The notebook cannot become a KFP pipeline") from None
                raise

    return ExportHandler


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the API handlers, and our export formats' File-menu handler, with the Jupyter server."""
    from jupyter_server.base.handlers import path_regex

    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, API_PATH, "convert"), ConvertHandler),
        (url_path_join(base, API_PATH, "deploy"), DeployHandler),
        (url_path_join(base, r"/nbconvert/(?P<format>kfp|kfp_yaml)") + path_regex, _export_handler()),
    ])
    serverapp.log.info("nbconvert-kfp: API at %s", url_path_join(base, API_PATH))
