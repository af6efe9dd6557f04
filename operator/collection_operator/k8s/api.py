"""The operator's own calls to the Kubernetes API (kopf does the watching): Secrets and status.
KubeApi is the reconcilers' SecretsPort."""

from __future__ import annotations

import base64
import os
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from ..api import GROUP, VERSION
from ..redact import SecretValues

MERGE_PATCH = "application/merge-patch+json"


class SecretNotFound(LookupError):
    """A referenced Secret, or the key in it, does not exist (condition reason SecretNotFound). A LookupError,
    as reconcile/ports.py's SecretsPort promises."""


class KubeApi:
    def __init__(self, api_client: client.ApiClient, secrets: SecretValues):
        self._api = api_client
        self.secrets = secrets
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    @classmethod
    async def connect(cls, secrets: SecretValues, kubeconfig: str | None = None) -> KubeApi:
        """In a Pod: the service account. Elsewhere: KUBECONFIG or ~/.kube/config, as kubectl does."""
        cfg = client.Configuration()
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=cfg)
        else:
            # The library reads KUBECONFIG once at import; read it now, as kopf's login does.
            path = kubeconfig or os.environ.get("KUBECONFIG")
            await config.load_kube_config(config_file=path, client_configuration=cfg)
        return cls(client.ApiClient(configuration=cfg), secrets)

    async def close(self) -> None:
        await self._api.close()

    async def read_secret_key(self, namespace: str, name: str, key: str) -> bytes:
        try:
            secret = await self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretNotFound(f"Secret {namespace}/{name} not found") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise SecretNotFound(f"Secret {namespace}/{name} has no key {key!r}")
        value = base64.b64decode(data[key])
        self.secrets.add(value)  # never in a log line, status or Event from now on, in clear or base64
        return value

    async def names(self, plural: str, namespace: str) -> set[str]:
        """The names of one kind's resources in a namespace, read now (list: what kopf's role already has)."""
        listed = await self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return {item["metadata"]["name"] for item in listed.get("items", [])}

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """One merge patch of .status; the caller sends only what changed."""
        await self._custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            _content_type=MERGE_PATCH,  # type: ignore[call-arg]
        )
