"""Object storage as the specs name it: a bucket on S3 or an S3-compatible server, and the Secret holding the
credentials (keys `access-key-id` and `secret-access-key`, read at each use, so rotation needs no restart)."""

from __future__ import annotations

from pydantic import Field

from .base import LocalObjectRef, WireModel

ACCESS_KEY_ID = "access-key-id"
SECRET_ACCESS_KEY = "secret-access-key"
# S3's bucket naming rules (3-63 characters, lower case, digits, dots and hyphens).
BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
ENDPOINT_PATTERN = r"^https?://[^\s@/]+(/[^\s]*)?$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


class ObjectStoreServer(WireModel):
    """Which S3 server, and the credentials for it."""

    endpoint: str | None = Field(
        None,
        max_length=2048,
        pattern=ENDPOINT_PATTERN,
        description="An S3-compatible server's URL (path-style requests; http only when it says http://). "
        "Left out: AWS S3 in `region`. Checked against the operator's address policy.",
    )
    region: str = Field("us-east-1", min_length=1, max_length=64, description="The bucket's region.")
    credentials_secret_ref: LocalObjectRef = Field(
        description=f"A Secret in this namespace with the keys `{ACCESS_KEY_ID}` and `{SECRET_ACCESS_KEY}`; "
        "read at each use."
    )


class ObjectStoreTarget(ObjectStoreServer):
    """Where a CollectionSnapshot keeps its files: `<prefix>/<namespace>/<resource>/<collection>/<snapshot>`."""

    bucket: str = Field(pattern=BUCKET_PATTERN, description="The bucket; it must exist.")
    prefix: str = Field("", max_length=512, description="Key prefix inside the bucket, e.g. `qdrant/prod`.")


class ObjectStoreSource(ObjectStoreServer):
    """A snapshot file in object storage that no CollectionSnapshot in this cluster records (disaster recovery,
    moving a collection between clusters)."""

    bucket: str = Field(pattern=BUCKET_PATTERN, description="The bucket holding the snapshot file.")
    key: str = Field(min_length=1, max_length=1024, description="The file's full key in the bucket.")
    checksum: str = Field(
        pattern=SHA256_PATTERN,
        description="sha256 of the file (the `checksum` the CollectionSnapshot recorded). Required: Qdrant "
        "refuses a file that does not match it, so a corrupted or replaced object is never restored.",
    )
