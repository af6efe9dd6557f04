"""The Go test helpers in tests/gohelpers/ (kstatus: Flux's status library; argohealth: Argo CD's Lua
VM; monitorcheck: prometheus-operator's API types), built with the local Go toolchain from the Go module
proxy into the user cache, keyed by the module they wrap, its version and a hash of the helper's sources.

Standard library only, like controlplane.py:

    python3 devenv/gohelpers.py build     # build what is missing, print the binaries' paths
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

if __package__:
    from devenv.controlplane import CACHE, REPO, _go, log
else:  # run as a script, before any virtual environment exists
    from controlplane import CACHE, REPO, _go, log

SOURCES = REPO / "tests" / "gohelpers"
# Each helper and the module (in its go.mod) that names its cache key.
HELPERS = {
    "kstatus": "sigs.k8s.io/cli-utils",
    "argohealth": "github.com/yuin/gopher-lua",
    "monitorcheck": "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring",
}


def binary(name: str) -> Path:
    src = SOURCES / name
    gomod = (src / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(HELPERS[name])}\s+(v\S+)", gomod, re.MULTILINE)
    if not match:
        raise SystemExit(f"{src / 'go.mod'} does not require {HELPERS[name]}")
    digest = hashlib.sha256()
    for path in sorted(p for p in src.iterdir() if p.suffix in (".go", ".mod", ".sum")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    module = HELPERS[name].rsplit("/", 1)[-1]
    return CACHE / "bin" / "gohelpers" / f"{name}-{module}-{match.group(1)}-{digest.hexdigest()[:12]}"


def build(name: str) -> Path:
    target = binary(name)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _go(["build", "-trimpath", "-o", str(target), "."], SOURCES / name)
    return target


def main() -> None:
    if sys.argv[1:] != ["build"]:
        raise SystemExit(__doc__)
    for name in HELPERS:
        path = build(name)
        log(f"{name}: {path}")


if __name__ == "__main__":
    main()
