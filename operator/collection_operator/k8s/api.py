"""The operator's own calls to the Kubernetes API (kopf does the watching): Secrets (read; written for
CollectionAccessKeys), status and kopf's peering object. KubeApi is the reconcilers' SecretsPort.

The credentials are kopf's own (its service-account and kubeconfig logins, the ones kopf watches with), and
the transport is httpx, as for Qdrant. No generated client library: kubernetes_asyncio's 859 modules were
about 40 MiB of the operator's memory for these three calls."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import httpx
import kopf

from ..api import GROUP, VERSION
from ..redact import SecretValues, http_phrase

MERGE_PATCH = "application/merge-patch+json"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A few kept-alive connections, all reused: with httpx's defaults (100 open, 20 kept) a burst of status writes
# (1,000 collections applied at once) opened and closed connections, a TLS handshake each on both ends, and
# httpcore scanned every open connection for each queued request. The API server serves a few at a time anyway.
LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10)


class SecretNotFound(LookupError):
    """A referenced Secret, or the key in it, does not exist (condition reason SecretNotFound). A LookupError,
    as reconcile/ports.py's SecretsPort promises."""


class KubeApiError(Exception):
    """The API server answered a call with an error status (or not at all: status 0)."""

    def __init__(self, status: int, method: str, path: str, reason: str):
        super().__init__(f"{method} {path}: {status} {reason}".rstrip())
        self.status = status


def login(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """In a Pod its service account; elsewhere KUBECONFIG (or ~/.kube/config), as kubectl does."""
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account token and no kubeconfig (KUBECONFIG or ~/.kube/config)")
    return info


def _client(info: kopf.ConnectionInfo) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=info.server,
        verify=info.as_ssl_context(),
        headers={**info.as_http_headers(), "User-Agent": "qdrant-collection-operator"},
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        timeout=TIMEOUT,
        limits=LIMITS,
    )


def _quote(*parts: str) -> str:
    return "/".join(urllib.parse.quote(p, safe="") for p in parts)


def kopf_peerings(namespace: str | None) -> str:
    """The collection of kopf's peering objects: ClusterKopfPeerings, or the KopfPeerings of a namespace."""
    if namespace is None:
        return "/apis/kopf.dev/v1/clusterkopfpeerings"
    return f"/apis/kopf.dev/v1/namespaces/{_quote(namespace)}/kopfpeerings"


def kopf_peering(namespace: str | None, name: str) -> dict[str, Any]:
    """A new, empty kopf peering object (the replicas write their keep-alives into its status)."""
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    kind = "ClusterKopfPeering" if namespace is None else "KopfPeering"
    return {"apiVersion": "kopf.dev/v1", "kind": kind, "metadata": metadata}


class KubeApi:
    def __init__(self, info: kopf.ConnectionInfo, secrets: SecretValues, settings: kopf.OperatorSettings):
        self.secrets = secrets
        self._settings = settings
        self._http = _client(info)

    @classmethod
    async def connect(cls, secrets: SecretValues, settings: kopf.OperatorSettings) -> KubeApi:
        return cls(login(settings), secrets, settings)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; on 401 log in again once (a service account's token file is rotated in place)."""
        for attempt in (1, 2):
            try:
                response = await self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.TimeoutException) as exc:
                raise KubeApiError(0, method, path, f"{type(exc).__name__}: {exc}") from None
            except httpx.HTTPError as exc:  # a protocol error's text quotes the peer's bytes: its type only
                raise KubeApiError(0, method, path, type(exc).__name__) from None
            if response.status_code == 401 and attempt == 1:
                old, self._http = self._http, _client(login(self._settings))
                await old.aclose()
                continue
            break
        if response.status_code >= 400:
            # The standard phrase, never the one the server sent: a server's words reach no log or status.
            raise KubeApiError(response.status_code, method, path, http_phrase(response.status_code))
        return response

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        try:
            response = await self._call("GET", f"/api/v1/namespaces/{_quote(namespace)}/secrets/{_quote(name)}")
        except KubeApiError as exc:
            if exc.status == 404:
                raise SecretNotFound(f"Secret {namespace}/{name} not found") from None
            raise
        data = response.json().get("data") or {}
        if key not in data:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}")
        value = base64.b64decode(data[key])
        self.secrets.add(value)  # never in a log line, status or Event from now on, in clear or base64
        return value

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret the operator writes (CollectionAccessKey), read back by name; None when it does not exist."""
        try:
            response = await self._call("GET", f"/api/v1/namespaces/{_quote(namespace)}/secrets/{_quote(name)}")
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise
        secret: dict[str, Any] = response.json()
        return secret

    async def create_secret(self, namespace: str, secret: dict[str, Any]) -> None:
        await self._call("POST", f"/api/v1/namespaces/{_quote(namespace)}/secrets", json=secret)

    async def patch_secret(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """One merge patch of a Secret the operator owns."""
        await self._call(
            "PATCH",
            f"/api/v1/namespaces/{_quote(namespace)}/secrets/{_quote(name)}",
            json=patch,
            headers={"Content-Type": MERGE_PATCH},
        )

    async def names(self, plural: str, namespace: str) -> set[str]:
        """The names of one kind's resources in a namespace, read now (list: what kopf's role already has)."""
        response = await self._call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{_quote(namespace, plural)}")
        return {item["metadata"]["name"] for item in response.json().get("items", [])}

    async def find_kopf_peering(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        """Read now, by a list narrowed to the name (list and watch are what kopf's peering needs anyway)."""
        response = await self._call("GET", kopf_peerings(namespace), params={"fieldSelector": f"metadata.name={name}"})
        items: list[dict[str, Any]] = response.json().get("items") or []
        return items[0] if items else None

    async def create_kopf_peering(self, namespace: str | None, name: str) -> None:
        await self._call("POST", kopf_peerings(namespace), json=kopf_peering(namespace, name))

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """One merge patch of .status; the caller sends only what changed."""
        await self._call(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{_quote(namespace, plural, name)}/status",
            json={"status": status},
            headers={"Content-Type": MERGE_PATCH},
        )
