"""A fake Kubernetes API on 127.0.0.1 over TLS, with a fake service-account folder: a Kubeflow notebook
server's pod as the real ``kubernetes`` client reads it with its in-cluster configuration.

The in-cluster configuration always speaks HTTPS to ``KUBERNETES_SERVICE_HOST:PORT`` and trusts the
folder's ``ca.crt``, so the server has a certificate for 127.0.0.1 signed by a CA made here. The
folder is reached through ``NBCONVERT_KFP_SERVICE_ACCOUNT_DIR``; ``environment()`` gives every
variable a process in the notebook server would have.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

NAMESPACE = "team-a"
POD = "analysis-0"
TOKEN = "kube-token-of-the-notebook"
IMAGE = "kubeflownotebookswg/jupyter-scipy:v1.9.0"
DIGEST = "sha256:" + "ab12" * 16
CLAIM = "analysis-workspace"


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) files for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake kubernetes CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    files = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    files[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return files


def notebook_pod(mount_point: str, *, image: str = IMAGE, image_id: str | None = None) -> dict[str, Any]:
    """A notebook server's pod as Kubeflow's notebook controller makes it, with Istio's sidecar listed first."""
    image_id = image_id if image_id is not None else f"docker.io/{image.split(':')[0]}@{DIGEST}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": POD, "namespace": NAMESPACE, "labels": {"notebook-name": "analysis"}},
        "spec": {
            "serviceAccountName": "default-editor",
            "containers": [
                {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.1"},
                {"name": "analysis", "image": image,
                 "env": [{"name": "NB_PREFIX", "value": f"/notebook/{NAMESPACE}/analysis"}],
                 "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"},
                                  {"name": "workspace-vol", "mountPath": mount_point},
                                  {"name": "data-vol", "mountPath": "/data", "readOnly": True},
                                  {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/"
                                   "serviceaccount", "readOnly": True}]},
            ],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory"}},
                        {"name": "workspace-vol", "persistentVolumeClaim": {"claimName": CLAIM}},
                        {"name": "data-vol", "persistentVolumeClaim": {"claimName": "shared-data"}},
                        {"name": "kube-api-access-x", "projected": {"sources": []}}],
        },
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.22.1",
             "imageID": "docker.io/istio/proxyv2@sha256:" + "99" * 32},
            {"name": "analysis", "image": f"docker.io/{image}", "imageID": image_id},
        ]},
    }


def claim(name: str, modes: list[str]) -> dict[str, Any]:
    """A bound PersistentVolumeClaim."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": "Bound", "accessModes": modes}}


@dataclass
class Seen:
    """A request the fake API received."""

    path: str
    authorization: str | None


class _Handler(BaseHTTPRequestHandler):
    server: "FakeKubernetes"

    def log_message(self, format, *args):  # keep the test output clean
        pass

    def do_GET(self):
        api = self.server
        api.requests.append(Seen(self.path, self.headers.get("Authorization")))
        if api.silent:
            api.release.wait(30)
            return
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or token != TOKEN:
            return self._reply(401, {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401})
        if api.refuse:
            return self._reply(403, {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                                     "message": f'pods "{POD}" is forbidden: User "system:serviceaccount:'
                                                f'{NAMESPACE}:default-editor" cannot get resource "pods"'})
        found = api.objects.get(self.path.split("?")[0])
        if found is None:
            return self._reply(404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        self._reply(200, found)

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeKubernetes(ThreadingHTTPServer):
    """The fake API server: ``objects`` maps API paths to JSON; ``refuse`` answers 403, ``silent`` never answers."""

    daemon_threads = True

    def __init__(self, folder: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        ca, certificate, key = _certificates(folder)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self.account = folder / "serviceaccount"
        self.account.mkdir()
        (self.account / "token").write_text(TOKEN)
        (self.account / "namespace").write_text(NAMESPACE)
        (self.account / "ca.crt").write_bytes(ca.read_bytes())
        self.objects: dict[str, dict] = {}
        self.requests: list[Seen] = []
        self.refuse = False
        self.silent = False
        self.release = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def add_pod(self, pod: dict) -> None:
        """Serve ``pod`` at its API path."""
        meta = pod["metadata"]
        self.objects[f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"] = pod

    def add_claim(self, name: str, modes: list[str]) -> None:
        """Serve a bound claim with these access modes."""
        self.objects[f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims/{name}"] = claim(name, modes)

    def environment(self) -> dict[str, str]:
        """The variables of a process in the notebook server's container."""
        return {"NB_PREFIX": f"/notebook/{NAMESPACE}/analysis", "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(self.port), "HOSTNAME": POD,
                "NBCONVERT_KFP_SERVICE_ACCOUNT_DIR": str(self.account)}

    def start(self) -> "FakeKubernetes":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def fake_kube(tmp_path_factory):
    """A running FakeKubernetes (no objects yet), stopped after the test."""
    server = FakeKubernetes(tmp_path_factory.mktemp("kube")).start()
    yield server
    server.stop()
