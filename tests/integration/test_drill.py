"""Restore drills (CollectionSnapshot spec.verify) end to end: the operator in-process, the real API server, the
session's Qdrant on both tiers (the dev server and the real Qdrant 1.19). The snapshot files are damaged on the
server's own disk, as a lost or failing node would; every claim is checked against what Qdrant serves."""

from __future__ import annotations

import json
import shlex
from contextlib import closing
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from tests.docs_commands import shell_blocks
from tests.fixtures.operator import wait_for
from tests.integration.test_snapshot import PLURAL, contents, source_collection

pytestmark = pytest.mark.integration
DOCS = Path(__file__).resolve().parents[2] / "docs"
OWNER = "qdrant-collection-operator.dev/owner"
POINTS = 150  # more than the 100 points a snapshot's sample covers
# The first slot after the resource's creation is at most a minute away; three drills take their turns.
DRILL_TIMEOUT = 180
PLURAL_KIND = "CollectionSnapshot"
FAILURES = "qdrant_operator_backup_verification_failures_total"


def metric(name: str, snapshot: str) -> float | None:
    return prometheus_client.REGISTRY.get_sample_value(name, {"snapshot": snapshot})


def collections(qdrant_server: Any) -> list[str]:
    with closing(qdrant_server.client()) as client:
        return [c.name for c in client.get_collections().collections]


def events(cluster: Any, reason: str, name: str) -> str:
    selector = f"reason={reason},involvedObject.name={name},type={'Normal' if reason == 'Verified' else 'Warning'}"
    return cluster.kubectl("get", "events", "--field-selector", selector, "-o", "name").strip()


def test_drills_verify_a_good_snapshot_and_fail_a_lost_or_damaged_one(cluster, connection, qdrant_server):
    if qdrant_server.data_dir is None:
        pytest.skip("damaging a snapshot file needs the Qdrant's storage on this machine (not QDRANT_URL)")
    collection = source_collection(cluster, qdrant_server, count=POINTS)
    original = contents(qdrant_server, collection)
    names = ("good", "lost", "damaged")
    for name in names:
        cluster.apply(PLURAL_KIND, name, {"collectionRef": {"name": "docs"}})
    bodies = {name: cluster.wait_condition(PLURAL, name, "Completed", timeout=60) for name in names}
    records = {name: body["status"]["snapshots"][0] for name, body in bodies.items()}
    assert all(r["pointsCount"] == POINTS and r["sample"]["points"] == 100 for r in records.values()), records

    def file_of(name: str) -> Any:
        [path] = [p for p in qdrant_server.data_dir.rglob(records[name]["name"]) if p.is_file()]
        return path

    file_of("lost").unlink()  # the node lost it
    damaged = file_of("damaged")
    data = bytearray(damaged.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    damaged.write_bytes(bytes(data))  # same size, other bytes

    # A scratch collection a crashed operator left (it bears the drill's marker): the next drill removes it.
    ns, good_uid = cluster.namespace, bodies["good"]["metadata"]["uid"]
    left = f"~drill-{good_uid}"
    with qdrant_server.http(timeout=30) as http:
        body = {"vectors": {"size": 4, "distance": "Cosine"}, "metadata": {OWNER: f"{ns}/good/{good_uid}"}}
        http.put(f"/collections/{left}", json=body).raise_for_status()
    failures = {name: metric(FAILURES, f"{ns}/{name}") or 0.0 for name in names}

    for name in names:
        cluster.apply(PLURAL_KIND, name, {"collectionRef": {"name": "docs"}, "verify": {"schedule": "* * * * *"}})
    good = cluster.wait_condition(PLURAL, "good", "Verified", type_="BackupVerified", timeout=DRILL_TIMEOUT)
    verification = good["status"]["lastVerification"]
    assert verification["result"] == "Succeeded" and verification["snapshot"] == records["good"]["name"]
    assert (verification["pointsCount"], verification["sampledPoints"]) == (POINTS, 100)
    assert good["status"]["verifiedAt"] == verification["time"]
    assert cluster.condition(PLURAL, "good")["reason"] == "Completed", "Ready stays about the snapshots"
    assert metric("qdrant_operator_backup_verified", f"{ns}/good") == 1.0
    assert metric("qdrant_operator_backup_last_verified_timestamp_seconds", f"{ns}/good")
    wait_for(lambda: events(cluster, "Verified", "good"), 30, "the Verified Event")

    for name in ("lost", "damaged"):
        body = cluster.wait_condition(
            PLURAL, name, "SnapshotUnrestorable", status="False", type_="BackupVerified", timeout=DRILL_TIMEOUT
        )
        verification = body["status"]["lastVerification"]
        assert verification["result"] == "Failed" and "could not recover snapshot" in verification["message"]
        assert "verifiedAt" not in body["status"]
        assert metric(FAILURES, f"{ns}/{name}") == failures[name] + 1
        assert metric("qdrant_operator_backup_verified", f"{ns}/{name}") == 0.0
        wait_for(lambda n=name: events(cluster, "SnapshotUnrestorable", n), 30, f"the Warning Event of {name}")

    assert not [c for c in collections(qdrant_server) if c.startswith("~drill-")], "every scratch collection is gone"
    assert contents(qdrant_server, collection) == original, "the source collection is untouched"
    assert cluster.condition("vectorcollections", "docs")["reason"] == "InSync"
    wide = [cluster.plane.admin.row(PLURAL, name, "-n", ns, "-o", "wide") for name in names]
    assert [row["VERIFIED"] for row in wide] == ["True", "False", "False"]
    assert wide[0]["VERIFIED-AT"] and not wide[1]["VERIFIED-AT"]

    # docs/troubleshooting.md's commands for drills, as written there (NS and NAME filled in)
    [block] = [b for b in shell_blocks(DOCS / "troubleshooting.md") if "kubectl get vsnap" in b]
    listed, shown = (
        cluster.plane.admin(*shlex.split(line.replace("NS", ns).replace("NAME", "lost"), comments=True)[1:])
        for line in block.splitlines()
    )
    assert "VERIFIED-AT" in listed and json.loads(shown)["result"] == "Failed"
