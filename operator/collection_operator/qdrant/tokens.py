"""Qdrant's JWT RBAC tokens (service.jwt_rbac): HS256, signed with the server's API key (its alt_api_key verifies
them too, for rotation). A token without an `access` claim has full manage rights in Qdrant, and one without
`exp` never expires, so `mint` refuses to make either. Pure: no I/O."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ..api.accesskey import AccessLevel

ALGORITHM = "HS256"
# Qdrant's collection access modes (storage::rbac::CollectionAccessMode).
ACCESS_CODES = {AccessLevel.READ: "r", AccessLevel.READ_WRITE: "rw", AccessLevel.POINTS_ONLY: "prw"}
PROBE_SECONDS = 60


def mint(api_key: str, access: Mapping[str, str], expires_at: datetime) -> str:
    """A token opening each collection of `access` (physical name -> "r" | "rw" | "prw") until `expires_at`."""
    if not api_key:
        raise ValueError("a token needs the API key to sign it")
    if not access:
        raise ValueError("a token needs at least one collection: one without an access claim may manage everything")
    if unknown := set(access.values()) - set(ACCESS_CODES.values()):
        raise ValueError(f"unknown collection access {sorted(unknown)}")
    claims = {
        "access": [{"collection": name, "access": code} for name, code in sorted(access.items())],
        "exp": int(expires_at.timestamp()),
    }
    return jwt.encode(claims, api_key, algorithm=ALGORITHM)


def claims(token: str, api_key: str) -> dict[str, Any] | None:
    """The token's claims if `api_key` signed it (expired or not); None otherwise."""
    try:
        decoded: dict[str, Any] = jwt.decode(
            token, api_key, algorithms=[ALGORITHM], options={"verify_exp": False, "require": ["exp", "access"]}
        )
    except jwt.PyJWTError:
        return None
    return decoded


def access_of(decoded: Mapping[str, Any]) -> dict[str, str]:
    """A token's collection access as `mint` takes it; {} for a global (or missing) access claim."""
    access = decoded.get("access")
    if not isinstance(access, list):
        return {}
    return {str(entry.get("collection")): str(entry.get("access")) for entry in access if isinstance(entry, dict)}


def probe_token(api_key: str, now: datetime | None = None) -> str:
    """A one-minute read token for a collection that does not exist: a server with JWT RBAC on lists nothing
    with it, one without refuses it as a wrong key (401)."""
    now = now or datetime.now(UTC)
    with warnings.catch_warnings():  # a short API key is the connection's business until a key is minted with it
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return mint(api_key, {f"jwt-rbac-probe-{secrets.token_hex(8)}": "r"}, now + timedelta(seconds=PROBE_SECONDS))
