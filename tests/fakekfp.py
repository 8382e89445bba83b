"""A fake KFP API server for the tests: the v2beta1 REST endpoints that kfp.Client calls.

It listens on 127.0.0.1 only, on a free port, in a thread, and keeps everything in memory.
It records every request (method, path, query, headers, JSON body, uploaded files) so that
tests can assert what kfp.Client sent, and can be told to answer errors:

    server.fail("POST", "/apis/v2beta1/runs", 500, "database is down")   # next matching request
    server.require_token = "s3cret"                                       # 401 without it
    server.echo_authorization = "bad header: {authorization}"             # 401 quoting the header

The shapes follow kfp_server_api's models (V2beta1Pipeline, V2beta1PipelineVersion,
V2beta1Experiment, V2beta1Run, V2beta1GetHealthzResponse) and the google.rpc.Status error
body of the KFP API server.

Runs move on one step each time a client reads them (``GET /runs/{id}``), so a test is
deterministic without sleeping: PENDING, then RUNNING with the first step running, then each
read finishes one step and starts the next, until the run is SUCCEEDED, or FAILED (CANCELED) at a
step named in ``fail_steps`` (``cancel_steps``); a step in ``stuck_steps`` runs for ever. Each step has the task
details KFP gives (the step's own, a ``-driver`` one, and the ``root`` DAG's), with pods and,
for a Metrics output, an ML Metadata artifact id whose values ``metric_values`` holds. Logs
are served as the API server serves them (``/apis/v1alpha1/runs/{id}/nodes/{pod}/log``) or as
the KFP UI's server does (``/k8s/pod/logs``), per ``log_endpoint``; ML Metadata answers
``GetArtifactsByID`` over gRPC-web when ``metadata_enabled``.

``SilentHost`` is a host that accepts connections and never answers, not even a TLS handshake.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import json
import selectors
import socket
import struct
import sys
import threading
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest
import yaml

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


@dataclass
class Raw:
    """A reply body that is not JSON."""

    content_type: str
    data: bytes


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _delimited(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _mlmd_value(value: Any) -> bytes:
    """An ml_metadata.Value: double_value (2) for numbers, string_value (3) for text."""
    if isinstance(value, str):
        return _delimited(3, value.encode())
    return _varint(2 << 3 | 1) + struct.pack("<d", float(value))


def mlmd_artifact(artifact_id: int, properties: dict[str, Any]) -> bytes:
    """An ml_metadata.Artifact with an id (1), a uri (3) and custom properties (5)."""
    data = _varint(1 << 3) + _varint(artifact_id) + _delimited(3, f"minio://mlpipeline/{artifact_id}".encode())
    for key, value in properties.items():
        data += _delimited(5, _delimited(1, key.encode()) + _delimited(2, _mlmd_value(value)))
    return data


def mlmd_requested_ids(frame: bytes) -> list[int]:
    """The artifact_ids (field 1, packed or not) of a gRPC-web GetArtifactsByIDRequest frame."""
    message, ids, at = frame[5:5 + struct.unpack(">I", frame[1:5])[0]], [], 0

    def varint():
        nonlocal at
        value = shift = 0
        while True:
            byte = message[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(message):
        key = varint()
        if key == 1 << 3:
            ids.append(varint())
        elif key == (1 << 3 | 2):
            end = varint() + at
            while at < end:
                ids.append(varint())
        else:
            raise ValueError(f"unexpected field key {key}")
    return ids


def _floats(value: Any) -> Any:
    """Numbers as a protobuf Struct holds them (doubles), as the API server returns a spec."""
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def package_spec(package: bytes) -> dict:
    """A version's pipeline_spec as the API returns it: the spec, or {pipeline_spec, platform_spec}."""
    docs = [doc for doc in yaml.safe_load_all(package) if doc]
    if len(docs) == 1:
        return _floats(docs[0])
    platform: dict = {}
    for doc in docs[1:]:
        platform.update(doc)
    return _floats({"pipeline_spec": docs[0], "platform_spec": platform})


