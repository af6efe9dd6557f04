"""Builds the krew archive of `kubectl qdrant` (plugins/kubectl-qdrant, the shim that runs the pip-installed
plugin) as build/kubectl-qdrant.tar.gz, byte for byte the same on every run, and writes its sha256 into the
krew manifest plugins/qdrant.yaml. A unit test fails when the manifest's sha256 and the archive differ.

    python3 devenv/krew_archive.py           # build the archive, update the manifest
    python3 devenv/krew_archive.py --check   # exit 1 if the manifest's sha256 is out of date
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIM = ROOT / "plugins" / "kubectl-qdrant"
MANIFEST = ROOT / "plugins" / "qdrant.yaml"
ARCHIVE = ROOT / "build" / "kubectl-qdrant.tar.gz"
SHA256 = re.compile(r"^(\s*sha256: )\S+$", re.MULTILINE)


def archive() -> bytes:
    """A tar.gz of the shim alone: fixed owner, mode and times, so its sha256 depends on its text only."""
    data = SHIM.read_bytes()
    info = tarfile.TarInfo(SHIM.name)
    info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o755, 0, 0, 0
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w", format=tarfile.USTAR_FORMAT) as out:
        out.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(tar.getvalue())
    return packed.getvalue()


def main(argv: list[str]) -> int:
    data = archive()
    digest = hashlib.sha256(data).hexdigest()
    text = MANIFEST.read_text()
    updated = SHA256.sub(rf"\g<1>{digest}", text)
    if "--check" in argv:
        if updated != text:
            print(f"{MANIFEST.relative_to(ROOT)} is out of date: run python3 devenv/krew_archive.py", file=sys.stderr)
            return 1
        return 0
    ARCHIVE.parent.mkdir(exist_ok=True)
    ARCHIVE.write_bytes(data)
    MANIFEST.write_text(updated)
    print(f"{ARCHIVE.relative_to(ROOT)} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
