"""Hostile inputs: every bound of the schema one step beyond (refused by the API server), the bounds themselves
(served), hostile names and URLs (loopback only); and the secrets scan over everything the tier captured.
Runs after test_faults.py, so the scan covers the operator's DEBUG log of every scenario."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.builders import collection_spec, vectors
from tests.faults.harness import SECRET, Scenario, secret_forms
from tests.fixtures.controlplane import ControlPlane, KubectlError
from tests.fixtures.operator import wait_for

pytestmark = pytest.mark.integration
V = vectors()[0]

# One step beyond each bound of the schema, and names and URLs no Qdrant or URL parser should meet.
BEYOND = {
    "shard-number-0": {"shardNumber": 0},
    "shard-number-1025": {"shardNumber": 1025},
    "replication-65": {"replicationFactor": 65},
    "consistency-above-replication": {"replicationFactor": 2, "writeConsistencyFactor": 3},
    "vector-size-0": {"vectors": [{"size": 0, "distance": "Dot"}]},
    "vector-size-65537": {"vectors": [{"size": 65537, "distance": "Dot"}]},
    "vectors-17": {"vectors": [{"name": f"v{i}", **V} for i in range(17)]},
    "two-unnamed-vectors": {"vectors": [V, {"name": "x", **V}]},
    "hnsw-m-1025": {"hnsw": {"m": 1025}},
    "ef-construct-3": {"hnsw": {"efConstruct": 3}},
    "quantile-0.4": {"quantization": {"scalar": {"quantile": 0.4}}},
    "two-quantizations": {"quantization": {"scalar": {}, "binary": {}}},
    "aliases-33": {"aliases": [f"a{i}" for i in range(33)]},
    "payload-indexes-65": {"payloadIndexes": [{"field": f"f{i}", "type": "Keyword"} for i in range(65)]},
    "name-dot-dot-slash": {"collectionName": "../etc"},
    "name-double-dot": {"collectionName": "a..b"},  # Qdrant refuses ".." in a name (422)
    "name-slash": {"collectionName": "a/b"},
    "name-space": {"collectionName": "a b"},
    "name-unicode": {"collectionName": "коллекция-☃"},
    "name-percent": {"collectionName": "%2e%2e"},
    "name-256": {"collectionName": "a" * 256},
    "name-leading-dash": {"collectionName": "-x"},
    "alias-slash": {"aliases": ["x/y"]},
    "policy-unknown": {"deletionPolicy": "Purge"},
}
BAD_URLS = [
    "file:///etc/passwd",
    "ftp://127.0.0.1:21/",
    "http://",
    "http:// 127.0.0.1:6333",
    "gopher://127.0.0.1:70/",
    "http://127.0.0.1:6333/" + "a" * 2048,
    "javascript:alert(1)",
]


def test_bad_inputs_refused_or_served(scenario: Scenario, control_plane: ControlPlane) -> None:
    docs = [
        {
            "kind": "VectorCollection",
            "metadata": {"name": f"bad-{label}"},
            "spec": collection_spec(**spec),
        }
        for label, spec in BEYOND.items()
    ]
    docs += [
        {"kind": "QdrantConnection", "metadata": {"name": f"bad-url-{i}"}, "spec": {"url": url}}
        for i, url in enumerate(BAD_URLS)
    ]
    docs.append(
        {
            "kind": "VectorCollection",
            "metadata": {"name": "снежинка-☃"},
            "spec": collection_spec(),
        }
    )
    accepted = {d["metadata"]["name"] for d in docs} - refusals(scenario, docs)

    # The bounds themselves are served. shardNumber stays well below its bound: 1024 froze the dev server
    # (issue 9.7, a cap and the dev server's refusal are being added elsewhere).
    tag = uuid.uuid4().hex[:6]
    started = time.monotonic()
    at_bounds = {
        "long-name": {"collectionName": f"_{tag}" + "a" * 248},
        "odd-name": {"collectionName": f"_{tag}.a.b-c_"},
        "wide": {"vectors": [{"size": 65536, "distance": "Cosine"}], "hnsw": {"m": 1024, "efConstruct": 65536}},
        "many": {
            "vectors": [{"name": f"v{i}", **V} for i in range(16)],
            "shardNumber": 16,
            "replicationFactor": 64,
            "writeConsistencyFactor": 64,
            "aliases": [f"{tag}-alias-{i}" for i in range(32)],
        },
        "indexes": {"payloadIndexes": [{"field": f"f{i}", "type": "Keyword"} for i in range(64)]},
    }
    for name, spec in at_bounds.items():
        scenario.policies[name] = "Delete"
        if "collectionName" in spec:
            scenario.names[name] = str(spec["collectionName"])
        scenario.update([name], **spec)
    regular = scenario.create(6)

    # Hostile URLs that parse: the kube-apiserver (a peer that is not Qdrant: its body must not reach status).
    scenario.apply(
        [
            {
                "kind": "QdrantConnection",
                "metadata": {"name": "apiserver"},
                "spec": {
                    "url": control_plane_url(control_plane),
                    "environment": "Testing",
                    "tls": {"insecureSkipVerify": True},
                },
            }
        ]
    )
    took = scenario.converge(120, since=started)
    wait_for(
        lambda: scenario.kubectl(
            "get", "qdrantconnections", "apiserver", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].message}"
        ),
        60,
        "the apiserver connection's verdict",
    )
    status = json.dumps(
        scenario.plane.admin.json("get", "qdrantconnections", "apiserver", "-n", scenario.namespace).get("status")
    )
    # The API server's own answer (its Status body), not our message naming the HTTP status ("HTTP 403: Forbidden").
    reflected = [
        s for s in ("system:anonymous", "forbidden: User", '"kind":"Status"', '"kind": "Status"') if s in status
    ]
    scenario.record(
        f"{len(docs)} inputs beyond a bound or hostile (all must be refused at admission), "
        f"{len(at_bounds)} at the bounds, {len(regular)} plain, a connection to the kube-apiserver",
        took,
    )
    assert not accepted and not reflected, (
        f"accepted by the API server: {sorted(accepted)}; "
        f"the API server's answer in status: {reflected}: {status[:600]}"
    )


def refusals(scenario: Scenario, docs: list[dict[str, Any]]) -> set[str]:
    """Names of the docs the API server refuses (server-side dry run: nothing is stored)."""
    items = [{"apiVersion": "qdrant.collection-operator.dev/v1alpha1", **d} for d in docs]
    out = scenario.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        check=False,
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
    )
    return {d["metadata"]["name"] for d in docs if f'"{d["metadata"]["name"]}"' in out}


def control_plane_url(plane: ControlPlane) -> str:
    server = json.loads(plane.admin_kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return str(server)


def test_secrets_never_in_logs_events_or_status(scenario: Scenario, faults_logs: Path) -> None:
    """The API key (a marker) and a password in a connection URL, with the operator at DEBUG in text and
    JSON logs, after several health intervals (the Secret is re-read on each)."""
    password = f"url-password-{uuid.uuid4().hex}"
    started = time.monotonic()
    scenario.operator.stop()
    scenario.operator.log_format = "json"
    scenario.operator.start()
    try:
        creds = {
            "kind": "QdrantConnection",
            "metadata": {"name": "creds"},
            "spec": {
                "url": scenario.qdrant.url.replace("://", f"://admin:{password}@"),
                "environment": "Testing",
                "apiKeySecretRef": {"name": "qdrant-key"},
                "healthCheck": {"intervalSeconds": 1},
            },
        }
        # A password in the URL is refused at admission, pointing at apiKeySecretRef (the API server echoes the
        # rejected value to the client that sent it, as it does for every invalid field; nothing is stored).
        with pytest.raises(KubectlError) as refused:
            scenario.apply([creds])
        assert "apiKeySecretRef" in refused.value.stderr
        creds["spec"]["url"] = scenario.qdrant.url
        scenario.apply([creds])
        names = scenario.create(4)
        took = scenario.converge(60, since=started)
        # Converging took several 1 s health intervals, each re-reading the Secret. (Request lines no longer
        # count probes: the HTTP client loggers are pinned to WARNING.)
    finally:
        scenario.operator.stop()
        scenario.operator.log_format = "text"
        scenario.operator.start()
    captured = {path.name: path.read_text(errors="replace") for path in faults_logs.glob("*.log")}
    captured["events"] = scenario.plane.admin("get", "events", "-A", "-o", "json")
    resources = scenario.plane.admin.json("get", "qdrantconnections,vectorcollections,collectionsnapshots", "-A")
    captured["statuses"] = json.dumps([item.get("status") for item in resources["items"]])
    found = [
        f"{marker[:24]}... in {where}"
        for where, text in captured.items()
        for marker in [*secret_forms(SECRET), *secret_forms(password)]
        if marker in text
    ]
    scenario.record(
        f"operator --verbose (text and JSON); API key and URL password markers; {len(names)} "
        f"collections; scanned {len(captured) - 2} logs, all Events and statuses",
        took,
    )
    assert not found, f"secret material captured: {found}"
