"""The Helm chart: `helm lint`, `helm template` with default and other values, and the two install paths in
sync: with default values the chart renders the objects of `kubectl kustomize manifests/base` (the chart's
labels aside), and with its monitoring values those of manifests/monitoring. A change to one path that is not
made to the other fails here with the object and the field that differ."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from collection_operator.config import SettingsBuilder
from devenv import chart_sync, gotools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/qdrant-collection-operator"
KUBECTL = Path(sys.executable).parent / "kubectl"
RELEASE, NAMESPACE = "qdrant-collection-operator", "qdrant-operator"
# Labels only the chart sets (the kustomize base has just app.kubernetes.io/name).
CHART_LABELS = {
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
}
MONITORING = [
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.podMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.dashboard.enabled=true",
]
OTHER_VALUES = {
    "image": {
        "repository": "registry.example/qco",
        "tag": "1.2.3",
        "digest": "sha256:" + "ab" * 32,
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "pull"}],
    "replicas": 3,
    "namespaces": ["search", "ml"],
    "peering": {"name": "qco"},
    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    "settings": 'resync_interval_seconds = 120\nlog_format = "json"\nallowed_hosts = [".qdrant.svc.cluster.local"]\n'
    "[profiles.Production.pool]\nmax_connections = 40\n",
    "extraArgs": ["--verbose"],
    "metrics": {
        "port": 9090,
        "service": {"enabled": False},
        "podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}},
    },
    "networkPolicy": {"enabled": True},
    "nodeSelector": {"kubernetes.io/os": "linux"},
}


def docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm(*args: str) -> str:
    proc = subprocess.run([str(gotools.build("helm")), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def template(*args: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return docs(helm("template", RELEASE, str(CHART), "--namespace", namespace, *args))


def template_values(values: dict[str, Any], tmp_path: Path, *args: str, **kwargs: str) -> list[dict[str, Any]]:
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    return template("-f", str(file), *args, **kwargs)


def kustomize(path: str) -> list[dict[str, Any]]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(REPO / path)], check=True, capture_output=True, text=True)
    return docs(out.stdout)


def _without_chart_labels(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_chart_labels(v) for k, v in value.items() if k not in CHART_LABELS}
    if isinstance(value, list):
        return [_without_chart_labels(v) for v in value]
    return value


def by_object(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by (kind, namespace, name), without the labels each install path puts on its objects (the chart's
    everywhere, app.kubernetes.io/name in metadata.labels), so that the labels that mean something (the
    ClusterRoles' aggregate-to-*, kopf's part-of) are compared."""
    keyed = {}
    for obj in objects:
        obj = _without_chart_labels(obj)
        meta = obj["metadata"]
        meta.get("labels", {}).pop("app.kubernetes.io/name", None)
        if not meta.get("labels", True):
            del meta["labels"]
        keyed[(obj["kind"], meta.get("namespace", ""), meta["name"])] = obj
    return keyed


def assert_same_objects(chart: list[dict[str, Any]], other: list[dict[str, Any]]) -> None:
    rendered, expected = by_object(chart), by_object(other)
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        assert rendered[key] == obj, f"{key} differs between the chart and the kustomize manifests"


def test_helm_lint_passes_with_default_and_other_values(tmp_path):
    helm("lint", "--strict", str(CHART))
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(OTHER_VALUES))
    helm("lint", "--strict", str(CHART), "-f", str(file), *MONITORING)


def test_default_values_render_the_kustomize_base():
    base = [obj for obj in kustomize("manifests/base") if obj["kind"] != "Namespace"]  # helm --create-namespace
    assert_same_objects(template("--include-crds"), base)


def test_monitoring_values_render_the_monitoring_bundle():
    chart = [
        obj
        for obj in template(*MONITORING)
        if obj["kind"] in {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
    ]
    bundle = kustomize("manifests/monitoring") + docs((REPO / "manifests/monitoring/podmonitor.yaml").read_text())
    assert_same_objects(chart, bundle)
    dashboard = next(obj for obj in chart if obj["kind"] == "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar looks for


def test_monitoring_objects_are_off_by_default():
    kinds = {obj["kind"] for obj in template()}
    assert kinds.isdisjoint({"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"})


def test_other_values_reach_the_deployment(tmp_path):
    rendered = template_values(OTHER_VALUES, tmp_path)
    # The operator creates its KopfPeering in each namespace (k8s/peering.py), as with the kustomize base.
    assert not [obj for obj in rendered if obj["apiVersion"] == "kopf.dev/v1"]
    objects = {obj["kind"]: obj for obj in rendered}
    assert "Service" not in objects
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == f"registry.example/qco:1.2.3@sha256:{'ab' * 32}"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert container["args"] == [
        "run",
        "--namespace=search",
        "--namespace=ml",
        "--bind",
        "0.0.0.0",
        "--settings=/etc/qdrant-collection-operator/settings.toml",
        "--verbose",
    ]
    assert container["resources"] == OTHER_VALUES["resources"]
    assert container["env"] == [
        {"name": "QDRANT_OPERATOR_PEERING_NAME", "value": "qco"},
        {"name": "QDRANT_OPERATOR_METRICS_PORT", "value": "9090"},
    ]
    assert {"name": "metrics", "containerPort": 9090} in container["ports"]
    assert objects["NetworkPolicy"]["spec"]["ingress"] == [{"ports": [{"port": 9090, "protocol": "TCP"}]}]
    monitor = objects["PodMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["podMetricsEndpoints"][0]["interval"] == "15s"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_settings_toml_is_mounted_where_the_args_point_and_is_valid(tmp_path):
    objects = {obj["kind"]: obj for obj in template_values(OTHER_VALUES, tmp_path)}
    text = objects["ConfigMap"]["data"]["settings.toml"]
    assert text == OTHER_VALUES["settings"]
    settings = SettingsBuilder().set(**tomllib.loads(text)).build()  # the operator's own validation
    assert settings.resync_interval_seconds == 120
    assert settings.profile("Production").pool.max_connections == 40
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    mount = pod["containers"][0]["volumeMounts"][0]
    assert pod["volumes"] == [{"name": mount["name"], "configMap": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    assert f"--settings={mount['mountPath']}/settings.toml" in pod["containers"][0]["args"]


def test_the_charts_copies_are_up_to_date():
    """`make chart-sync` copies the CRDs and the monitoring files; the chart cannot read files outside itself."""
    expected = chart_sync.expected()
    copies = {path for directory in ("crds", "files") for path in (CHART / directory).iterdir()}
    assert copies == set(expected), "run `make chart-sync`"
    for path, content in expected.items():
        assert path.read_bytes() == content, f"{path.relative_to(REPO)} is stale: run `make chart-sync`"


def test_peering_with_a_namespace_pattern_fails_with_a_clear_message():
    proc = subprocess.run(
        [str(gotools.build("helm")), "template", RELEASE, str(CHART), "--set", "namespaces={team-*}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and 'list names, not the pattern "team-*"' in proc.stderr
    single = template("--set", "namespaces={team-*}", "--set", "peering.enabled=false", "--set", "replicas=1")
    container = next(o for o in single if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=team-*" in container["args"] and "env" not in container
