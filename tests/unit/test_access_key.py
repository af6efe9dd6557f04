"""CollectionAccessKey: the tokens (decoded here with PyJWT: `access` and `exp` always set), the spec's bounds,
and the step that decides when the Secret gets a new token, on an injected clock with fake ports. No sleeps, no
network."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pydantic
import pytest

from collection_operator.api.accesskey import CollectionAccessKeySpec
from collection_operator.qdrant import tokens
from collection_operator.reconcile import access_key, reasons
from collection_operator.reconcile.access_key import AccessKey
from collection_operator.reconcile.outcome import State
from collection_operator.reconcile.ports import StoredSecret
from tests.fakes import FakeConnection, FakeConnections, FakeKeySecrets

PACKAGE = Path(__file__).resolve().parents[2] / "operator/collection_operator"
API_KEY = "k" * 32
NOW = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
UID = "uid-1"


def decode(token: str, key: str = API_KEY) -> dict[str, Any]:
    """As Qdrant does: HS256 with the API key; both claims required."""
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=["HS256"], options={"verify_exp": False, "require": ["exp", "access"]}
    )
    return decoded


# ----- tokens -------------------------------------------------------------------------------------------------


def test_a_minted_token_carries_collection_access_and_expiry():
    token = tokens.mint(API_KEY, {"b": "rw", "a": "r", "c": "prw"}, NOW + timedelta(hours=1))
    claims = decode(token)
    assert claims == {
        "access": [
            {"collection": "a", "access": "r"},
            {"collection": "b", "access": "rw"},
            {"collection": "c", "access": "prw"},
        ],
        "exp": int((NOW + timedelta(hours=1)).timestamp()),
    }
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "a" * 32, algorithms=["HS256"])


@pytest.mark.parametrize(
    ("key", "access"),
    [("", {"a": "r"}), (API_KEY, {}), (API_KEY, {"a": "m"}), (API_KEY, {"a": "full"})],
    ids=["no key", "no collection", "global manage code", "unknown code"],
)
def test_mint_refuses_a_token_without_collection_access(key, access):
    with pytest.raises(ValueError):
        tokens.mint(key, access, NOW)


def test_the_probe_token_is_a_short_read_token_for_a_collection_nobody_has():
    claims = decode(tokens.probe_token(API_KEY, NOW))
    [entry] = claims["access"]
    assert entry["access"] == "r" and entry["collection"].startswith("jwt-rbac-probe-")
    assert claims["exp"] == int(NOW.timestamp()) + tokens.PROBE_SECONDS


def test_claims_are_read_only_from_tokens_the_key_signed_with_access_and_exp():
    expired = tokens.mint(API_KEY, {"a": "r"}, NOW - timedelta(days=1))
    assert tokens.access_of(tokens.claims(expired, API_KEY) or {}) == {"a": "r"}  # expired: still ours
    assert tokens.claims(expired, "o" * 32) is None
    assert tokens.claims(jwt.encode({"exp": 2_000_000_000}, API_KEY, algorithm="HS256"), API_KEY) is None
    assert tokens.claims(jwt.encode({"access": "r"}, API_KEY, algorithm="HS256"), API_KEY) is None
    assert tokens.claims("not a token", API_KEY) is None


def test_tokens_are_encoded_in_one_place_only():
    """No code path signs a JWT but tokens.mint, which always sets `access` and `exp`."""
    encoders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "encode" and getattr(node.value, "id", "") == "jwt":
                encoders.append(path.relative_to(PACKAGE).as_posix())
    assert encoders == ["qdrant/tokens.py"]


# ----- the spec -----------------------------------------------------------------------------------------------


def spec(**fields: Any) -> dict[str, Any]:
    return {"collections": [{"name": "products"}], "validity": "24h", "secretName": "app-qdrant", **fields}


@pytest.mark.parametrize("validity", ["5m", "300s", "24h", "8760h", "1h30m"])
def test_validity_within_bounds(validity):
    assert CollectionAccessKeySpec.model_validate(spec(validity=validity)).validity == validity


@pytest.mark.parametrize("validity", ["4m59s", "1m", "8761h", "0s", "1d", "forever"])
def test_validity_out_of_bounds_or_unreadable_is_refused(validity):
    with pytest.raises(pydantic.ValidationError):
        CollectionAccessKeySpec.model_validate(spec(validity=validity))


def test_a_collection_named_twice_is_refused():
    with pytest.raises(pydantic.ValidationError, match="named once"):
        CollectionAccessKeySpec.model_validate(spec(collections=[{"name": "a"}, {"name": "a", "access": "ReadWrite"}]))


# ----- the step -----------------------------------------------------------------------------------------------


def collection(name: str, connection: str = "main", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": {"connectionRef": {"name": connection}},
        "status": {"collectionName": name, **status},
    }


class World:
    """The key's surroundings: VectorCollections, connections and Secrets, changed by each test."""

    def __init__(self) -> None:
        self.collections = {"ns/products": collection("products"), "ns/clicks": collection("clicks")}
        self.connection = FakeConnection(api_key=API_KEY, jwt_rbac=True)
        self.connections = FakeConnections({"ns/main": self.connection})
        self.secrets = FakeKeySecrets()
        self.status: dict[str, Any] = {}

    async def step(self, now: datetime = NOW, **fields: Any) -> access_key.Next:
        body = {"metadata": {"namespace": "ns", "name": "app", "uid": UID}, "spec": spec(**fields), "status": {}}
        key = AccessKey.of({**body, "status": self.status})
        result = await access_key.step(key, now, self.collections.get, self.connections, self.secrets)
        self.status = {**self.status, **result.outcome.status.to_patch()}
        return result

    @property
    def secret(self) -> dict[str, str]:
        return self.secrets.stored[("ns", "app-qdrant")].data


