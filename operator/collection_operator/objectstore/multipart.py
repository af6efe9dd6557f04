"""Multipart uploads left behind, found and aborted. obstore aborts a failed upload itself, but an abort that
cannot reach the server (the store went down mid-upload) leaves the parts there, and obstore exposes neither
ListMultipartUploads nor an abort by upload id. So before each upload under a key prefix that only one writer
uses, the uploads still open under it are aborted: two S3 calls, signed by httpx-auth's AWS Signature
Version 4."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote

import httpx
from httpx_auth import AWS4Auth

TIMEOUT_SECONDS = 30.0


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
        self._auth = AWS4Auth(access_id=access_key_id, secret_key=secret_access_key, region=region, service="s3")

    async def _call(self, client: httpx.AsyncClient, method: str, key: str, query: dict[str, str]) -> bytes:
        url = f"{self.base}/{quote(key, safe='/-_.~')}" if key else self.base
        reply = await client.request(method, url, params=query, auth=self._auth)
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
