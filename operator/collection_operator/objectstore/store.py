"""One bucket (and key prefix) of an S3 or S3-compatible server.

Uploads are multipart with a bounded part size, so memory stays at about PART_BYTES x (PART_CONCURRENCY + 1)
whatever the file's size, and the sha256 is computed as the bytes pass. obstore aborts the multipart upload
when a part, the completion or the source fails (obstore#149); an abort that cannot reach the server either
leaves the parts to the bucket's lifecycle rule (docs/snapshots.md says which).

The endpoint is a user-supplied URL: it passes the operator's address policy (config/address_policy.py, the
check Qdrant URLs get) before any request, and credentials in it are refused. A server's answer never
reaches an error's text: ObjectStoreError says what failed in our own words.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import obstore
from obstore import exceptions as obs_errors
from obstore.store import MemoryStore, S3Store

from ..config.address_policy import AddressPolicy, IPAddress, Refusal, check, host_of, parse_ip
from .multipart import Uploads

PART_BYTES = 8 * 1024 * 1024  # S3's minimum part is 5 MiB; 10,000 parts of 8 MiB hold 78 GiB
PART_CONCURRENCY = 2
# obstore retries each request (connection errors, 5xx, 429) on this budget before the call fails.
RETRY = {
    "max_retries": 4,
    "retry_timeout": timedelta(seconds=20),
    "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=5), "base": 2},
}
CLIENT = {"connect_timeout": timedelta(seconds=5), "timeout": timedelta(minutes=5)}


@dataclass(frozen=True)
class StoreConfig:
    """Where objects go and the credentials to put them there. The secret never shows in repr."""

    bucket: str
    prefix: str
    endpoint: str | None  # None: AWS S3 for `region`; else an S3-compatible server, path-style requests
    region: str
    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class Uploaded:
    key: str  # relative to the store's prefix, as given to upload()
    sha256: str
    size: int


class ObjectStoreError(Exception):
    """What failed, as a condition reason (`reason`), whether another attempt may help (`retryable`), and a
    sentence without secrets or anything the server said (str())."""

    def __init__(self, reason: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


def parse_location(location: str) -> tuple[str, str]:
    """ "s3://bucket/key" -> (bucket, key)."""
    parts = urlsplit(location)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key location: {location!r}")
    return parts.netloc, parts.path.lstrip("/")


def _describe(config: StoreConfig) -> str:
    return f"bucket {config.bucket} at {config.endpoint or f'AWS S3 ({config.region})'}"


def classify(exc: Exception, config: StoreConfig, what: str) -> ObjectStoreError:
    """obstore's error as an ObjectStoreError. The server's text is read for S3's error codes only, never quoted."""
    text = str(exc)
    where = _describe(config)
    if isinstance(exc, obs_errors.UnauthenticatedError | obs_errors.PermissionDeniedError) or any(
        code in text for code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
    ):
        return ObjectStoreError(
            "ObjectStoreCredentialsRejected",
            f"{where} refused the credentials (access key id and secret access key) for {what}",
        )
    if "NoSuchBucket" in text:
        return ObjectStoreError("ObjectStoreBucketNotFound", f"{where} does not exist ({what})")
    if isinstance(exc, obs_errors.NotFoundError | FileNotFoundError):
        return ObjectStoreError("ObjectStoreObjectNotFound", f"{what}: no such object in {where}")
    failed = f"{what} failed: {where} did not answer or failed ({type(exc).__name__})"
    return ObjectStoreError("ObjectStoreUnavailable", failed, retryable=True)


def _endpoint(endpoint: str) -> tuple[str, str]:
    """(scheme, host) of an S3 endpoint URL; Refusal for another scheme, no host, or credentials in it."""
    host, _port = host_of(endpoint, "put them in the credentials Secret")
    return urlsplit(endpoint.strip()).scheme, host


async def _resolve(host: str) -> list[IPAddress]:
    """What the system resolver gives `host` (check() decodes an address literal itself)."""
    if parse_ip(host) is not None:
        return []
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


