"""The plugin's calls to the API server: httpx, synchronous (one command, one user waiting), TLS and credentials
from kopf's ConnectionInfo as the operator's k8s/api.py uses them. An error answer becomes a PluginError with
the API server's own message (the user's terminal, not a log: an admission policy's refusal is shown as is)."""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import kopf

from ..api import GROUP, VERSION
from .errors import ApiError, PluginError

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _quote(*parts: str) -> str:
    return "/".join(urllib.parse.quote(p, safe="") for p in parts)


def resource_path(plural: str, namespace: str | None, name: str | None = None) -> str:
    """One of the operator's kinds: the collection in a namespace (all namespaces: None), or one object."""
    scope = "" if namespace is None else f"namespaces/{_quote(namespace)}/"
    return f"/apis/{GROUP}/{VERSION}/{scope}{_quote(plural)}" + ("" if name is None else f"/{_quote(name)}")


class Kube:
    def __init__(self, info: kopf.ConnectionInfo):
        try:
            verify = info.as_ssl_context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise PluginError(f"the kubeconfig's TLS settings do not load: {type(exc).__name__}: {exc}") from None
        self.server = info.server
        self._http = httpx.Client(
            base_url=info.server,
            verify=verify,
            headers={**info.as_http_headers(), "User-Agent": "kubectl-qdrant"},
            proxy=info.proxy_url,
            trust_env=info.trust_env,
            timeout=TIMEOUT,
        )

    def close(self) -> None:
        self._http.close()

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code < 400:
            return response
        response.read()
        try:
            message = response.json().get("message") or ""
        except ValueError:
            message = ""
        raise ApiError(response.status_code, f"{what}: {message or f'{response.status_code} {response.reason_phrase}'}")

    def request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the API server at {self.server}: {type(exc).__name__}: {exc}") from None
        return self._check(response, what).json()

    def get(self, path: str, what: str, **params: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", path, what, params=params)
        return found

    def find(self, path: str) -> dict[str, Any] | None:
        """The object at path, or None when the API server answers 404 (an unknown kind is a 404 too)."""
        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise PluginError(f"cannot reach the API server at {self.server}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 404:
            return None
        found: dict[str, Any] = self._check(response, f"GET {path}").json()
        return found

    def items(self, path: str, what: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get(path, what).get("items") or []
        return items

    def patch(self, path: str, patch: Any, content_type: str, what: str) -> dict[str, Any]:
        patched: dict[str, Any] = self.request("PATCH", path, what, json=patch, headers={"Content-Type": content_type})
        return patched

    def create(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        created: dict[str, Any] = self.request("POST", path, what, json=body)
        return created

    def stream_log(self, namespace: str, pod: str, params: dict[str, str]) -> Iterator[bytes]:
        """A Pod's log through the API server (pods/log), chunk by chunk as it arrives."""
        path = f"/api/v1/namespaces/{_quote(namespace, 'pods', pod)}/log"
        timeout = httpx.Timeout(TIMEOUT.connect, read=None) if params.get("follow") == "true" else TIMEOUT
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                self._check(response, f"logs of Pod {namespace}/{pod}")
                yield from response.iter_raw()
        except httpx.HTTPError as exc:
            raise PluginError(f"the log stream of Pod {namespace}/{pod} broke: {type(exc).__name__}") from None
