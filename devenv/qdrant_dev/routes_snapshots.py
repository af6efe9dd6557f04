"""Collection snapshots: list, create, download, delete, and recover from a location or an upload."""

from __future__ import annotations

import shutil
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import httpx
from qdrant_client.http import models as m
from starlette.requests import Request
from starlette.responses import FileResponse

from devenv.qdrant_dev.errors import wrong_input
from devenv.qdrant_dev.rest import RouteHandlers, _body, _check_name


class SnapshotRoutes(RouteHandlers):
    async def list_snapshots(self, request: Request, collection_name: str) -> Any:
        return self.engine.list_snapshots(collection_name)

    async def create_snapshot(self, request: Request, collection_name: str) -> Any:
        return self.engine.create_snapshot(collection_name)

    async def download_snapshot(self, request: Request, collection_name: str, snapshot_name: str) -> Any:
        return FileResponse(self.engine.snapshot_path(collection_name, snapshot_name), filename=snapshot_name)

    async def delete_snapshot(self, request: Request, collection_name: str, snapshot_name: str) -> Any:
        self.engine.delete_snapshot(collection_name, snapshot_name)
        return True

    async def recover_snapshot(self, request: Request, collection_name: str) -> Any:
        _check_name(collection_name)
        req = await _body(request, m.SnapshotRecover)
        url = urllib.parse.urlparse(req.location)
        if url.scheme == "file":
            self.engine.recover(collection_name, Path(urllib.parse.unquote(url.path)), req.checksum)
            return True
        if url.scheme not in ("http", "https"):
            raise wrong_input(f"Unsupported snapshot location scheme: {url.scheme}")
        download = self.engine.data_dir / "tmp" / f"download-{uuid.uuid4().hex}.snapshot"
        headers = {"api-key": req.api_key} if req.api_key else {}
        try:
            async with httpx.AsyncClient(verify=False, timeout=60) as client:  # dev server: self-signed peers
                async with client.stream("GET", req.location, headers=headers) as resp:
                    if resp.status_code != 200:
                        raise wrong_input(f"Failed to download snapshot from {req.location}: {resp.status_code}")
                    with download.open("wb") as f:
                        async for chunk in resp.aiter_bytes():
                            f.write(chunk)
            self.engine.recover(collection_name, download, req.checksum)
        except httpx.HTTPError as exc:
            raise wrong_input(f"Failed to download snapshot from {req.location}: {exc}") from exc
        finally:
            download.unlink(missing_ok=True)
        return True

    async def upload_snapshot(self, request: Request, collection_name: str) -> Any:
        _check_name(collection_name)
        form = await request.form()
        upload = form.get("snapshot")
        if upload is None or isinstance(upload, str):
            raise wrong_input("multipart field `snapshot` with the snapshot file is required")
        path = self.engine.data_dir / "tmp" / f"upload-{uuid.uuid4().hex}.snapshot"
        try:
            with path.open("wb") as f:
                shutil.copyfileobj(upload.file, f)
            self.engine.recover(collection_name, path, request.query_params.get("checksum"))
        finally:
            path.unlink(missing_ok=True)
            await form.close()
        return True
