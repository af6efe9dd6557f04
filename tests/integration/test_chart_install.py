"""The rendered chart against the real API server: a server-side dry-run apply of every object it knows
(the monitoring.coreos.com kinds need prometheus-operator's CRDs, which are not installed here; tests/unit/
test_monitoring.py checks their shape)."""

from __future__ import annotations

import pytest
import yaml

from tests.unit.test_chart import MONITORING, OTHER_VALUES, template, template_values

pytestmark = pytest.mark.integration


def dry_run(control_plane, objects: list[dict]) -> str:
    known = [obj for obj in objects if not obj["apiVersion"].startswith("monitoring.coreos.com/")]
    out = control_plane.admin(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(known)
    )
    assert out.count("(server dry run)") == len(known), out
    return out


def test_default_chart_applies(control_plane, namespace):
    out = dry_run(control_plane, template("--include-crds", namespace=namespace))
    assert "deployment.apps/qdrant-collection-operator serverside-applied (server dry run)" in out
    assert "customresourcedefinition.apiextensions.k8s.io/vectorcollections." in out
    assert "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev serverside-applied" in out


def test_chart_with_other_values_and_monitoring_applies(control_plane, namespace, tmp_path):
    values = {**OTHER_VALUES, "namespaces": [namespace]}
    out = dry_run(control_plane, template_values(values, tmp_path, *MONITORING, namespace=namespace))
    assert "configmap/qdrant-collection-operator-settings serverside-applied (server dry run)" in out
    assert "configmap/qdrant-collection-operator-dashboard serverside-applied (server dry run)" in out
