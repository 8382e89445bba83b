"""A fake KFP API server for the tests: the v2beta1 REST endpoints that kfp.Client calls.

It listens on 127.0.0.1 only, on a free port, in a thread, and keeps everything in memory.
It records every request (method, path, query, headers, JSON body, uploaded files) so that
tests can assert what kfp.Client sent, and can be told to answer errors:

    server.fail("POST", "/apis/v2beta1/runs", 500, "database is down")   # next matching request
    server.require_token = "s3cret"                                       # 401 without it

The shapes follow kfp_server_api's models (V2beta1Pipeline, V2beta1PipelineVersion,
V2beta1Experiment, V2beta1Run, V2beta1GetHealthzResponse) and the google.rpc.Status error
body of the KFP API server.
"""

from __future__ import annotations

import email.parser
import email.policy
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

API = "/apis/v2beta1"
#: Largest request body accepted (a compiled pipeline is far smaller).
MAX_BODY = 16 * 1024 * 1024
#: gRPC codes the KFP API server puts in its error bodies, by HTTP status.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}


@dataclass
class Request:
    """One request as the fake server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None
    files: dict[str, bytes] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: "FakeKFP"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self._reply(413, {"message": "request too large"})
        raw = self.rfile.read(length) if length else b""
        request = Request(method, url.path, query, {k.lower(): v for k, v in self.headers.items()})
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            for part in message.iter_parts():
                request.files[part.get_param("name", header="content-disposition")] = part.get_payload(decode=True)
        elif raw:
            try:
                request.body = json.loads(raw)
            except ValueError:
                request.body = raw
        status, reply = self.server.handle(request)
        self._reply(status, reply)

    def _reply(self, status: int, reply: Any) -> None:
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")


class FakeKFP(ThreadingHTTPServer):
    """The fake server; ``url`` is its base URL. Use as a context manager or ``start``/``stop``."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests: list[Request] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        #: The uploaded package of each version id.
        self.packages: dict[str, bytes] = {}
        self.require_token: str | None = None
        self.multi_user = False
        self._failures: list[tuple[str, str, int, str]] = []
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # --- control --------------------------------------------------------------------------

    def start(self) -> "FakeKFP":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "FakeKFP":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def fail(self, method: str, path: str, status: int, message: str) -> None:
        """Answer the next ``method`` request to ``path`` (an API path) with an error."""
        self._failures.append((method, path, status, message))

    def calls(self, method: str, path: str) -> list[Request]:
        """The recorded requests to ``path`` (a path under /apis/v2beta1 or a full path)."""
        full = path if path.startswith("/apis") else API + path
        return [r for r in self.requests if r.method == method and r.path == full]

    # --- the API ----------------------------------------------------------------------------

    @staticmethod
    def error(status: int, message: str) -> tuple[int, dict]:
        return status, {"error": message, "code": GRPC_CODES.get(status, 2), "message": message, "details": []}

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids):04d}"

    def _stamp(self) -> str:
        return f"2025-01-01T00:00:{next(self._clock):02d}Z"

    @staticmethod
    def _filter_name(query: dict[str, str]) -> str | None:
        if not query.get("filter"):
            return None
        for predicate in json.loads(query["filter"]).get("predicates", []):
            if predicate.get("key") in ("display_name", "name"):
                return predicate.get("stringValue", predicate.get("string_value"))
        return None

    def handle(self, request: Request) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            for failure in self._failures:
                method, path, status, message = failure
                if method == request.method and API + path == request.path:
                    self._failures.remove(failure)
                    return self.error(status, message)
            if self.require_token and request.headers.get("authorization") != f"Bearer {self.require_token}":
                return self.error(401, "Unauthenticated: request is not authenticated")
            return self._route(request)

    def _route(self, r: Request) -> tuple[int, Any]:
        path = r.path[len(API):] if r.path.startswith(API) else None
        if path == "/healthz" and r.method == "GET":
            return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
        if path == "/pipelines" and r.method == "GET":
            name = self._filter_name(r.query)
            found = [p for p in self.pipelines.values() if name is None or p["display_name"] == name]
            return 200, ({"pipelines": found, "total_size": len(found)} if found else {})
        if path == "/pipelines/upload" and r.method == "POST":
            return self._upload(r)
        if path == "/pipelines/upload_version" and r.method == "POST":
            return self._upload_version(r)
        if path and path.startswith("/pipelines/") and path.endswith("/versions") and r.method == "GET":
            pipeline_id = path.split("/")[2]
            if pipeline_id not in self.pipelines:
                return self.error(404, f"Pipeline {pipeline_id} not found")
            versions = list(self.versions[pipeline_id])
            if r.query.get("sort_by", "").endswith(" desc"):
                versions.reverse()
            size = int(r.query.get("page_size") or 0) or len(versions)
            return 200, {"pipeline_versions": versions[:size], "total_size": len(versions)}
        if path == "/experiments" and r.method == "GET":
            name = self._filter_name(r.query)
            found = [e for e in self.experiments.values() if name is None or e["display_name"] == name]
            return 200, ({"experiments": found, "total_size": len(found)} if found else {})
        if path == "/experiments" and r.method == "POST":
            body = r.body or {}
            experiment = {"experiment_id": self._new_id("experiment"), "display_name": body.get("display_name"),
                          "namespace": body.get("namespace") or "", "created_at": self._stamp(),
                          "storage_state": "AVAILABLE"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == "/runs" and r.method == "POST":
            body = r.body or {}
            if body.get("experiment_id") not in self.experiments:
                return self.error(404, f"Experiment {body.get('experiment_id')} not found")
            reference = body.get("pipeline_version_reference") or {}
            if reference and reference.get("pipeline_version_id") not in {
                    v["pipeline_version_id"] for v in self.versions.get(reference.get("pipeline_id"), [])}:
                return self.error(404, f"Pipeline version {reference.get('pipeline_version_id')} not found")
            run = {"run_id": self._new_id("run"), "experiment_id": body["experiment_id"],
                   "display_name": body.get("display_name"), "pipeline_version_reference": reference or None,
                   "runtime_config": body.get("runtime_config"), "state": "PENDING", "created_at": self._stamp()}
            self.runs[run["run_id"]] = run
            return 200, run
        return self.error(404, f"Not Found: {r.method} {r.path}")

    def _add_version(self, pipeline_id: str, name: str, description: str | None, package: bytes) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": self._new_id("version"), "display_name": name,
                   "name": name, "description": description or "", "created_at": self._stamp()}
        self.versions[pipeline_id].append(version)
        self.packages[version["pipeline_version_id"]] = package
        return version

    def _upload(self, r: Request) -> tuple[int, Any]:
        package = r.files.get("uploadfile")
        if not package:
            return self.error(400, "Failed to create a pipeline: missing the uploadfile form field")
        name = r.query.get("name") or r.query.get("display_name")
        if any(p["display_name"] == name for p in self.pipelines.values()):
            return self.error(409, f"Failed to create a pipeline: pipeline with name {name!r} already exists")
        pipeline = {"pipeline_id": self._new_id("pipeline"), "display_name": name, "name": name,
                    "description": r.query.get("description", ""), "namespace": r.query.get("namespace", ""),
                    "created_at": self._stamp()}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self.versions[pipeline["pipeline_id"]] = []
        self._add_version(pipeline["pipeline_id"], name, r.query.get("description"), package)
        return 200, pipeline

    def _upload_version(self, r: Request) -> tuple[int, Any]:
        package = r.files.get("uploadfile")
        pipeline_id = r.query.get("pipelineid")
        if not package:
            return self.error(400, "Failed to create a pipeline version: missing the uploadfile form field")
        if pipeline_id not in self.pipelines:
            return self.error(404, f"Failed to create a pipeline version: pipeline {pipeline_id} not found")
        name = r.query.get("name")
        if any(v["display_name"] == name for v in self.versions[pipeline_id]):
            return self.error(409, f"Failed to create a pipeline version: version name {name!r} already exists")
        return 200, self._add_version(pipeline_id, name, r.query.get("description"), package)


@pytest.fixture
def fake_kfp():
    """A running FakeKFP, stopped after the test."""
    with FakeKFP() as server:
        yield server
