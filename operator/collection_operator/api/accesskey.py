"""CollectionAccessKey: a short-lived Qdrant token (JWT) for applications, scoped to named VectorCollections,
kept in a Secret the operator owns and rotates."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, field_validator

from .base import StatusBase, WireModel, cel, immutable
from .collection import DURATION_PATTERN, duration_seconds

MIN_VALIDITY_SECONDS = 5 * 60
MAX_VALIDITY_SECONDS = 365 * 24 * 3600
MAX_COLLECTIONS = 64
# A Secret's name: a DNS subdomain.
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class AccessLevel(StrEnum):
    """What the token may do in one collection (Qdrant's collection access: r, rw, prw)."""

    READ = "Read"
    READ_WRITE = "ReadWrite"
    POINTS_ONLY = "PointsOnly"


class CollectionGrant(WireModel):
    """One VectorCollection in the key's namespace, and what the key may do in it."""

    name: str = Field(min_length=1, max_length=253, description="Name of a VectorCollection in this namespace.")
    access: AccessLevel = Field(
        AccessLevel.READ,
        description="Read: search, scroll, count, retrieve. ReadWrite: also upsert and delete points and payload "
        "indexes' data, never the collection's schema or aliases. PointsOnly (Qdrant 1.19+): read and write "
        "points only.",
    )


class CollectionAccessKeySpec(WireModel):
    """Which collections the key opens, how long each token lives, and the Secret it is written to."""

    model_config = ConfigDict(json_schema_extra={"x-kubernetes-validations": [immutable("secretName")]})

    collections: list[CollectionGrant] = Field(
        min_length=1,
        max_length=MAX_COLLECTIONS,
        description="The VectorCollections the token opens; all must use the same QdrantConnection.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.all(x, self.exists_one(y, y.name == x.name))", "each collection may be named once")
            ]
        },
    )
    validity: str = Field(
        "24h",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="How long each token is valid (e.g. 30m, 24h, 720h; at least 5m, at most 8760h). The "
        "operator writes a new token when two thirds of it have passed.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "duration(self) >= duration('5m') && duration(self) <= duration('8760h')",
                    "validity must be between 5m and 8760h (365 days)",
                )
            ]
        },
    )
    secret_name: str = Field(
        min_length=1,
        max_length=253,
        pattern=SECRET_NAME_PATTERN,
        description="The Secret the operator writes (keys api-key, url, expires-at) and owns: it is deleted with "
        "this resource. An existing Secret not owned by this resource is never overwritten. Immutable.",
    )

    @field_validator("validity")
    @classmethod
    def _bounded(cls, value: str) -> str:
        if not MIN_VALIDITY_SECONDS <= duration_seconds(value) <= MAX_VALIDITY_SECONDS:
            raise ValueError("validity must be between 5m and 8760h (365 days)")
        return value

    @field_validator("collections")
    @classmethod
    def _unique(cls, value: list[CollectionGrant]) -> list[CollectionGrant]:
        if len({grant.name for grant in value}) != len(value):
            raise ValueError("each collection may be named once")
        return value

    @property
    def validity_seconds(self) -> float:
        return duration_seconds(self.validity)


class CollectionAccessKeyStatus(StatusBase):
    connection: str | None = Field(None, description="namespace/name of the QdrantConnection the token is for.")
    collections: list[str] | None = Field(None, description="The Qdrant collections the current token opens.")
    expires_at: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the current token expires (UTC)."
    )
    rotated_at: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When the current token was written (UTC)."
    )
