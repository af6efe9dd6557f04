"""CollectionAccessKey end to end: the operator in-process (as the shipped ClusterRole's identity), the real
API server (its garbage collector deletes an owned Secret), and real Qdrant 1.19 with an API key, with and
without JWT RBAC. What a token may do is asked of Qdrant itself."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from collection_operator.qdrant import tokens
from tests.builders import collection_spec
from tests.fixtures.controlplane import KubectlError
from tests.fixtures.operator import wait_for

pytestmark = pytest.mark.integration
PLURAL = "collectionaccesskeys"
KEY = "rbac-key-" + uuid.uuid4().hex  # 41 bytes: HS256 wants at least 32


@pytest.fixture(scope="module")
def rbac_qdrant(real_qdrant_factory: Any) -> Any:
    """Real Qdrant with KEY and service.jwt_rbac on."""
    return real_qdrant_factory(api_key=KEY, jwt_rbac=True)


@pytest.fixture(scope="module")
def plain_qdrant(real_qdrant_factory: Any) -> Any:
    """Real Qdrant with KEY and JWT RBAC off (Qdrant's default)."""
    return real_qdrant_factory(api_key=KEY)


def connect(cluster: Any, server: Any, name: str = "main") -> dict[str, Any]:
    cluster.kubectl("create", "secret", "generic", f"{name}-key", f"--from-literal=api-key={KEY}")
    spec = {"url": server.url, "environment": "Testing", "apiKeySecretRef": {"name": f"{name}-key"}}
    cluster.apply("QdrantConnection", name, spec)
    return cluster.wait_condition("qdrantconnections", name, "Connected")


def secret(cluster: Any, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(cluster.kubectl("get", "secret", name, "-o", "json"))
    except KubectlError:
        return None
    doc["decoded"] = {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
    return dict(doc)


def call(server: Any, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    with httpx.Client(base_url=server.url, headers={"api-key": token}, timeout=10) as http:
        return http.request(method, path, json=body)


def key(cluster: Any, name: str, collections: list[dict[str, str]], validity: str = "5m") -> dict[str, Any]:
    cluster.apply("CollectionAccessKey", name, {"collections": collections, "validity": validity, "secretName": name})
    return cluster.wait_condition(PLURAL, name, "KeyIssued")


@pytest.fixture
def rbac_collections(cluster: Any, operator: Any, rbac_qdrant: Any) -> Any:
    body = connect(cluster, rbac_qdrant)
    assert body["status"]["jwtRbac"] is True
    for name in ("products", "other"):
        cluster.apply("VectorCollection", name, collection_spec(collectionName=f"{name}-{cluster.namespace}"))
    for name in ("products", "other"):
        cluster.wait_condition("vectorcollections", name, "InSync")
    points = {"points": [{"id": i, "vector": [1.0, 0.0, 0.0, float(i)]} for i in range(3)]}
    admin = call(rbac_qdrant, KEY, "PUT", f"/collections/products-{cluster.namespace}/points?wait=true", points)
    assert admin.status_code == 200, admin.text
    return rbac_qdrant


def test_a_read_key_searches_its_collection_and_nothing_else(cluster, rbac_collections):
    qdrant, ns = rbac_collections, cluster.namespace
    body = key(cluster, "reader", [{"name": "products", "access": "Read"}])
    stored = secret(cluster, "reader")
    assert stored is not None
    token = stored["decoded"]["api-key"]
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims["access"] == [{"collection": f"products-{ns}", "access": "r"}]
    assert stored["decoded"]["url"] == qdrant.url
    assert stored["decoded"]["expires-at"] == body["status"]["expiresAt"]
    assert claims["exp"] == datetime.fromisoformat(body["status"]["expiresAt"]).timestamp()
    assert [(o["kind"], o["uid"]) for o in stored["metadata"]["ownerReferences"]] == [
        ("CollectionAccessKey", body["metadata"]["uid"])
    ]
    assert body["status"]["collections"] == [f"products-{ns}"] and body["status"]["connection"] == f"{ns}/main"

    query = {"query": [1, 0, 0, 0]}
    search = call(qdrant, token, "POST", f"/collections/products-{ns}/points/query", query)
    assert search.status_code == 200 and len(search.json()["result"]["points"]) == 3
    assert call(qdrant, token, "POST", f"/collections/other-{ns}/points/query", query).status_code == 403
    assert call(qdrant, token, "PATCH", f"/collections/products-{ns}", {"optimizers_config": {}}).status_code == 403
    upsert = {"points": [{"id": 9, "vector": [0.0, 1.0, 0.0, 0.0]}]}
    assert call(qdrant, token, "PUT", f"/collections/products-{ns}/points", upsert).status_code == 403

    header, row = cluster.kubectl("get", PLURAL, "reader").splitlines()
    assert header.split() == ["NAME", "READY", "REASON", "EXPIRES", "AGE"]
    assert row.split()[:4] == ["reader", "True", "KeyIssued", body["status"]["expiresAt"]]  # a time, not "<invalid>"


def test_a_read_write_key_upserts_points_but_changes_no_schema(cluster, rbac_collections):
    qdrant, ns = rbac_collections, cluster.namespace
    key(cluster, "writer", [{"name": "products", "access": "ReadWrite"}, {"name": "other"}])
    token = (secret(cluster, "writer") or {})["decoded"]["api-key"]
    upsert = {"points": [{"id": 9, "vector": [0.0, 1.0, 0.0, 0.0]}]}
    assert call(qdrant, token, "PUT", f"/collections/products-{ns}/points?wait=true", upsert).status_code == 200
    assert call(qdrant, token, "PUT", f"/collections/other-{ns}/points?wait=true", upsert).status_code == 403
    assert call(qdrant, token, "PATCH", f"/collections/products-{ns}", {"optimizers_config": {}}).status_code == 403


def test_an_expired_token_is_refused(rbac_collections, cluster):
    """Minted by the operator's own function with exp in the past (beyond Qdrant's 30 s leeway)."""
    qdrant, ns = rbac_collections, cluster.namespace
    query = {"query": [1, 0, 0, 0]}
    valid = tokens.mint(KEY, {f"products-{ns}": "r"}, datetime.now(UTC) + timedelta(minutes=5))
    assert call(qdrant, valid, "POST", f"/collections/products-{ns}/points/query", query).status_code == 200
    expired = tokens.mint(KEY, {f"products-{ns}": "r"}, datetime.now(UTC) - timedelta(minutes=2))
    refused = call(qdrant, expired, "POST", f"/collections/products-{ns}/points/query", query)
    assert refused.status_code == 403 and "Expired" in refused.text


def test_a_token_due_for_rotation_is_replaced_before_it_expires(cluster, rbac_collections):
    """The Secret is given a token 4 minutes short of its 5: past two thirds of the validity, still valid for
    a minute. The key's next look (within 30 s) writes a new one."""
    qdrant, ns = rbac_collections, cluster.namespace
    first = key(cluster, "rotating", [{"name": "products"}])
    expires = datetime.now(UTC) + timedelta(seconds=60)
    due = tokens.mint(KEY, {f"products-{ns}": "r"}, expires)
    patch = {"stringData": {"api-key": due, "expires-at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    cluster.kubectl("patch", "secret", "rotating", "--type", "merge", "-p", json.dumps(patch))

    def rotated() -> Any:
        token = (secret(cluster, "rotating") or {})["decoded"]["api-key"]
        return token if token != due else None

    new = wait_for(rotated, 60, "a new token in the Secret")
    assert time.time() < expires.timestamp()  # the one replaced was still valid
    assert jwt.decode(new, KEY, algorithms=["HS256"])["exp"] > expires.timestamp() + 200
    query = {"query": [1, 0, 0, 0]}
    assert call(qdrant, new, "POST", f"/collections/products-{ns}/points/query", query).status_code == 200
    body = cluster.wait_condition(PLURAL, "rotating", "KeyIssued")
    assert body["status"]["rotatedAt"] > first["status"]["rotatedAt"]
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=rotating", "-o", "json")
    assert any("two thirds" in e["message"] for e in json.loads(events)["items"])


def test_deleting_the_key_deletes_its_secret(cluster, rbac_collections):
    key(cluster, "short-lived", [{"name": "products"}])
    assert secret(cluster, "short-lived") is not None
    cluster.kubectl("delete", PLURAL, "short-lived", "--wait=true")
    wait_for(lambda: secret(cluster, "short-lived") is None, 60, "the garbage collector deletes the Secret")


def test_a_key_on_qdrant_without_jwt_rbac_is_stalled(cluster, operator, plain_qdrant):
    body = connect(cluster, plain_qdrant)
    assert body["status"]["jwtRbac"] is False
    cluster.apply("VectorCollection", "products", collection_spec(collectionName=f"plain-{cluster.namespace}"))
    cluster.wait_condition("vectorcollections", "products", "InSync")
    cluster.apply("CollectionAccessKey", "app", {"collections": [{"name": "products"}], "secretName": "app"})
    body = cluster.wait_condition(PLURAL, "app", "JwtRbacDisabled", status="True", type_="Stalled")
    assert "QDRANT__SERVICE__JWT_RBAC=true" in cluster.condition(PLURAL, "app")["message"]
    assert secret(cluster, "app") is None and "expiresAt" not in body["status"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"validity": "4m"}, "validity must be between 5m and 8760h"),
        ({"validity": "8761h"}, "validity must be between 5m and 8760h"),
        ({"validity": "1d"}, "should match"),
        ({"collections": [{"name": "a"}, {"name": "a"}]}, "each collection may be named once"),
        ({"collections": []}, "should have at least 1 items"),
        ({"secretName": "Not_A_Name"}, "should match"),
    ],
    ids=["below-5m", "above-8760h", "days", "twice", "none", "secret-name"],
)
def test_invalid_keys_are_refused_at_admission(cluster, spec, message):
    doc = {"collections": [{"name": "a"}], "validity": "1h", "secretName": "s", **spec}
    with pytest.raises(KubectlError) as err:
        cluster.apply("CollectionAccessKey", "bad", doc)
    assert message in err.value.stderr


def test_rotating_the_connection_key_through_alt_api_key_re_mints_while_old_tokens_still_work(
    cluster, operator, real_qdrant_factory
):
    """docs/security.md's procedure, after Qdrant's restart with the new key as api_key and the old one as
    alt_api_key: the connection still holds the old key, then its Secret gets the new one."""
    old, new = KEY, "new-" + uuid.uuid4().hex + uuid.uuid4().hex[:8]
    qdrant = real_qdrant_factory(api_key=new, alt_api_key=old, jwt_rbac=True)
    assert connect(cluster, qdrant)["status"]["jwtRbac"] is True  # the probe token, signed with the old key
    cluster.apply("VectorCollection", "products", collection_spec(collectionName=f"rot-{cluster.namespace}"))
    cluster.wait_condition("vectorcollections", "products", "InSync")
    key(cluster, "app", [{"name": "products"}], validity="24h")
    first = (secret(cluster, "app") or {})["decoded"]["api-key"]
    jwt.decode(first, old, algorithms=["HS256"])
    query, path = {"query": [1, 0, 0, 0]}, f"/collections/rot-{cluster.namespace}/points/query"
    assert call(qdrant, first, "POST", path, query).status_code == 200

    patch = {"stringData": {"api-key": new}}
    cluster.kubectl("patch", "secret", "main-key", "--type", "merge", "-p", json.dumps(patch))

    def re_minted() -> Any:
        token = (secret(cluster, "app") or {})["decoded"]["api-key"]
        return token if token != first else None

    second = wait_for(re_minted, 90, "a token signed with the new key")
    jwt.decode(second, new, algorithms=["HS256"])
    assert call(qdrant, second, "POST", path, query).status_code == 200
    assert call(qdrant, first, "POST", path, query).status_code == 200  # alt_api_key: the old one still works
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=app", "-o", "json")
    assert any("API key changed" in e["message"] for e in json.loads(events)["items"])