async def test_the_first_step_writes_an_owned_secret_with_a_scoped_token():
    world = World()
    result = await world.step(collections=[{"name": "products"}, {"name": "clicks", "access": "ReadWrite"}])
    assert result.outcome.verdict.state == State.READY and result.outcome.verdict.reason == reasons.KEY_ISSUED
    assert world.secrets.stored[("ns", "app-qdrant")].owners == (UID,)
    claims = decode(world.secret["api-key"])
    assert tokens.access_of(claims) == {"products": "r", "clicks": "rw"}
    assert claims["exp"] == int((NOW + timedelta(hours=24)).timestamp())
    assert world.secret["url"] == "http://127.0.0.1:6333"
    assert world.secret["expires-at"] == "2030-05-02T12:00:00Z"
    assert world.status["expiresAt"] == "2030-05-02T12:00:00Z" and world.status["rotatedAt"] == "2030-05-01T12:00:00Z"
    assert world.status["collections"] == ["clicks", "products"] and world.status["connection"] == "ns/main"
    assert [e[1] for e in result.outcome.events] == [reasons.KEY_ISSUED]
    assert result.rotate_at == NOW + timedelta(hours=16)
    assert result.delay == access_key.RECHECK_SECONDS
    owner = access_key.AccessKey("ns", "app", UID, {}, {}).owner
    assert owner["kind"] == "CollectionAccessKey" and owner["uid"] == UID and "blockOwnerDeletion" not in owner


async def test_a_token_is_kept_until_two_thirds_of_its_validity_then_replaced_before_expiry():
    world = World()
    await world.step()
    first = world.secret["api-key"]
    for later in (timedelta(minutes=1), timedelta(hours=15, minutes=59)):
        result = await world.step(NOW + later)
        assert world.secret["api-key"] == first and not result.outcome.events
    assert len(world.secrets.writes) == 1
    rotation = NOW + timedelta(hours=16)
    result = await world.step(rotation)
    assert world.secret["api-key"] != first
    assert decode(world.secret["api-key"])["exp"] == int((rotation + timedelta(hours=24)).timestamp())
    assert decode(first)["exp"] > rotation.timestamp()  # the old one was still valid when replaced
    assert world.status["rotatedAt"] == "2030-05-02T04:00:00Z"
    assert "two thirds" in result.outcome.events[0][2]


async def test_the_smallest_validity_rotates_after_200_seconds():
    world = World()
    first = await world.step(validity="5m")
    assert first.rotate_at == NOW + timedelta(seconds=200)
    assert (await world.step(NOW + timedelta(seconds=199), validity="5m")).delay == 1.0
    await world.step(NOW + timedelta(seconds=200), validity="5m")
    assert len(world.secrets.writes) == 2


