"""Issue 22: two tenants on one shared QdrantConnection, each acting with its own ServiceAccount token and a
Role for VectorCollections in its own namespace only, against the real API server, the operator in-process and
a Qdrant. A tenant never takes over nor deletes data it did not create unless the connection's owner allows
adoption for its namespace, and prefixed names never collide."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from devenv import controlplane as cp
from tests.builders import collection_spec
from tests.fixtures.controlplane import KUBECTL, namespace_name
from tests.fixtures.operator import Cluster, manifest, unique

pytestmark = pytest.mark.integration
PLURAL = "vectorcollections"
OWNER_KEY = "qdrant-collection-operator.dev/owner"


@dataclass(frozen=True)
class Tenant:
    """kubectl with nothing but one ServiceAccount's token: its Role is all it may do."""

    namespace: str
    token: str

    def kubectl(
        self, *args: str, namespace: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(KUBECTL),
                "--kubeconfig=/dev/null",
                f"--server=https://{cp.HOST}:{cp.API_PORT}",
                f"--certificate-authority={cp.PKI / 'ca.crt'}",
                f"--token={self.token}",
                "-n",
                namespace or self.namespace,
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def apply(self, name: str, spec: dict[str, Any]) -> None:
        proc = self.kubectl("apply", "-f", "-", stdin=json.dumps(manifest("VectorCollection", name, spec)))
        assert proc.returncode == 0, proc.stderr

    def delete(self, name: str) -> None:
        proc = self.kubectl("delete", PLURAL, name, "--timeout=60s")
        assert proc.returncode == 0, proc.stderr


def _tenant(control_plane: Any, namespace: str) -> Tenant:
    control_plane.api.create_namespace(namespace)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "collections", "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["qdrant.collection-operator.dev"],
                "resources": [PLURAL],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "collections", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "collections"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
    }
    control_plane.admin("create", "serviceaccount", "tenant", "-n", namespace)
    control_plane.admin("apply", "-f", "-", stdin=yaml.safe_dump_all([role, binding]))
    token = control_plane.admin("create", "token", "tenant", "-n", namespace, "--duration=1h").strip()
    return Tenant(namespace, token)


@pytest.fixture
def tenants(control_plane: Any) -> Iterator[tuple[Tenant, Tenant]]:
    names = [namespace_name(), namespace_name()]  # watched by this session's operator
    try:
        yield _tenant(control_plane, names[0]), _tenant(control_plane, names[1])
    finally:
        for name in names:
            control_plane.api.delete_namespace(name)


