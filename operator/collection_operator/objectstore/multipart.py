"""Multipart uploads left behind, found and aborted. obstore aborts a failed upload itself, but an abort that
cannot reach the server (the store went down mid-upload) leaves the parts there, and obstore exposes neither
ListMultipartUploads nor an abort by upload id. So before each upload under a key prefix that only one writer
uses, the uploads still open under it are aborted: two S3 calls, signed here with AWS Signature Version 4
(https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html)."""

from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TIMEOUT_SECONDS = 30.0


def _quote(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def signed_headers(
    method: str, url: str, query: dict[str, str], region: str, access_key_id: str, secret_access_key: str, now: datetime
) -> dict[str, str]:
    """The headers that sign a request without a body (SigV4, service s3)."""
    parts = urlsplit(url)
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    names = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            _quote(parts.path or "/", safe="/-_.~"),
            canonical_query,
            "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
            names,
            EMPTY_SHA256,
        ]
    )
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret_access_key}".encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, SignedHeaders={names}, Signature={signature}"
    )
    del headers["host"]  # httpx sets it from the URL, as signed
    return headers


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def open_uploads(xml: bytes) -> list[tuple[str, str]]:
    """(key, upload id) of each upload in a ListMultipartUploadsResult."""
    uploads = []
    for element in ET.fromstring(xml).iter():
        if _local(element.tag) == "Upload":
            fields = {_local(child.tag): (child.text or "") for child in element}
            uploads.append((fields.get("Key", ""), fields.get("UploadId", "")))
    return uploads


class Uploads:
    """ListMultipartUploads and AbortMultipartUpload on one bucket, path-style on `endpoint` or AWS S3's
    virtual-hosted style when there is none."""

    def __init__(
        self, bucket: str, endpoint: str | None, region: str, access_key_id: str, secret_access_key: str
    ) -> None:
        self.base = (
            f"{endpoint.strip().rstrip('/')}/{bucket}" if endpoint else f"https://{bucket}.s3.{region}.amazonaws.com"
        )
        self._sign = (region, access_key_id, secret_access_key)

    async def _call(self, client: httpx.AsyncClient, method: str, key: str, query: dict[str, str]) -> bytes:
        url = f"{self.base}/{_quote(key, safe='/-_.~')}" if key else self.base
        headers = signed_headers(method, url, query, *self._sign, datetime.now(UTC))
        reply = await client.request(method, url, params=query, headers=headers)
        reply.raise_for_status()
        return reply.content

    async def abort_under(self, prefix: str) -> list[str]:
        """Abort every multipart upload still open under `prefix`; the keys they were for."""
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            listed = await self._call(client, "GET", "", {"uploads": "", "prefix": prefix})
            found = [(key, upload) for key, upload in open_uploads(listed) if key.startswith(prefix)]
            for key, upload in found:
                await self._call(client, "DELETE", key, {"uploadId": upload})
        return [key for key, _ in found]