class Store:
    """One bucket under a key prefix. Build one per use: credentials are read from their Secret each time."""

    def __init__(self, config: StoreConfig, policy: AddressPolicy | None = None, *, backend: Any = None) -> None:
        """`backend` replaces the S3 client (obstore's MemoryStore in unit tests)."""
        self.config = config
        self.policy = policy or AddressPolicy()
        self._checked = backend is not None or config.endpoint is None
        self._uploads: Uploads | None = None
        if backend is not None:  # in memory: nothing is ever left half uploaded
            self._store = backend
            return
        self._uploads = Uploads(
            config.bucket, config.endpoint, config.region, config.access_key_id, config.secret_access_key
        )
        if config.endpoint is None:
            self._store = S3Store(
                config.bucket,
                region=config.region,
                access_key_id=config.access_key_id,
                secret_access_key=config.secret_access_key,
                retry_config=RETRY,  # type: ignore[arg-type]
                client_options=CLIENT,  # type: ignore[arg-type]
            )
            return
        try:
            scheme, _host = _endpoint(config.endpoint)
        except Refusal as exc:
            raise ObjectStoreError("ObjectStoreEndpointRefused", f"S3 endpoint refused: {exc}") from None
        self._store = S3Store(
            config.bucket,
            endpoint=config.endpoint.strip().rstrip("/"),
            region=config.region,
            access_key_id=config.access_key_id,
            secret_access_key=config.secret_access_key,
            virtual_hosted_style_request=False,  # a custom endpoint: path style, no bucket in the host name
            retry_config=RETRY,  # type: ignore[arg-type]
            client_options={**CLIENT, "allow_http": scheme == "http"},  # type: ignore[arg-type]
        )

    @classmethod
    def in_memory(cls, config: StoreConfig) -> Store:
        return cls(config, backend=MemoryStore())

    def path(self, key: str) -> str:
        """The object's key in the bucket: the prefix, then `key`."""
        return "/".join(p for p in (self.config.prefix.strip("/"), key.strip("/")) if p)

    def location(self, key: str) -> str:
        """ "s3://bucket/<prefix>/<key>", what a snapshot record keeps."""
        return f"s3://{self.config.bucket}/{self.path(key)}"

    async def _policy(self) -> None:
        """The address policy on the endpoint's host, once per Store (before its first request)."""
        if self._checked:
            return
        assert self.config.endpoint is not None
        _scheme, host = _endpoint(self.config.endpoint)
        try:
            addresses = await _resolve(host)
            check(host, addresses, self.policy)
        except OSError:
            raise ObjectStoreError(
                "ObjectStoreUnavailable", f"S3 endpoint host {host} does not resolve", retryable=True
            ) from None
        except Refusal as exc:
            raise ObjectStoreError("ObjectStoreEndpointRefused", f"S3 endpoint refused: {exc}") from None
        self._checked = True

    async def upload(self, key: str, chunks: AsyncIterable[bytes]) -> Uploaded:
        """Stream `chunks` to `key` as a multipart upload. An error the source raises is re-raised as it is
        (after obstore has aborted the upload); the store's own failures are ObjectStoreError."""
        await self._policy()
        digest, size = hashlib.sha256(), 0
        source_error: list[BaseException] = []

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            try:
                async for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
            except Exception as exc:
                source_error.append(exc)
                raise

        try:
            await obstore.put_async(
                self._store,
                self.path(key),
                counted(),
                use_multipart=True,
                chunk_size=PART_BYTES,
                max_concurrency=PART_CONCURRENCY,
            )
        except Exception as exc:
            if source_error:
                raise source_error[0] from None
            raise classify(exc, self.config, f"uploading {self.path(key)}") from None
        return Uploaded(key, digest.hexdigest(), size)

    async def abort_incomplete(self, under: str) -> list[str]:
        """Abort the multipart uploads still open under the key prefix `under` (relative to the store's
        prefix): those an abort could not reach the server for. Only for a prefix no one else uploads to at
        the same time. The keys they were for."""
        await self._policy()
        if self._uploads is None:
            return []
        try:
            aborted = await self._uploads.abort_under(self.path(under) + "/")
        except httpx.HTTPStatusError as exc:
            text = f"status {exc.response.status_code} {exc.response.text}"
            raise classify(obs_errors.GenericError(text), self.config, "aborting unfinished uploads") from None
        except httpx.HTTPError as exc:
            raise classify(exc, self.config, "aborting unfinished uploads") from None
        return [key.removeprefix(self.path("") + "/") for key in aborted]

    async def presign_get(self, key: str, expires: timedelta) -> str:
        """A URL anyone holding it may GET the object with until `expires` passes: a credential."""
        await self._policy()
        try:
            url: str = await obstore.sign_async(self._store, "GET", self.path(key), expires)
        except Exception as exc:
            raise classify(exc, self.config, f"signing a download of {self.path(key)}") from None
        return url

    async def delete(self, key: str) -> None:
        await self._policy()
        try:
            await obstore.delete_async(self._store, self.path(key))
        except (obs_errors.NotFoundError, FileNotFoundError):
            return
        except Exception as exc:
            raise classify(exc, self.config, f"deleting {self.path(key)}") from None

    async def download(self, key: str) -> AsyncIterator[bytes]:
        await self._policy()
        try:
            result = await obstore.get_async(self._store, self.path(key))
            async for chunk in result.stream():
                yield bytes(chunk)
        except Exception as exc:
            raise classify(exc, self.config, f"downloading {self.path(key)}") from None

    async def check(self) -> None:
        """The bucket exists and these credentials may list it (one request)."""
        await self._policy()
        try:
            await obstore.list_with_delimiter_async(self._store, self.config.prefix.strip("/") or None)
        except Exception as exc:
            raise classify(exc, self.config, "listing the bucket") from None