def _metadata(qdrant_server: Any, collection: str) -> dict[str, Any] | None:
    with qdrant_server.http(timeout=10) as http:
        resp = http.get(f"/collections/{collection}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return dict(resp.json()["result"]["config"].get("metadata") or {})


def _writes_to(qdrant_server: Any, collection: str) -> list[str]:
    return [
        f"{r['method']} {r['path']}"
        for r in qdrant_server.requests()["requests"]
        if r["method"] != "GET" and f"/collections/{collection}" in r["path"]
    ]


def _shared(cluster: Cluster, qdrant_server: Any, name: str, **fields: Any) -> dict[str, Any]:
    """A Connected QdrantConnection `name` in the platform's namespace, lent to tenants by `fields`: its spec."""
    spec: dict[str, Any] = {"url": qdrant_server.url, "environment": "Testing", **fields}
    if qdrant_server.api_key:
        cluster.kubectl("create", "secret", "generic", name, f"--from-literal=api-key={qdrant_server.api_key}")
        spec["apiKeySecretRef"] = {"name": name}
    cluster.apply("QdrantConnection", name, spec)
    cluster.wait_condition("qdrantconnections", name, "Connected")
    return spec


def _stalled(cluster: Cluster, name: str, reason: str) -> str:
    cluster.wait_condition(PLURAL, name, reason, type_="Stalled")
    message: str = cluster.condition(PLURAL, name, "Stalled")["message"]
    return message


def test_a_tenant_adopts_and_deletes_only_what_the_connection_owner_allows(cluster, operator, qdrant_server, tenants):
    a, b = tenants
    spec = _shared(cluster, qdrant_server, "shared", allowedNamespaces=[a.namespace, b.namespace])
    ref = {"name": "shared", "namespace": cluster.namespace}
    in_a, in_b = Cluster(cluster.plane, a.namespace), Cluster(cluster.plane, b.namespace)

    # The identities are real: B may not touch A's namespace, nor the connection.
    denied = b.kubectl("get", PLURAL, namespace=a.namespace)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr
    denied = b.kubectl("get", "qdrantconnections", namespace=cluster.namespace)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr

    live, kept, unmarked = unique("live"), unique("kept"), unique("unmarked")
    a.apply("live", {**collection_spec(collectionName=live), "connectionRef": ref, "deletionPolicy": "Delete"})
    a.apply("kept", {**collection_spec(collectionName=kept), "connectionRef": ref})
    in_a.wait_condition(PLURAL, "live", "InSync")
    in_a.wait_condition(PLURAL, "kept", "InSync")
    a.delete("kept")  # Retain: A's data stays, marked by a resource that is gone
    with qdrant_server.http(timeout=10) as http:
        http.put(f"/collections/{unmarked}", json={"vectors": {"size": 4, "distance": "Dot"}}).raise_for_status()
    markers = {c: _metadata(qdrant_server, c) for c in (live, kept, unmarked)}
    assert markers[live][OWNER_KEY].startswith(f"{a.namespace}/live/")
    assert markers[kept][OWNER_KEY].startswith(f"{a.namespace}/kept/") and OWNER_KEY not in markers[unmarked]

    qdrant_server.reset_requests()
    grab = {"connectionRef": ref, "onExisting": "Adopt", "deletionPolicy": "Delete"}
    for name, collection in (("live", live), ("kept", kept), ("unmarked", unmarked)):
        b.apply(name, {**collection_spec(collectionName=collection), **grab})
    assert f"managed by VectorCollection {a.namespace}/live" in _stalled(in_b, "live", "ResourceConflict")
    for name in ("kept", "unmarked"):
        message = _stalled(in_b, name, "AdoptionNotAllowed")
        assert f"does not let namespace {b.namespace} adopt it" in message and "spec.adoption.namespaces" in message
    for name, collection in (("live", live), ("kept", kept), ("unmarked", unmarked)):
        b.delete(name)  # deletionPolicy Delete, yet nothing of A's nor anybody's goes
        assert _metadata(qdrant_server, collection) == markers[collection], f"{collection} is untouched"
        # At most the optimistic create of a new resource, which Qdrant refuses for a name that exists.
        assert set(_writes_to(qdrant_server, collection)) <= {f"PUT /collections/{collection}"}, collection

    # The connection's owner lets B adopt: B takes over what nobody holds, is marked, and its delete works.
    cluster.apply("QdrantConnection", "shared", {**spec, "adoption": {"namespaces": [b.namespace]}})
    b.apply("unmarked", {**collection_spec(collectionName=unmarked), **grab})
    in_b.wait_condition(PLURAL, "unmarked", "InSync", timeout=30)
    assert _metadata(qdrant_server, unmarked)[OWNER_KEY].startswith(f"{b.namespace}/unmarked/")
    b.apply("live", {**collection_spec(collectionName=live), **grab})
    _stalled(in_b, "live", "ResourceConflict")  # a live holder is never taken, whatever adoption says
    b.delete("live")
    b.delete("unmarked")
    assert _metadata(qdrant_server, unmarked) is None, "the adopter's Delete deleted what it adopted"
    assert _metadata(qdrant_server, live) == markers[live] and _metadata(qdrant_server, kept) == markers[kept]


def test_namespace_prefixed_names_never_collide_and_the_prefix_is_immutable(cluster, operator, qdrant_server, tenants):
    a, b = tenants
    _shared(cluster, qdrant_server, "prefixed", allowedNamespaces=["*"], collectionNames={"prefix": "Namespace"})
    ref = {"name": "prefixed", "namespace": cluster.namespace}
    name = unique("docs")
    for tenant in (a, b):
        tenant.apply("docs", {**collection_spec(collectionName=name), "connectionRef": ref, "deletionPolicy": "Delete"})
    for tenant in (a, b):
        ready = Cluster(cluster.plane, tenant.namespace).wait_condition(PLURAL, "docs", "InSync")
        assert ready["status"]["collectionName"] == f"{tenant.namespace}.{name}"
        assert _metadata(qdrant_server, f"{tenant.namespace}.{name}")[OWNER_KEY].startswith(f"{tenant.namespace}/docs/")
    assert _metadata(qdrant_server, name) is None, "no unprefixed collection"

    refused = cluster.kubectl(
        "patch", "qdrantconnection", "prefixed", "--type=merge", "-p", '{"spec":{"collectionNames":null}}', check=False
    )
    assert "collectionNames is immutable" in refused, refused
    assert cluster.get("qdrantconnections", "prefixed")["spec"]["collectionNames"] == {"prefix": "Namespace"}

    b.delete("docs")
    assert _metadata(qdrant_server, f"{b.namespace}.{name}") is None
    assert _metadata(qdrant_server, f"{a.namespace}.{name}") is not None, "B's Delete never deletes A's data"
