"""manifests/monitoring: the PrometheusRule passes a real `promtool check rules` and its unit tests
(`promtool test rules`, tests/monitoring/alerts_test.yaml); the rules and the dashboard name only metrics
the operator declares (tests/integration/test_monitoring_metrics.py checks them against a running operator's
/metrics); the ServiceMonitor and PodMonitor select the operator's Service and Pods by its metrics port, and
every monitoring.coreos.com object decodes into prometheus-operator's own Go types with no unknown field (the
local API server has no such CRDs for a dry-run)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import prometheus_client
import yaml

import collection_operator.metrics  # noqa: F401  (registers the operator's metrics)
from devenv import gohelpers, gotools
from tests.unit.test_manifests import render

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "manifests/monitoring"
PREFIX = "qdrant_operator_"
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}


def exported_names(exposition: str) -> set[str]:
    """Series names of a Prometheus text exposition, those of families without samples yet included
    (a labelled metric shows only its HELP and TYPE lines until its first observation)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return {name for name in names if name.startswith(PREFIX)}


def rule_spec() -> dict:
    return yaml.safe_load((BUNDLE / "prometheusrule.yaml").read_text())["spec"]


def queries() -> dict[str, str]:
    """Every PromQL expression of the bundle, by where it is."""
    found = {f"alert {rule['alert']}": rule["expr"] for group in rule_spec()["groups"] for rule in group["rules"]}
    dashboard = json.loads((BUNDLE / "qdrant-collection-operator.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def referenced_names() -> dict[str, set[str]]:
    return {where: set(re.findall(rf"\b{PREFIX}\w+", expr)) for where, expr in queries().items()}


def promtool(*args: str, cwd: Path) -> str:
    proc = subprocess.run([str(gotools.build("promtool")), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_rules_pass_promtool_check_and_unit_tests(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec(), sort_keys=False))
    shutil.copy(REPO / "tests/monitoring/alerts_test.yaml", tmp_path / "alerts_test.yaml")
    assert "SUCCESS: 12 rules found" in promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yaml", cwd=tmp_path)


def test_every_alert_asked_for_is_there_and_unit_tested():
    alerts = {rule["alert"] for group in rule_spec()["groups"] for rule in group["rules"]}
    assert alerts == {
        "QdrantOperatorCircuitBreakerOpen",
        "QdrantOperatorConnectionUnhealthy",
        "QdrantOperatorEndpointOutOfRotation",
        "QdrantOperatorCollectionsStalled",
        "QdrantOperatorDriftCorrectedOften",
        "QdrantOperatorReconcileErrors",
        "QdrantOperatorDeletesAbandoned",
        "QdrantOperatorPeeringObjectMissing",
        "QdrantOperatorAccessKeyExpiringUnrotated",
        "QdrantOperatorBackupVerificationFailed",
        "QdrantOperatorAbsent",
        "QdrantOperatorNoActiveReplica",
    }
    tests = yaml.safe_load((REPO / "tests/monitoring/alerts_test.yaml").read_text())["tests"]
    firing = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert firing == alerts


def test_every_alert_has_a_runbook_at_a_troubleshooting_heading():
    from tests.unit.test_docs import anchors

    headings = anchors(REPO / "docs/troubleshooting.md")
    for group in rule_spec()["groups"]:
        for rule in group["rules"]:
            page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
            assert page == "docs/troubleshooting.md" and anchor in headings, (rule["alert"], anchor)


def test_queries_name_only_metrics_the_operator_declares():
    declared = exported_names(prometheus_client.generate_latest().decode())
    assert f"{PREFIX}deletes_abandoned_total" in declared
    unknown = {where: names - declared for where, names in referenced_names().items() if names - declared}
    assert not unknown
    assert all(referenced_names().values()), "a query without an operator metric"


def test_dashboard_is_grafana_json_with_a_datasource_variable():
    dashboard = json.loads((BUNDLE / "qdrant-collection-operator.json").read_text())
    assert dashboard["uid"] and dashboard["templating"]["list"][0]["type"] == "datasource"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]


def test_monitors_select_the_operators_metrics_port():
    base = {obj["kind"]: obj for obj in render("manifests/base")}
    service, pod = base["Service"], base["Deployment"]["spec"]["template"]
    service_monitor = yaml.safe_load((BUNDLE / "servicemonitor.yaml").read_text())
    pod_monitor = yaml.safe_load((BUNDLE / "podmonitor.yaml").read_text())
    for monitor, target_labels in (
        (service_monitor, service["metadata"]["labels"]),
        (pod_monitor, pod["metadata"]["labels"]),
    ):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
        assert set(monitor["spec"]) == {
            "selector",
            "endpoints" if monitor["kind"] == "ServiceMonitor" else "podMetricsEndpoints",
        }
        assert monitor["spec"]["selector"]["matchLabels"].items() <= target_labels.items()
    [endpoint] = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    [endpoint] = pod_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
    for monitor_endpoint in (service_monitor["spec"]["endpoints"][0], endpoint):
        assert set(monitor_endpoint) == {"port", "path", "interval"}
        assert monitor_endpoint["path"] == "/metrics" and re.fullmatch(r"\d+[smh]", monitor_endpoint["interval"])


def monitorcheck(objects: list[dict]) -> list[dict]:
    proc = subprocess.run(
        [str(gohelpers.build("monitorcheck"))],
        input="".join(json.dumps(o) + "\n" for o in objects),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_monitoring_objects_decode_into_prometheus_operator_types(tmp_path):
    from tests.unit.test_chart import MONITORING, OTHER_VALUES, template, template_values

    bundle = [
        yaml.safe_load((BUNDLE / name).read_text())
        for name in ("servicemonitor.yaml", "podmonitor.yaml", "prometheusrule.yaml")
    ]
    charted = [
        obj
        for obj in template(*MONITORING) + template_values(OTHER_VALUES, tmp_path)
        if obj["apiVersion"].startswith("monitoring.coreos.com/")
    ]
    assert len(charted) == 4
    results = monitorcheck(bundle + charted)
    assert [r["kind"] for r in results] == [o["kind"] for o in bundle + charted]
    assert [r for r in results if r["error"]] == []


def test_monitorcheck_refuses_unknown_fields_and_wrong_types():
    monitor = yaml.safe_load((BUNDLE / "servicemonitor.yaml").read_text())
    typo = {**monitor, "spec": {**monitor["spec"], "endpoint": monitor["spec"]["endpoints"]}}
    wrong = {**monitor, "spec": {**monitor["spec"], "endpoints": {"port": "metrics"}}}
    errors = [r["error"] for r in monitorcheck([typo, wrong])]
    assert 'unknown field "endpoint"' in errors[0]
    assert "cannot unmarshal object" in errors[1]
