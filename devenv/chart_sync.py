"""The Helm chart's copies of files it cannot read from outside itself: `python -m devenv.chart_sync`
(`make chart-sync`, also run by `make crds`). tests/unit/test_chart.py fails while a copy is stale.

- files/: every CRD file listed in crds/kustomization.yaml, byte for byte (templates/crds.yaml renders them,
  so `helm upgrade` upgrades them), and the monitoring bundle's PrometheusRule and Grafana dashboard;
- crds/: the CustomResourceDefinitions that manifests/base defines beside other objects (kopf's peering kinds
  in peering.yaml, shared by every kopf operator: Helm creates them when missing and never changes or deletes
  them), one file each source.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "charts/qdrant-collection-operator"
MONITORING_FILES = ("prometheusrule.yaml", "qdrant-collection-operator.json")


def expected() -> dict[Path, bytes]:
    """What the chart's crds/ and files/ must hold, by path."""
    files = {}
    for name in yaml.safe_load((REPO / "crds/kustomization.yaml").read_text())["resources"]:
        files[CHART / "files" / name] = (REPO / "crds" / name).read_bytes()
    for manifest in sorted((REPO / "manifests/base").glob("*.yaml")):
        crds = [
            doc
            for doc in yaml.safe_load_all(manifest.read_text())
            if doc and doc.get("kind") == "CustomResourceDefinition"
        ]
        if crds:
            text = f"# Copied from manifests/base/{manifest.name} by `make chart-sync`.\n"
            text += yaml.safe_dump_all(crds, sort_keys=False)
            files[CHART / "crds" / f"base_{manifest.name}"] = text.encode()
    for name in MONITORING_FILES:
        files[CHART / "files" / name] = (REPO / "manifests/monitoring" / name).read_bytes()
    return files


def main() -> None:
    files = expected()
    for directory in ("crds", "files"):
        for stale in set((CHART / directory).iterdir()) - set(files):
            stale.unlink()
    for path, content in files.items():
        path.write_bytes(content)
        print(path.relative_to(REPO))


if __name__ == "__main__":
    main()
