"""helm, promtool and SeaweedFS (a real S3 server for the object-store tests), built from the Go module proxy
at pinned versions into the user cache (like the control plane: a small go.mod of our own that requires the
module, so its replace/exclude lines don't stop the build).

Standard library only:

    python3 devenv/gotools.py build [helm|promtool|weed ...]   # print the paths of the built binaries
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv import controlplane as cp

# name: (module, version, package, -X flags stamping the release into `<tool> version`)
TOOLS = {
    # helm's Makefile also stamps the Kubernetes version of its client-go (v0.37: 1.37), the cluster version
    # `helm template` and `helm lint` assume; unstamped it would be 1.20.
    "helm": (
        "helm.sh/helm/v3",
        "v3.22.0",
        "helm.sh/helm/v3/cmd/helm",
        "-X helm.sh/helm/v3/internal/version.version=v3.22.0 "
        + " ".join(
            f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
            for pkg in ("chartutil", "lint/rules")
            for part, value in (("Major", 1), ("Minor", 37))
        ),
    ),
    "promtool": (
        "github.com/prometheus/prometheus",
        "v0.316.0",
        "github.com/prometheus/prometheus/cmd/promtool",
        "-X github.com/prometheus/common/version.Version=3.16.0",
    ),
    # SeaweedFS publishes no tagged Go module versions, so the proxy's pseudo-version of a November 2026 commit.
    "weed": (
        "github.com/seaweedfs/seaweedfs",
        "v0.0.0-20261109003541-7506e5f91cd6",
        "github.com/seaweedfs/seaweedfs/weed",
        "",
    ),
}
# Prometheus's own build tag: no service-discovery plugins (cloud SDKs), which checking rules never needs.
TAGS = {"promtool": "remove_all_sd"}


def path(name: str) -> Path:
    _, version, _, _ = TOOLS[name]
    return cp.CACHE / "bin" / f"{name}-{version}" / name


def build(name: str) -> Path:
    """The binary's path, built first if it is not in the cache yet."""
    target = path(name)
    if target.exists():
        return target
    module, version, package, stamp = TOOLS[name]
    src = cp.CACHE / "build" / f"{name}-{version}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "go.mod").write_text(f"module devenv.local/{name}\n\ngo 1.25\n\nrequire {module} {version}\n")
    (src / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n')
    cp.log(f"building {name} {version} from the Go module proxy (once; cached in {target.parent})")
    cp._go(["mod", "tidy"], src)
    tags = ["-tags", TAGS[name]] if name in TAGS else []
    cp._go(["build", "-v", "-trimpath", *tags, "-ldflags", f"-s -w {stamp}", "-o", str(target), package], src)
    return target


if __name__ == "__main__":
    if sys.argv[1:2] != ["build"]:
        raise SystemExit(__doc__)
    for tool in sys.argv[2:] or list(TOOLS):
        print(build(tool))
