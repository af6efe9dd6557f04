"""Collection snapshots in an emulated file format: a tar of collection.json and shards/, with a checksum file."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devenv.qdrant_dev.collection import Collection, _without_wal
from devenv.qdrant_dev.errors import ApiError, wrong_input


class SnapshotsMixin:
    """The engine's snapshot part; Engine holds the collections and the data directory."""

    data_dir: Path
    collections: dict[str, Collection]
    peer_id: int

    if TYPE_CHECKING:  # provided by Engine

        @property
        def collections_dir(self) -> Path: ...

        @property
        def snapshots_dir(self) -> Path: ...

        def resolve(self, name: str) -> Collection: ...

        def delete(self, name: str) -> bool: ...

    def snapshot_dir(self, name: str) -> Path:
        return self.snapshots_dir / name

    def create_snapshot(self, name: str) -> dict[str, Any]:
        coll = self.resolve(name)
        for shard in coll.shards:
            shard.flush()
        # As Qdrant names them: two snapshots taken in one second share a name, the second replacing the first.
        now = dt.datetime.now(dt.UTC)
        snap_name = f"{coll.name}-{self.peer_id}-{now.strftime('%Y-%m-%d-%H-%M-%S')}.snapshot"
        target = self.snapshot_dir(coll.name)
        target.mkdir(parents=True, exist_ok=True)
        partial = target / f"{snap_name}-{uuid.uuid4().hex}.tmp"
        # Preallocated engine files are mostly zeros: fast gzip keeps the archive small.
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            tar.add(coll.path / "collection.json", arcname="collection.json")
            tar.add(coll.shards_dir, arcname="shards", filter=_without_wal)
        checksum = _sha256(partial)
        (target / f"{snap_name}.checksum").write_text(checksum)
        partial.rename(target / snap_name)
        return self._describe(target / snap_name)

    def list_snapshots(self, name: str) -> list[dict[str, Any]]:
        coll = self.resolve(name)
        d = self.snapshot_dir(coll.name)
        return [self._describe(p) for p in sorted(d.glob("*.snapshot"))] if d.exists() else []

    def snapshot_path(self, name: str, snapshot: str) -> Path:
        coll = self.resolve(name)
        path = self.snapshot_dir(coll.name) / snapshot
        if "/" in snapshot or not snapshot.endswith(".snapshot") or not path.exists():
            raise ApiError(404, f"Not found: Snapshot {snapshot} not found")
        return path

    def delete_snapshot(self, name: str, snapshot: str) -> None:
        path = self.snapshot_path(name, snapshot)
        path.unlink()
        Path(f"{path}.checksum").unlink(missing_ok=True)

    @staticmethod
    def _describe(path: Path) -> dict[str, Any]:
        checksum_file = Path(f"{path}.checksum")
        stat = path.stat()
        return {
            "name": path.name,
            "creation_time": dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "size": stat.st_size,
            "checksum": checksum_file.read_text().strip() if checksum_file.exists() else None,
        }

    def recover(self, name: str, archive: Path, checksum: str | None) -> None:
        """Replace (or create) collection `name` from a snapshot file written by `create_snapshot`."""
        if not archive.is_file():
            raise wrong_input(f"Snapshot file {archive} does not exist")
        if checksum is not None and (actual := _sha256(archive)) != checksum:
            raise wrong_input(f"Snapshot checksum mismatch: expected {checksum}, got {actual}")
        staging = self.data_dir / "tmp" / f"recover-{uuid.uuid4().hex}"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            coll = Collection.read(name, staging)
        except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise wrong_input(f"Invalid snapshot: {exc}") from exc
        self.delete(name)
        path = self.collections_dir / name
        (staging / "collection.json").rename(staging / "collection.json.recovering")
        staging.rename(path)  # collection.json goes in place last, so a crash leaves no half collection
        (path / "collection.json.recovering").rename(path / "collection.json")
        coll.path = path
        coll.open_shards()
        self.collections[name] = coll


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