def spec_steps(spec: dict) -> list[dict]:
    """The root tasks of a spec, dependencies first: {"key", "name", "metrics": [output names]}."""
    spec = spec.get("pipeline_spec", spec)
    tasks = spec["root"]["dag"]["tasks"]
    ordered: list[str] = []
    while len(ordered) < len(tasks):
        ordered += [key for key, task in sorted(tasks.items())
                    if key not in ordered and set(task.get("dependentTasks", [])) <= set(ordered)]
    steps = []
    for key in ordered:
        component = spec["components"][tasks[key]["componentRef"]["name"]]
        artifacts = component.get("outputDefinitions", {}).get("artifacts", {})
        steps.append({"key": key, "name": tasks[key]["taskInfo"]["name"],
                      "metrics": [n for n, a in artifacts.items()
                                  if a["artifactType"]["schemaTitle"] == "system.Metrics"]})
    return steps


#: What ``ansi`` mode adds to every string: colour (CSI), a window title (OSC ... BEL), a C1 CSI,
#: backspace, carriage return and DEL; a terminal that shows them raw can be made to lie.
ANSI = "\x1b[31m\x1b]0;pwned\x07\x9b2J\x08\r\x7f\x1bc"
#: Modes that change what the server answers (``FakeKFP.hostile``): each a malformed but plausible answer.
ANSWER_MODES = ("ansi", "naive-times", "no-run-id", "bare-tasks", "bad-spec", "wrong-types", "truncated-metrics",
                "odd-metrics", "garbage", "http-500", "echo-token")
#: Modes that change how the server sends its answers (``FakeKFP.transport``).
TRANSPORT_MODES = ("trickle", "trickle-headers", "silence", "huge", "gzip-bomb")
_BOMB: list[bytes] = []


def gzip_bomb() -> bytes:
    """About 0.3 MB of gzip that unpacks to 300 MiB of JSON whitespace followed by ``{}``."""
    if not _BOMB:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b" " * (1024 * 1024)
        _BOMB.append(b"".join([packer.compress(block) for _ in range(300)] + [packer.compress(b"{}"),
                                                                               packer.flush()]))
    return _BOMB[0]


