"""The operator's own Kubernetes calls (k8s/api.py) against a small HTTP server on loopback standing in for the
API server: paths, the merge patch, errors, and a new login after a 401 (a rotated token)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from collection_operator.handlers.context import KubeSecrets
from collection_operator.k8s.api import KubeApi, KubeApiError, SecretNotFound
from collection_operator.reconcile.ports import SecretUnavailable
from collection_operator.redact import SecretValues


class FakeApiServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = "first"  # the token it accepts
        self.seen: list[tuple[str, str, str, str, Any]] = []  # method, path, authorization, content type, body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        auth = self.headers.get("Authorization", "")
        self.server.seen.append((self.command, self.path, auth, self.headers.get("Content-Type", ""), body))
        if auth != f"Bearer {self.server.token}":
            return self._json(401, {"kind": "Status", "code": 401})
        if self.path == "/api/v1/namespaces/ns/secrets/key":
            return self._json(200, {"data": {"apiKey": base64.b64encode(b"s3cr3t-value").decode()}})
        if self.path == "/apis/qdrant.collection-operator.dev/v1alpha1/namespaces/ns/vectorcollections":
            return self._json(200, {"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]})
        if self.path.endswith("/vectorcollections/a/status") and self.command == "PATCH":
            return self._json(200, {})
        if self.path == "/api/v1/namespaces/ns/secrets/forbidden":
            return self._json(403, {"kind": "Status", "code": 403}, phrase="Denied: ask evil.example")
        return self._json(404, {"kind": "Status", "code": 404})

    do_GET = do_PATCH = _answer

    def _json(self, code: int, body: Any, phrase: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code, phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    srv = FakeApiServer()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
                "clusters": [{"name": "k", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
            }
        )
    )
    return path


async def test_reads_lists_and_patches_what_it_should(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", server.url, "first")))
    secrets = SecretValues()
    kube = await KubeApi.connect(secrets, kopf.OperatorSettings())
    try:
        assert await kube.read_secret_key("ns", "key", "apiKey") == b"s3cr3t-value"
        assert "s3cr3t-value" not in secrets.scrub("key s3cr3t-value"), "a value read is masked from then on"
        with pytest.raises(SecretNotFound, match="has no key 'other'"):
            await kube.read_secret_key("ns", "key", "other")
        with pytest.raises(SecretNotFound, match="Secret ns/missing not found"):
            await kube.read_secret_key("ns", "missing", "apiKey")
        with pytest.raises(KubeApiError) as forbidden:
            await kube.read_secret_key("ns", "forbidden", "apiKey")
        assert forbidden.value.status == 403
        assert str(forbidden.value).endswith(": 403 Forbidden"), "the standard phrase, never the one sent"
        port = KubeSecrets(kube)  # what a connection's loop reads through: a refusal is "not now", not a bug
        with pytest.raises(SecretUnavailable, match="403"):
            await port.read_secret_key("ns", "forbidden", "apiKey")
        with pytest.raises(SecretNotFound):
            await port.read_secret_key("ns", "missing", "apiKey")
        assert await kube.names("vectorcollections", "ns") == {"a", "b"}
        await kube.patch_status("vectorcollections", "ns", "a", {"phase": "Ready"})
    finally:
        await kube.close()
    method, path, _, content_type, body = server.seen[-1]
    assert (method, path, content_type, body) == (
        "PATCH",
        "/apis/qdrant.collection-operator.dev/v1alpha1/namespaces/ns/vectorcollections/a/status",
        "application/merge-patch+json",
        {"status": {"phase": "Ready"}},
    )


async def test_a_rejected_token_is_read_again_once(server, tmp_path, monkeypatch):
    config = kubeconfig(tmp_path / "config", server.url, "first")
    monkeypatch.setenv("KUBECONFIG", str(config))
    kube = await KubeApi.connect(SecretValues(), kopf.OperatorSettings())
    try:
        server.token = "second"  # rotated on the server: the old one is refused
        kubeconfig(config, server.url, "second")  # and in the file, as a projected token file would be
        assert await kube.names("vectorcollections", "ns") == {"a", "b"}
        assert [auth for _, _, auth, _, _ in server.seen] == ["Bearer first", "Bearer second"]
        server.token = "third"  # refused, and the file still says "second": an error, not a loop
        with pytest.raises(KubeApiError) as refused:
            await kube.names("vectorcollections", "ns")
        assert refused.value.status == 401
        assert len(server.seen) == 4
    finally:
        await kube.close()


async def test_names_in_paths_are_quoted(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", server.url, "first")))
    kube = await KubeApi.connect(SecretValues(), kopf.OperatorSettings())
    try:
        with pytest.raises(SecretNotFound):
            await kube.read_secret_key("ns", "../../other/x?y", "apiKey")
    finally:
        await kube.close()
    assert server.seen[-1][1] == "/api/v1/namespaces/ns/secrets/..%2F..%2Fother%2Fx%3Fy"
