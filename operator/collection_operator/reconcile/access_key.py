"""CollectionAccessKey: which collections a token opens, on which connection, and when the Secret needs a new
token (none yet, the connection's API key changed, the access changed, or two thirds of its validity passed).
Level-based: each step reads the Secret back and decides from it, the spec and the connection as they are."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..api.accesskey import CollectionAccessKeySpec, CollectionAccessKeyStatus
from ..api.base import API_VERSION
from ..qdrant import tokens
from . import reasons
from .connections import usable
from .outcome import Outcome, ReconcileError, Stalling, State, Verdict, Waiting, outcome_for, parse
from .ports import ConnectionsPort, KeySecretsPort

log = logging.getLogger(__name__)
KIND = "CollectionAccessKey"
# How often a key looks again with nothing due: a changed API key, collection or Secret is noticed this quickly
# (one Secret read; Qdrant is never called).
RECHECK_SECONDS = 30.0
ROTATE_AFTER = 2 / 3  # of the validity: a new token is written then, a third of it before the old one expires
SECRET_KEYS = ("api-key", "url", "expires-at")

KeyOutcome = Outcome[CollectionAccessKeyStatus]
Lookup = Callable[[str], Mapping[str, Any] | None]


@dataclass(frozen=True)
class AccessKey:
    """The resource as Kubernetes has it."""

    namespace: str
    name: str
    uid: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> AccessKey:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], body["spec"], body.get("status") or {})

    @property
    def owner(self) -> dict[str, Any]:
        """The Secret's ownerReference: the garbage collector deletes the Secret with the resource."""
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid, "controller": True}


@dataclass(frozen=True)
class Scope:
    """What the token should open: a connection and its physical collections -> Qdrant's access code."""

    connection: str
    access: dict[str, str]


@dataclass(frozen=True)
class Next:
    """What the loop writes now, and when it looks again. `expires`/`rotate_at` feed the metrics."""

    outcome: KeyOutcome
    delay: float
    expires: datetime | None = None
    rotate_at: datetime | None = None


def physical_collection(body: Mapping[str, Any]) -> str | None:
    """The Qdrant collection a VectorCollection resolved to (blue/green: the versioned one behind the alias);
    None until the operator has created or adopted it."""
    status = body.get("status") or {}
    name = status.get("physicalCollection") or status.get("collectionName")
    return str(name) if name else None


def scope(spec: CollectionAccessKeySpec, namespace: str, collections: Lookup) -> Scope:
    """The connection and physical collections of the named VectorCollections. Waiting while one is missing or
    not created yet; Stalling MixedConnections when they do not share one connection (a token is signed with one
    server's key)."""
    by_connection: dict[str, list[str]] = {}
    access: dict[str, str] = {}
    for grant in spec.collections:
        body = collections(f"{namespace}/{grant.name}")
        if body is None:
            raise Waiting(reasons.COLLECTION_NOT_FOUND, f"VectorCollection {namespace}/{grant.name} not found")
        physical = physical_collection(body)
        if physical is None:
            problem = f"VectorCollection {namespace}/{grant.name} has no collection in Qdrant yet"
            raise Waiting(reasons.COLLECTION_NOT_READY, problem)
        ref = body["spec"]["connectionRef"]
        by_connection.setdefault(f"{ref.get('namespace') or namespace}/{ref['name']}", []).append(grant.name)
        access[physical] = tokens.ACCESS_CODES[grant.access]
    if len(by_connection) > 1:
        uses = "; ".join(f"{', '.join(names)} use {key}" for key, names in sorted(by_connection.items()))
        raise Stalling(
            reasons.MIXED_CONNECTIONS,
            f"the collections of one key must share one QdrantConnection (a token is signed with one server's API "
            f"key): {uses}; make one key per connection",
        )
    return Scope(next(iter(by_connection)), access)


