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

A problem in the notebook answers 400 with ``{"message", "cell_index", "cell_number", "subject"}``; a bad
request body 400 with ``{"message"}``; a failed deployment 502 with ``{"message"}``. KFP
credentials are the Jupyter server's (see ``nbconvert_kfp.script.deployment``), never the request's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

#: The URL prefix of the API, under the server's base URL.
API_PATH = "nbconvert-kfp/api"
#: KFPExporter traits a request may set in ``options``.
OPTION_TRAITS = ("pipeline_name", "pipeline_description", "base_image", "experiment", "enable_caching", "volumes",
                 "steps_defaults", "install_packages", "extra_packages", "pip_index_urls", "step_reports")
#: Parameter types and the JSON values each accepts (a float also takes an int).
_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,),
               "dict": (dict,)}

# kfp's compiler and kfp.Client print to sys.stdout, which the conversion and deployment
# redirect for a moment; one request at a time keeps that redirection from crossing threads.
_LOCK = threading.Lock()


class RequestError(Exception):
    """The request body is not what the API takes (answered with 400)."""


def _coerce(name: str, kind: str, value: Any) -> Any:
    """A parameter value of the parameter's type; strings are read as the script's ``-p`` reads them."""
    from .script.cli import literal_text, parse_value

    if kind == "literal":  # carried as its Python literal: a string is read as -p reads it
        return parse_value(kind, value) if isinstance(value, str) else literal_text(value)
    if isinstance(value, str) and kind != "str":
        try:
            value = parse_value(kind, value)
        except ValueError as error:
            raise RequestError(f"parameter {name!r}: {error}") from None
    if not isinstance(value, _JSON_TYPES.get(kind, (object,))) or (isinstance(value, bool) and kind != "bool"):
        raise RequestError(f"parameter {name!r}: expected a {kind}, got {json.dumps(value)}")
    return float(value) if kind == "float" else value


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
    try:
        # nbformat's reader joins cell sources given as lists of lines, as in a file.
        notebook = nbformat.reads(json.dumps(body["notebook"]), as_version=4)
        nbformat.validate(notebook)
    except Exception as error:
        message = getattr(error, "message", None) or str(error)
        raise RequestError(f"not a valid notebook: {' '.join(str(message).split())[:300]}") from None
    return notebook, name, options, parameters


def convert(body: Any, config: Any = None, log: logging.Logger | None = None) -> dict[str, Any]:
    """Convert a request body's notebook; compile the script. Runs in a worker thread."""
    from traitlets.config import Config

    from .exporters import KFPExporter, compile_script
    from .script import dag

    notebook, name, options, parameters = _read_body(body)
    stem = Path(name).name
    stem = stem[:-len(".ipynb")] if stem.endswith(".ipynb") else Path(stem).stem
    merged = Config(config) if config is not None else Config()
    merged.merge(Config({"KFPExporter": options}))
    warnings: list[str] = []
    collector = _Collector(warnings)
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


def deploy(body: Any, config: Any = None, log: logging.Logger | None = None) -> dict[str, Any]:
    """Convert, compile, upload and (with ``"run": true``) run. Runs in a worker thread."""
    from .script import deployment

    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    host, namespace = body.get("host"), body.get("namespace")
    if host is not None and not (isinstance(host, str) and re.match(r"^https?://[^\s/]+", host)):
        raise RequestError('"host" must be the KFP API URL, http(s)://HOST[:PORT][/PATH]')
    if namespace is not None and not isinstance(namespace, str):
        raise RequestError('"namespace" must be a string')
    if not isinstance(body.get("run", False), bool):
        raise RequestError('"run" must be true or false')
    converted = convert(body, config, log)
    with tempfile.TemporaryDirectory(prefix="nbconvert-kfp-deploy-") as directory:
        package = Path(directory) / f"{converted['pipeline_name']}.yaml"
        package.write_text(converted["yaml"], encoding="utf-8")
        result = deployment.deploy(
            str(package), converted["pipeline_name"], description=converted["pipeline_description"],
            host=host or None, experiment=converted["experiment"], namespace=namespace or None,
            start_run=body.get("run", False), params=converted["arguments"])
    result.update({"filename": converted["filename"], "warnings": converted["warnings"]})
    return result


class _Collector(logging.Handler):
    """Keeps the warnings of one conversion for the reply."""

    def __init__(self, into: list[str]):
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


class _Handler(APIHandler):
    auth_resource = "nbconvert"
    work = staticmethod(convert)

    def _reply(self, status: int, reply: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(reply))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        from .script import deployment
        from .errors import KFPExportError
        from .model import cell_number

        try:
            body = json.loads(self.request.body or b"")
        except ValueError as error:
            return self._reply(400, {"message": f"the body is not JSON: {error}"})

        def work():
            with _LOCK:
                return self.work(body, self.config, self.log)

        try:
            reply = await asyncio.to_thread(work)
        except RequestError as error:
            return self._reply(400, {"message": str(error)})
        except KFPExportError as error:
            number = cell_number(error.cell_index) if error.cell_index is not None else None
            return self._reply(400, {"message": str(error), "cell_index": error.cell_index,
                                     "cell_number": number, "subject": error.subject})
        except deployment.DeploymentError as error:
            return self._reply(502, {"message": str(error)})
        self._reply(200, reply)


class ConvertHandler(_Handler):
    """``POST nbconvert-kfp/api/convert``: the script, its YAML and a picture of the DAG."""

    work = staticmethod(convert)


class DeployHandler(_Handler):
    """``POST nbconvert-kfp/api/deploy``: upload to KFP, and run when asked."""

    work = staticmethod(deploy)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the API handlers with the Jupyter server."""
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, API_PATH, "convert"), ConvertHandler),
        (url_path_join(base, API_PATH, "deploy"), DeployHandler),
    ])
    serverapp.log.info("nbconvert-kfp: API at %s", url_path_join(base, API_PATH))
