"""Metadata: the metric values of a run's output artifacts, read from ML Metadata as the KFP UI reads them.

KFP's REST API (v2beta1) gives each task's output artifacts as ML Metadata ids, not their
values. KFP records a ``Metrics`` artifact's values as the artifact's custom properties in ML
Metadata (numbers as ``double_value``), and the KFP UI reads them over gRPC-web:
``POST /ml_metadata.MetadataStoreService/GetArtifactsByID``, which the KFP UI's server and
Kubeflow's gateway route to the metadata Envoy proxy. This module speaks that one call with
the standard library: a few lines of protocol-buffer wire format and gRPC-web framing.
A host that does not route it (the API server's own port, say) gives ``MetadataUnavailable``.
"""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import ScriptError

#: The gRPC-web method the KFP UI calls for artifacts.
PATH = "/ml_metadata.MetadataStoreService/GetArtifactsByID"
#: The headers of a gRPC-web call with binary protocol buffers.
HEADERS = {"Content-Type": "application/grpc-web+proto", "Accept": "application/grpc-web+proto", "X-Grpc-Web": "1"}


class MetadataUnavailable(ScriptError):
    """ML Metadata cannot be read from this host; the message says why, in one line."""


class MalformedMetadata(MetadataUnavailable):
    """ML Metadata answered, but not with messages of the shape ``GetArtifactsByID`` gives."""


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def request_frame(artifact_ids: list[int]) -> bytes:
    """A gRPC-web frame of ``GetArtifactsByIDRequest{artifact_ids}`` (field 1, repeated int64)."""
    message = b"".join(b"\x08" + _varint(artifact_id) for artifact_id in artifact_ids)
    return b"\x00" + struct.pack(">I", len(message)) + message


def wire_fields(data: bytes) -> list[tuple[int, Any]]:
    """The (field number, value) pairs of a protocol-buffer message: varints as ints, 64- and 32-bit
    fields as raw bytes, length-delimited fields as bytes."""
    fields, at = [], 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
        elif wire == 1:
            value, at = data[at:at + 8], at + 8
        elif wire == 2:
            size, at = _read_varint(data, at)
            value, at = data[at:at + size], at + size
        elif wire == 5:
            value, at = data[at:at + 4], at + 4
        else:
            raise ValueError(f"unsupported protocol-buffer wire type {wire}")
        if at > len(data):
            raise ValueError("truncated protocol-buffer message")
        fields.append((number, value))
    return fields


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data):
            raise ValueError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _value(data: bytes) -> Any:
    """An ML Metadata ``Value``: int_value (1), double_value (2) or string_value (3); None for others."""
    for number, raw in wire_fields(data):
        if number == 1:
            return raw - (1 << 64) if raw >= 1 << 63 else raw
        if number == 2:
            return struct.unpack("<d", raw)[0]
        if number == 3:
            return raw.decode("utf-8", "replace")
    return None


def decode_artifacts(message: bytes) -> dict[int, dict[str, Any]]:
    """Artifact id -> custom properties, from a ``GetArtifactsByIDResponse`` message."""
    artifacts = {}
    for number, artifact in wire_fields(message):
        if number != 1:
            continue
        artifact_id, properties = None, {}
        for field, value in wire_fields(artifact):
            if field == 1:
                artifact_id = value
            elif field == 5:  # map<string, Value> custom_properties
                entry = dict(wire_fields(value))
                properties[entry.get(1, b"").decode("utf-8", "replace")] = _value(entry.get(2, b""))
        if artifact_id is not None:
            artifacts[artifact_id] = properties
    return artifacts


def read_frames(body: bytes, headers: Any) -> bytes:
    """The message of a gRPC-web reply; raise MetadataUnavailable for a gRPC error or another reply."""
    data, trailers, at = b"", {}, 0
    while at + 5 <= len(body):
        flag, size = body[at], struct.unpack(">I", body[at + 1:at + 5])[0]
        chunk = body[at + 5:at + 5 + size]
        at += 5 + size
        if flag & 0x80:
            for line in chunk.decode("utf-8", "replace").split("\r\n"):
                name, _, value = line.partition(":")
                trailers[name.strip().lower()] = value.strip()
        else:
            data += chunk
    status = trailers.get("grpc-status") or headers.get("grpc-status")
    if status not in (None, "0"):
        message = trailers.get("grpc-message") or headers.get("grpc-message") or ""
        raise MetadataUnavailable(f"ML Metadata answered gRPC status {status}" + (f": {message}" if message else ""))
    if status is None and not data:
        raise MetadataUnavailable("the host did not answer as a gRPC-web service")
    return data


def _hosts(kfp_client) -> list[str | None]:
    """Where to call: the KFP host itself, then its origin when the host has a path (``/pipeline``)."""
    from .deployment import _host

    host = _host(kfp_client) or ""
    parts = urlsplit(host)
    origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return [None] + ([origin] if parts.path.strip("/") and origin else [])


def artifact_properties(kfp_client, artifact_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Artifact id -> custom properties of ML Metadata artifacts, through kfp.Client's connection."""
    from kfp_server_api.exceptions import ApiException

    from .deployment import raw_request

    if not artifact_ids:
        return {}
    reasons = []
    for host in _hosts(kfp_client):
        try:
            response = raw_request(kfp_client, "POST", PATH, headers=HEADERS, body=request_frame(artifact_ids),
                                   host=host)
        except ApiException as error:
            reasons.append(f"HTTP {error.status}")
            continue
        except Exception as error:  # urllib3 and socket errors
            reasons.append(type(error).__name__)
            continue
        content_type = response.headers.get("Content-Type", "")
        if not content_type.startswith("application/grpc"):
            reasons.append(f"an answer of type {content_type or 'unknown'}")
            continue
        try:
            return decode_artifacts(read_frames(response.data, response.headers))
        except (ValueError, TypeError, IndexError, KeyError, struct.error, OverflowError) as error:
            raise MalformedMetadata(f"ML Metadata's answer is malformed: {error}") from None
    raise MetadataUnavailable(f"{PATH} is not served by this host ({', '.join(reasons)}); connect to the KFP UI "
                              "or the Kubeflow gateway, which route it to ML Metadata")
