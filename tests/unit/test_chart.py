"""The Helm chart: `helm lint`, `helm template` with default and other values, and the two install paths in
sync: with default values the chart renders the objects of `kubectl kustomize manifests/base` (the chart's
labels, its `helm test` Pod and its CRDs' keep annotation aside), and with its monitoring values those of
manifests/monitoring. A change to one path that is not made to the other fails here with the object and the
field that differ. Its values schema, NOTES, test Pod, CRD and RBAC switches are checked here too."""

from __future__ import annotations

import json
import shutil
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
GROUP = "qdrant.collection-operator.dev"
KEEP = "helm.sh/resource-policy"
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
    "crds": {"enabled": False},
    "serviceAccount": {"create": False, "name": "ops"},
    "commonLabels": {"team": "search"},
    "podLabels": {"tier": "control"},
    "podAnnotations": {"example.com/scraped": "yes"},
    "priorityClassName": "system-cluster-critical",
    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1001, "seccompProfile": {"type": "RuntimeDefault"}},
    "topologySpreadConstraints": [
        {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    ],
}


def docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(gotools.build("helm")), *args], capture_output=True, text=True, timeout=120)


def helm(*args: str) -> str:
    proc = run_helm(*args)
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


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in obj["metadata"].get("annotations", {})


def by_object(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by (kind, namespace, name), without the labels each install path puts on its objects (the chart's
    everywhere, app.kubernetes.io/name in metadata.labels) and Helm's keep annotation, so that the labels that
    mean something (the ClusterRoles' aggregate-to-*, kopf's part-of) are compared."""
    keyed = {}
    for obj in objects:
        obj = _without_chart_labels(obj)
        meta = obj["metadata"]
        meta.get("labels", {}).pop("app.kubernetes.io/name", None)
        meta.get("annotations", {}).pop(KEEP, None)
        for field in ("labels", "annotations"):
            if not meta.get(field, True):
                del meta[field]
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
    chart = template("--include-crds")
    hooks = [obj for obj in chart if is_hook(obj)]
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in hooks] == [("Pod", f"{RELEASE}-test")]
    assert_same_objects([obj for obj in chart if not is_hook(obj)], base)


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
    assert not {"CustomResourceDefinition", "ServiceAccount"} & set(objects)  # crds.enabled, serviceAccount.create
    assert all(obj["metadata"]["labels"]["team"] == "search" for obj in rendered)
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    template_meta = deployment["spec"]["template"]["metadata"]
    assert template_meta["labels"]["tier"] == "control"
    assert template_meta["annotations"] == {"example.com/scraped": "yes"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"
    assert {s["name"] for b in rendered if b["kind"].endswith("Binding") for s in b.get("subjects", [])} == {"ops"}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["securityContext"] == OTHER_VALUES["podSecurityContext"]
    assert pod["topologySpreadConstraints"] == [
        {**OTHER_VALUES["topologySpreadConstraints"][0], "labelSelector": deployment["spec"]["selector"]}
    ]
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


def test_the_values_schema_refuses_a_typo_and_a_wrong_type_with_the_path():
    template()  # the defaults pass
    for args, message in [
        (["--set", "replica=3"], "at '': additional properties 'replica' not allowed"),
        (["--set", "replicas=three"], "at '/replicas': got string, want integer"),
        (["--set", "metrics.serviceMonitor.intervall=1m"], "at '/metrics/serviceMonitor': additional properties"),
        (["--set", "image.digest=sha256:short"], "at '/image/digest'"),
        (["--set", "crds.keep=maybe"], "at '/crds/keep': got string, want boolean"),
    ]:
        proc = run_helm("template", RELEASE, str(CHART), *args)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)


def test_the_values_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        assert set(values) == set(node["properties"]), f"{path or 'values'}: values and schema differ"
        for key, value in values.items():
            child = node["properties"][key]
            if child.get("additionalProperties") is False:  # a closed object of the chart's own
                walk(value, child, f"{path}.{key}")

    walk(yaml.safe_load((CHART / "values.yaml").read_text()), schema, "")
    assert schema["additionalProperties"] is False


def rendered_notes(tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it: `helm template` leaves it out, so a copy of the chart renders it
    with `tpl` (the same template text, values and helpers) into a document of its own."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates/NOTES.txt").rename(chart / "NOTES.txt")
    (chart / "templates/notes.yaml").write_text('notes: {{ tpl (.Files.Get "NOTES.txt") . | toJson }}\n')
    out = helm("template", RELEASE, str(chart), "--namespace", NAMESPACE, "--show-only", "templates/notes.yaml", *args)
    return str(yaml.safe_load(out)["notes"])


def test_notes_say_what_was_installed_and_how_to_check_it(tmp_path):
    notes = rendered_notes(tmp_path)
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert "kubectl get qdrant -A" in notes and "docs/quickstart.md" in notes
    assert "2 replicas, one active" in notes and "the whole cluster" in notes and "kept by `helm uninstall`" in notes
    assert (REPO / "docs/quickstart.md").is_file()
    other = rendered_notes(tmp_path / "other", "--set", "namespaces={a,b}", "--set", "crds.enabled=false")
    assert "the namespaces a, b" in other and "kubectl apply --server-side -k crds/" in other


def hook_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(obj for obj in objects if is_hook(obj))


def test_the_helm_test_pod_is_restricted_uses_the_operators_image_and_is_not_selected():
    objects = template()
    pod = hook_pod(objects)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec = pod["spec"]
    deployment = next(obj for obj in objects if obj["kind"] == "Deployment")
    assert spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["command"][:2] == ["python3", "-c"]
    assert f"http://{RELEASE}-metrics.{NAMESPACE}.svc:8080/metrics" in container["command"][2]
    # The operator's Service, PodDisruptionBudget and NetworkPolicy select its Pods, not this one.
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    assert not [obj for obj in template("--set", "metrics.service.enabled=false") if is_hook(obj)]


def run_test_script(script: str, url: str) -> subprocess.CompletedProcess[str]:
    served = script.replace(f"http://{RELEASE}-metrics.{NAMESPACE}.svc:8080/metrics", url)
    assert served != script
    return subprocess.run([sys.executable, "-c", served], capture_output=True, text=True, timeout=60)


def test_the_helm_test_script_passes_on_the_operators_metrics_and_fails_elsewhere():
    import prometheus_client

    from collection_operator import metrics  # noqa: F401  (registers the operator's metrics)

    script = hook_pod(template())["spec"]["containers"][0]["command"][2]
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1")  # as handlers/operator.py serves
    try:
        port = server.server_address[1]
        assert run_test_script(script, f"http://127.0.0.1:{port}/metrics").returncode == 0
        registry = prometheus_client.CollectorRegistry()  # a server with metrics, none of them the operator's
        other, other_thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
        try:
            failed = run_test_script(script, f"http://127.0.0.1:{other.server_address[1]}/metrics")
        finally:
            other.shutdown()
            other.server_close()
            other_thread.join(10)
        assert failed.returncode != 0 and "answered without the operator's metrics" in failed.stderr
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def crds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == "CustomResourceDefinition"}


def test_the_operators_crds_are_templates_kept_on_uninstall_and_kopfs_stay_in_crds_dir():
    rendered = crds(template())  # without --include-crds: templates only
    assert sorted(rendered) == sorted(
        f"{plural}.{GROUP}"
        for plural in ("qdrantconnections", "vectorcollections", "collectionsnapshots", "collectionaccesskeys")
    )
    assert all(crd["metadata"]["annotations"] == {KEEP: "keep"} for crd in rendered.values())
    assert all(crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm" for crd in rendered.values())
    # kopf's peering CRDs, shared with other kopf operators: Helm creates them if missing, never changes them.
    assert sorted(crds(template("--include-crds"))) == sorted(
        [*rendered, "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
    )
    unkept = crds(template("--set", "crds.keep=false"))
    assert sorted(unkept) == sorted(rendered) and all("annotations" not in c["metadata"] for c in unkept.values())
    assert not crds(template("--set", "crds.enabled=false"))


def rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


def test_namespaces_by_name_get_roles_and_no_clusterrole_grants_secrets():
    cluster_wide = next(o for o in template() if o["kind"] == "ClusterRole" and o["metadata"]["name"] == RELEASE)
    objects = template("--set", "namespaces={a,b}")
    cluster_roles = [obj for obj in objects if obj["kind"] == "ClusterRole"]
    assert not [rule for role in cluster_roles for rule in rules(role) if rule[1] == "secrets"]
    operator_role = next(role for role in cluster_roles if role["metadata"]["name"] == RELEASE)
    assert rules(operator_role) == {
        ("", "namespaces", "list"),
        ("", "namespaces", "watch"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    roles = {obj["metadata"]["namespace"]: obj for obj in objects if obj["kind"] == "Role"}
    bindings = {obj["metadata"]["namespace"]: obj for obj in objects if obj["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"a", "b"}
    for namespace, role in roles.items():
        # Together, the rules of the whole-cluster ClusterRole but for the cluster-wide peering object.
        assert rules(role) | rules(operator_role) == {r for r in rules(cluster_wide) if r[1] != "clusterkopfpeerings"}
        assert bindings[namespace]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": RELEASE,
        }
        assert bindings[namespace]["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
    # A pattern cannot have a Role: the ClusterRole keeps every rule, as without namespaces.
    pattern = template("--set", "namespaces={team-*}", "--set", "peering.enabled=false", "--set", "replicas=1")
    assert [rules(o) for o in pattern if o["kind"] == "ClusterRole" and o["metadata"]["name"] == RELEASE] == [
        rules(cluster_wide)
    ]
    assert not [obj for obj in pattern if obj["kind"] == "Role"]


def test_rbac_create_false_makes_no_rbac_objects():
    kinds = {obj["kind"] for obj in template("--set", "rbac.create=false")}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert "ServiceAccount" in kinds