def token_forms(authorization: str) -> str:
    """The Authorization header echoed as servers and proxies echo it: as is, cased, percent-encoded,
    base64-encoded and cut short."""
    token = authorization.partition(" ")[2] or authorization
    return " ".join([authorization, token.upper(), token.lower(), quote(authorization, safe=""),
                     base64.b64encode(token.encode()).decode(), token[:len(token) * 2 // 3] + "…"])


def _strings(value: Any, change, key: str = "") -> Any:
    """``value`` with ``change(text, key)`` applied to every string value in it (``key``: the field's name)."""
    if isinstance(value, dict):
        return {k: _strings(v, change, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(v, change, key) for v in value]
    return change(value, key) if isinstance(value, str) else value


def _metrics_frame(message: bytes) -> bytes:
    trailer = b"grpc-status:0\r\ngrpc-message:\r\n"
    return (b"\x00" + struct.pack(">I", len(message)) + message + b"\x80" + struct.pack(">I", len(trailer))
            + trailer)




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
        request = Request(method, unquote(url.path), query, {k.lower(): v for k, v in self.headers.items()})
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
        content_type = "application/json"
        if isinstance(reply, Raw):
            content_type, data = reply.content_type, reply.data
        else:
            data = json.dumps(reply).encode()
        mode = self.server.transport
        if mode is not None:
            try:
                return self._hostile_reply(mode, status, content_type, data)
            except OSError:  # the client gave up, as it should
                self.close_connection = True
                return None
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _hostile_reply(self, mode: str, status: int, content_type: str, data: bytes) -> None:
        """Send the answer as a hostile host does (``TRANSPORT_MODES``)."""
        stopping = self.server.stopping
        self.close_connection = True
        if mode == "silence":
            stopping.wait(600)
            return
        if mode == "trickle-headers":  # a status line, then header bytes one at a time
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for byte in itertools.cycle(b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"):
                if stopping.wait(0.02):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if mode == "gzip-bomb":
            bomb = gzip_bomb()
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)
            return
        self.send_header("Content-Length", str(1024 ** 3 if mode == "huge" else len(data) + 10 ** 6))
        self.end_headers()
        if mode == "huge":
            block = b" " * (1024 * 1024)
            for _ in range(1024):
                if stopping.is_set():
                    return
                self.wfile.write(block)
            return
        for byte in itertools.cycle(data):  # trickle: a byte at a time, never the whole answer
            if stopping.wait(0.02):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

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
        #: A message template: every request is refused (401) with the Authorization header put in it.
        self.echo_authorization: str | None = None
        #: While set to an unset Event, every request waits (up to a minute) for it: a slow host.
        self.hold: threading.Event | None = None
        #: Set when a request arrives, for tests that order events across threads.
        self.request_arrived = threading.Event()
        self.multi_user = False
        #: Step names (as KFP shows them) that fail, or that never finish, in the runs created from now on.
        self.fail_steps: set[str] = set()
        self.stuck_steps: set[str] = set()
        #: Step names at which the runs created from now on are canceled.
        self.cancel_steps: set[str] = set()
        #: Step name -> {metric: value} its Metrics output records.
        self.metric_values: dict[str, dict[str, float]] = {}
        #: Who serves pod logs: "api" (the API server), "ui" (the KFP UI's server) or None.
        self.log_endpoint: str | None = "api"
        #: Whether ML Metadata answers over gRPC-web; its artifacts: id -> custom properties.
        self.metadata_enabled = True
        self.artifacts: dict[int, dict[str, Any]] = {}
        self._artifact_ids = itertools.count(101)
        self._failures: list[tuple[str, str, int, str]] = []
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        #: Connections accepted so far.
        self.connections = 0
        #: Hostile behaviour: answers (one of ANSWER_MODES) and how they are sent (one of TRANSPORT_MODES).
        self.hostile: str | None = None
        self.transport: str | None = None
        #: Set when the server stops, to end hostile replies that would go on for ever.
        self.stopping = threading.Event()

    def handle_error(self, request, client_address) -> None:
        """A request's failure (a client that hung up on a flood, say) goes to the process's own stderr, never to
        ``sys.stderr``, which a command run in this process may have redirected: there it would read as the
        command's own traceback."""
        import traceback

        traceback.print_exc(file=sys.__stderr__)

    def verify_request(self, request, client_address) -> bool:
        """Count every connection, even one that never becomes an HTTP request (a TLS hello)."""
        with self._lock:
            self.connections += 1
        return True

    # --- control --------------------------------------------------------------------------

    def start(self) -> "FakeKFP":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
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
        self.request_arrived.set()
        hold = self.hold
        if hold is not None:
            hold.wait(60)
        with self._lock:
            self.requests.append(request)
            if self.echo_authorization is not None:
                return self.error(401, self.echo_authorization.format(
                    authorization=request.headers.get("authorization", "")))
            for failure in self._failures:
                method, path, status, message = failure
                if method == request.method and API + path == request.path:
                    self._failures.remove(failure)
                    return self.error(status, message)
            if self.require_token and request.headers.get("authorization") != f"Bearer {self.require_token}":
                return self.error(401, "Unauthenticated: request is not authenticated")
            status, reply = self._route(request)
            return self._tamper(request, status, reply) if self.hostile else (status, reply)

    def _tamper(self, request: Request, status: int, reply: Any) -> tuple[int, Any]:
        """The answer made hostile as ``self.hostile`` says (``ANSWER_MODES``); the healthz check still passes
        (but with ``http-500`` and ``garbage``), so the command gets to the calls that follow it."""
        mode, path = self.hostile, request.path
        authorization = request.headers.get("authorization", "")
        if mode == "http-500":
            return self.error(500, f"internal error {ANSI} while serving {token_forms(authorization)}")
        if mode == "echo-token":
            return self.error(403, f"forbidden: {token_forms(authorization)}")
        if path.endswith("/healthz"):
            return status, reply
        if mode == "garbage":
            return 200, Raw("application/json", b"\x1b[2J<html>\x9b31m not json" + bytes(range(256)))
        if mode == "ansi":
            if isinstance(reply, Raw):
                return status, (Raw(reply.content_type, reply.data + ANSI.encode() + b"\n")
                                if reply.content_type.startswith("text/") else reply)
            # ids, pod names and times stay usable: the command reads and asks for them again
            return status, _strings(reply, lambda text, key: text if key.endswith(("_at", "_time", "_id", "pod_name",
                                                                                   "artifact_ids")) else text + ANSI)
        if isinstance(reply, Raw):
            if path.endswith("GetArtifactsByID") and mode in ("truncated-metrics", "odd-metrics"):
                return status, Raw(reply.content_type, self._bad_metrics(mode, reply.data))
            return status, reply
        if mode == "naive-times":
            # the end of a run or task without its zone, its start with it
            return status, _strings(reply, lambda text, key: text[:-1] if key in ("finished_at", "end_time")
                                    and text.endswith("Z") else text)
        run_views = [reply] if "run_id" in (reply or {}) else list((reply or {}).get("runs") or [])
        for view in run_views:
            if mode == "no-run-id":
                view.pop("run_id", None)
            if mode == "bare-tasks" and view.get("run_details"):
                view["run_details"]["task_details"] = [{}, {"display_name": None}, {"display_name": "load"},
                                                       {"display_name": "train", "child_tasks": [{}],
                                                        "outputs": {"metrics": {}, "x": {"artifact_ids": []}}}]
            if mode == "wrong-types":
                view.update(state=7, display_name=["x"], created_at="yesterday", finished_at=12,
                            run_details="none", error="boom", pipeline_spec=[1, 2])
        if mode == "wrong-types" and "runs" in (reply or {}):
            reply["next_page_token"] = {"a": 1}
        if mode == "bad-spec" and "pipeline_spec" in (reply or {}):
            reply["pipeline_spec"] = {"root": {"dag": {"tasks": {"a": "x", "b": {"componentRef": 5,
                                      "taskInfo": "y", "dependentTasks": "a"}, "c": None}}}, "components": ["z"]}
        return status, reply

    def _bad_metrics(self, mode: str, data: bytes) -> bytes:
        """ML Metadata's answer, cut short or with odd wire types, lengths and values."""
        if mode == "truncated-metrics":
            message = data[5:5 + struct.unpack(">I", data[1:5])[0]]
            return data[:5] + message[:len(message) // 2]
        artifact = (_varint(1 << 3) + b"\xff" * 11  # an id varint longer than 64 bits
                    + _delimited(5, _delimited(1, b"score") + _delimited(2, _varint(2 << 3 | 1) + b"\x01")))
        odd = (_delimited(1, artifact) + _delimited(1, _varint(5 << 3 | 2) + _varint(1 << 40))
               + _varint(1 << 3 | 7) + _delimited(1, _delimited(5, b"\x0a\x05score\x12\x02\x1a\x00")))
        return b"\x00" + struct.pack(">I", 10 ** 9) + odd  # a frame that says it is longer than the answer

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
            name = self._filter_name(r.query)
            if name is not None:
                versions = [v for v in versions if v["display_name"] == name]
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
            spec = (package_spec(self.packages[reference["pipeline_version_id"]]) if reference
                    else body.get("pipeline_spec") or {})
            run = {"run_id": self._new_id("run"), "experiment_id": body["experiment_id"],
                   "display_name": body.get("display_name"), "pipeline_version_reference": reference or None,
                   "runtime_config": body.get("runtime_config"), "state": "PENDING", "created_at": self._stamp(),
                   "_steps": spec_steps(spec) if spec else [], "_polls": 0, "_outputs": {},
                   "_fail": set(self.fail_steps), "_stuck": set(self.stuck_steps),
                   "_cancel": set(self.cancel_steps)}
            self.runs[run["run_id"]] = run
            return 200, self._run_view(run)
        if path == "/runs" and r.method == "GET":
            runs = sorted(self.runs.values(), key=lambda run: run["created_at"],
                          reverse=r.query.get("sort_by", "").endswith(" desc"))
            if r.query.get("experiment_id"):
                runs = [run for run in runs if run["experiment_id"] == r.query["experiment_id"]]
            start = int(r.query.get("page_token") or 0)
            size = int(r.query.get("page_size") or 0) or len(runs)
            page = runs[start:start + size]
            reply = {"runs": [self._run_view(run) for run in page], "total_size": len(runs)}
            if start + size < len(runs):
                reply["next_page_token"] = str(start + size)
            return 200, (reply if page else {})
        if path and path.startswith("/runs/") and r.method == "GET":
            run = self.runs.get(path.split("/")[2])
            if run is None:
                return self.error(404, f"Run {path.split('/')[2]} not found")
            run["_polls"] += 1
            return 200, self._run_view(run)
        if path and path.startswith("/pipelines/") and path.count("/") == 4 and r.method == "GET":
            _, _, pipeline_id, _, version_id = path.split("/")
            for version in self.versions.get(pipeline_id, []):
                if version["pipeline_version_id"] == version_id:
                    return 200, dict(version, pipeline_spec=package_spec(self.packages[version_id]))
            return self.error(404, f"Pipeline version {version_id} not found")
        if r.path.startswith("/apis/v1alpha1/runs/") and r.path.endswith("/log") and r.method == "GET":
            if self.log_endpoint != "api":
                return 404, Raw("text/plain", b"404 page not found")
            parts = r.path.split("/")
            return self._log(parts[4], parts[6])
        if r.path == "/k8s/pod/logs" and r.method == "GET":
            if self.log_endpoint != "ui":
                return 200, Raw("text/html", b"<!doctype html><title>Kubeflow Pipelines</title>")
            return self._log(r.query.get("runid", ""), r.query.get("podname", ""))
        if r.path == "/ml_metadata.MetadataStoreService/GetArtifactsByID" and r.method == "POST":
            if not self.metadata_enabled:
                return 404, Raw("text/plain", b"404 page not found")
            message = b"".join(_delimited(1, mlmd_artifact(i, self.artifacts[i]))
                               for i in mlmd_requested_ids(r.body) if i in self.artifacts)
            trailer = b"grpc-status:0\r\ngrpc-message:\r\n"
            return 200, Raw("application/grpc-web+proto", b"\x00" + struct.pack(">I", len(message)) + message
                            + b"\x80" + struct.pack(">I", len(trailer)) + trailer)
        return self.error(404, f"Not Found: {r.method} {r.path}")

    # --- runs that move on ----------------------------------------------------------------------

    def _log(self, run_id: str, pod: str) -> tuple[int, Any]:
        run = self.runs.get(run_id)
        for index, step in enumerate(run["_steps"] if run else []):
            if pod == self._pod(run, index, "impl"):
                return 200, Raw("text/plain", f"[{step['name']}] started\n[{step['name']}] done\n".encode())
        return 500, {"error_message": f"pod {pod} of run {run_id} not found", "error_details": ""}

    @staticmethod
    def _pod(run: dict, index: int, kind: str) -> str:
        return f"{run['run_id']}-system-container-{kind}-{1000 + index}"

    @staticmethod
    def _time(index: int, offset: int) -> str:
        return f"2025-01-01T00:{index + 1:02d}:{offset:02d}Z"

    def _step_states(self, run: dict) -> list[str]:
        """The states of the steps that have started, in order, after the run's reads."""
        states: list[str] = []
        finished = run["_polls"] - 1  # the steps finished so far
        for index, step in enumerate(run["_steps"] if run["_polls"] else []):
            if index >= finished or step["name"] in run["_stuck"]:
                return states + ["RUNNING"]
            states.append("FAILED" if step["name"] in run["_fail"] else
                          "CANCELED" if step["name"] in run["_cancel"] else "SUCCEEDED")
            if states[-1] != "SUCCEEDED":
                break
        return states

    def _run_view(self, run: dict) -> dict:
        """The run as GET /runs/{id} answers it, with its task details."""
        view = {k: v for k, v in run.items() if not k.startswith("_")}
        steps = run["_steps"]
        details, states = [], self._step_states(run)
        for index, (step, state) in enumerate(zip(steps, states)):
            done = state != "RUNNING"
            detail = {"run_id": run["run_id"], "task_id": f"{run['run_id']}-task-{index}",
                      "display_name": step["name"], "state": state, "create_time": self._time(index, 0),
                      "start_time": self._time(index, 1), "pod_name": self._pod(run, index, "impl"),
                      "child_tasks": [{"pod_name": self._pod(run, index, "impl")}]}
            if done:
                detail["end_time"] = self._time(index, 41)
            if state == "FAILED":
                detail["error"] = {"code": 2, "message": f"step {step['name']} exited with code 1"}
            if state == "SUCCEEDED" and step["metrics"]:
                outputs = run["_outputs"].setdefault(index, {})
                for output in step["metrics"]:
                    if output not in outputs:
                        outputs[output] = next(self._artifact_ids)
                        self.artifacts[outputs[output]] = {"display_name": output,
                                                           **self.metric_values.get(step["name"], {})}
                detail["outputs"] = {o: {"artifact_ids": [str(i)]} for o, i in outputs.items()}
            driver = {"run_id": run["run_id"], "task_id": f"{run['run_id']}-driver-{index}",
                      "display_name": f"{step['name']}-driver", "state": "SUCCEEDED",
                      "create_time": self._time(index, 0), "pod_name": self._pod(run, index, "driver")}
            details += [driver, detail]
        if run["_polls"] == 0 or not steps:
            state = "PENDING"
        elif "FAILED" in states or "CANCELED" in states:
            state = states[-1]
        elif len(states) == len(steps) and all(s == "SUCCEEDED" for s in states):
            state = "SUCCEEDED"
        else:
            state = "RUNNING"
        view["state"] = state
        if state in ("SUCCEEDED", "FAILED", "CANCELED"):
            view["finished_at"] = self._time(len(states), 59)
        if state == "FAILED":
            view["error"] = {"code": 2, "message": "a task failed"}
        if details:
            root = {"run_id": run["run_id"], "task_id": f"{run['run_id']}-root", "display_name": "root",
                    "state": state if state != "PENDING" else "RUNNING", "create_time": self._time(0, 0)}
            view["run_details"] = {"task_details": [root] + details}
        return view

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


class SilentHost:
    """A TCP server on 127.0.0.1 that accepts every connection, reads what comes and never answers: a KFP
    host that hangs (also before a TLS handshake). ``url`` is its https URL; ``accepted`` counts the
    connections, ``open`` those the client has not closed yet."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.setblocking(False)
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def open(self) -> int:
        """Connections the client has not closed."""
        with self._lock:
            return len(self._clients)

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in selector.select(0.05):
                    if key.fileobj is self._listener:
                        try:
                            client, _ = self._listener.accept()
                        except BlockingIOError:
                            continue
                        client.setblocking(False)
                        selector.register(client, selectors.EVENT_READ)
                        with self._lock:
                            self.accepted += 1
                            self._clients.add(client)
                        continue
                    client = key.fileobj
                    try:
                        data = client.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:  # the client closed it
                        selector.unregister(client)
                        client.close()
                        with self._lock:
                            self._clients.discard(client)
            with self._lock:
                for client in self._clients:
                    client.close()
                self._clients.clear()

    def __enter__(self) -> "SilentHost":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


@pytest.fixture
def fake_kfp():
    """A running FakeKFP, stopped after the test."""
    with FakeKFP() as server:
        yield server