async def test_a_new_connection_api_key_re_mints_and_the_new_token_verifies_with_it():
    world = World()
    await world.step()
    world.connection.api_key = "n" * 32
    result = await world.step(NOW + timedelta(minutes=1))
    assert "API key changed" in result.outcome.events[0][2]
    decode(world.secret["api-key"], "n" * 32)


async def test_changed_access_validity_or_physical_collection_re_mint():
    world = World()
    await world.step()
    await world.step(collections=[{"name": "products", "access": "PointsOnly"}])
    assert tokens.access_of(decode(world.secret["api-key"])) == {"products": "prw"}
    world.collections["ns/products"] = collection("products", physicalCollection="products-3f2a")  # blue/green
    await world.step(collections=[{"name": "products", "access": "PointsOnly"}])
    assert tokens.access_of(decode(world.secret["api-key"])) == {"products-3f2a": "prw"}
    result = await world.step(validity="1h", collections=[{"name": "products", "access": "PointsOnly"}])
    assert "shortened" in result.outcome.events[0][2]
    assert len(world.secrets.writes) == 4


async def test_a_changed_url_rewrites_the_secret_without_a_new_token():
    world = World()
    await world.step()
    token = world.secret["api-key"]
    world.connection.spec = world.connection.spec.model_copy(update={"url": "http://127.0.0.1:7333"})
    result = await world.step(NOW + timedelta(minutes=1))
    assert world.secret == {**world.secret, "api-key": token, "url": "http://127.0.0.1:7333"}
    assert not result.outcome.events and len(world.secrets.writes) == 2


async def test_a_secret_owned_by_someone_else_is_never_overwritten():
    world = World()
    world.secrets.stored[("ns", "app-qdrant")] = StoredSecret(("someone-else",), {"api-key": "theirs"})
    result = await world.step()
    assert (result.outcome.verdict.state, result.outcome.verdict.reason) == (State.STALLED, reasons.SECRET_CONFLICT)
    assert not world.secrets.writes and world.secret == {"api-key": "theirs"}


@pytest.mark.parametrize(
    ("api_key", "jwt_rbac", "state", "reason", "words"),
    [
        (API_KEY, False, State.STALLED, reasons.JWT_RBAC_DISABLED, "QDRANT__SERVICE__JWT_RBAC=true"),
        (None, None, State.STALLED, reasons.JWT_RBAC_DISABLED, "has no API key"),
        (API_KEY, None, State.FAILED, reasons.CONNECTION_NOT_READY, "not probed yet"),
    ],
)
async def test_no_token_without_jwt_rbac_on_the_connection(api_key, jwt_rbac, state, reason, words):
    world = World()
    world.connection.api_key, world.connection.jwt_rbac = api_key, jwt_rbac
    result = await world.step()
    verdict = result.outcome.verdict
    assert (verdict.state, verdict.reason) == (state, reason) and words in verdict.message
    assert not world.secrets.writes


async def test_collections_of_two_connections_stall_naming_each():
    world = World()
    world.collections["ns/clicks"] = collection("clicks", connection="other")
    result = await world.step(collections=[{"name": "products"}, {"name": "clicks"}])
    verdict = result.outcome.verdict
    assert (verdict.state, verdict.reason) == (State.STALLED, reasons.MIXED_CONNECTIONS)
    assert "clicks use ns/other" in verdict.message and "products use ns/main" in verdict.message


async def test_a_missing_or_uncreated_collection_waits():
    world = World()
    result = await world.step(collections=[{"name": "nope"}])
    assert result.outcome.verdict.reason == reasons.COLLECTION_NOT_FOUND
    world.collections["ns/new"] = {**collection("new"), "status": {}}
    result = await world.step(collections=[{"name": "new"}])
    assert result.outcome.verdict.reason == reasons.COLLECTION_NOT_READY
    assert result.outcome.verdict.state == State.FAILED and not world.secrets.writes


async def test_a_stalled_step_keeps_the_last_tokens_status():
    world = World()
    await world.step()
    world.connection.jwt_rbac = False
    result = await world.step(NOW + timedelta(minutes=1))
    assert result.outcome.status.to_patch() == {}  # expiresAt and rotatedAt stay as written
    assert world.status["expiresAt"] == "2030-05-02T12:00:00Z"