def expiry(decoded: Mapping[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(decoded["exp"]), UTC)


def renewal(
    token: str | None, api_key: str, access: Mapping[str, str], validity: timedelta, now: datetime
) -> str | None:
    """Why the Secret needs a new token now, or None when the one it has stands."""
    if not token:
        return "no token yet"
    decoded = tokens.claims(token, api_key)
    if decoded is None:
        return "the connection's API key changed (the token does not verify with it)"
    if tokens.access_of(decoded) != dict(access):
        return "the collections or their access changed"
    expires = expiry(decoded)
    if expires > now + validity:
        return "the validity was shortened"
    if now >= rotation_time(expires, validity):
        return "two thirds of its validity passed"
    return None


def rotation_time(expires: datetime, validity: timedelta) -> datetime:
    return expires - validity * (1 - ROTATE_AFTER)


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def step(
    key: AccessKey, now: datetime, collections: Lookup, connections: ConnectionsPort, secrets: KeySecretsPort
) -> Next:
    """One look at the key at `now` (UTC): write a new token if one is due, and say when to look again. Stalled
    and Waiting verdicts keep the status fields of the last token. The Secrets port's SecretUnavailable (the API
    server refused or did not answer) is raised for the loop to retry."""
    try:
        return await _step(key, now, collections, connections, secrets)
    except ReconcileError as exc:  # Waiting and Failed look again sooner (their requeue), Stalled at RECHECK
        return Next(outcome_for(exc, CollectionAccessKeyStatus()), exc.requeue_after or RECHECK_SECONDS)


async def _step(
    key: AccessKey, now: datetime, collections: Lookup, connections: ConnectionsPort, secrets: KeySecretsPort
) -> Next:
    spec = parse(CollectionAccessKeySpec, key.spec)
    want = scope(spec, key.namespace, collections)
    runtime = usable(connections, want.connection, key.namespace)
    api_key = runtime.api_key
    if not api_key or runtime.jwt_rbac is False:
        lacks = "has no API key" if not api_key else "has JWT RBAC off (Qdrant refuses tokens signed with its API key)"
        raise Stalling(
            reasons.JWT_RBAC_DISABLED,
            f"QdrantConnection {want.connection} {lacks}: start Qdrant with an API key and service.jwt_rbac: true "
            "(QDRANT__SERVICE__API_KEY, QDRANT__SERVICE__JWT_RBAC=true); the connection notices within minutes",
        )
    if runtime.jwt_rbac is None:
        raise Waiting(reasons.CONNECTION_NOT_READY, f"QdrantConnection {want.connection}: JWT RBAC not probed yet")
    stored = await secrets.get_secret(key.namespace, spec.secret_name)
    if stored is not None and key.uid not in stored.owners:
        raise Stalling(
            reasons.SECRET_CONFLICT,
            f"Secret {key.namespace}/{spec.secret_name} exists and is not owned by this CollectionAccessKey: it is "
            "never overwritten; delete it or choose another secretName",
        )
    validity = timedelta(seconds=spec.validity_seconds)
    old = stored.data.get("api-key") if stored is not None else None
    rotated_at = key.status.get("rotatedAt")
    events: list[tuple[str, str, str]] = []
    why = renewal(old, api_key, want.access, validity, now)
    if why is None and old is not None and (decoded := tokens.claims(old, api_key)) is not None:
        token, expires = old, expiry(decoded)
    else:
        expires = (now + validity).replace(microsecond=0)
        token = tokens.mint(api_key, want.access, expires)
    data = {"api-key": token, "url": runtime.spec.primary_url, "expires-at": rfc3339(expires)}
    # Also rewritten when only the URL (the connection's) or a key of the Secret changed.
    if stored is None or any(stored.data.get(k) != data[k] for k in SECRET_KEYS):
        await secrets.put_secret(key.namespace, spec.secret_name, data, key.owner, exists=stored is not None)
    if why is not None:
        rotated_at = rfc3339(now)
        until = rfc3339(expires)
        events.append(
            ("Normal", reasons.KEY_ISSUED, f"new token in Secret {spec.secret_name} ({why}), valid until {until}")
        )
        log.info("CollectionAccessKey %s/%s: new token (%s)", key.namespace, key.name, why)
    rotate_at = rotation_time(expires, validity)
    holds = f"a token for {', '.join(sorted(want.access))} until {rfc3339(expires)}"
    outcome: KeyOutcome = Outcome(
        Verdict(
            State.READY,
            reasons.KEY_ISSUED,
            f"Secret {spec.secret_name} holds {holds}; the next one at {rfc3339(rotate_at)}",
        ),
        CollectionAccessKeyStatus(
            connection=want.connection,
            collections=sorted(want.access),
            expires_at=rfc3339(expires),
            rotated_at=rotated_at,
        ),
        events=events,
        reconciled=True,
    )
    delay = min(RECHECK_SECONDS, max((rotate_at - now).total_seconds(), 1.0))
    return Next(outcome, delay, expires, rotate_at)
