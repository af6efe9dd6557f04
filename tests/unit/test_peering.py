"""Which kopf peering objects the operator makes sure of, the command its WARNING hands to a person, and its
verdicts on the API server's answers (the real ones: tests/integration/test_install_path.py)."""

from __future__ import annotations

import datetime
import json
import logging
import shlex
import socket
from typing import Any

from prometheus_client import REGISTRY

from collection_operator import metrics
from collection_operator.k8s.api import KubeApiError
from collection_operator.k8s.peering import PeeringKeeper, own_identity


def keeper(*namespaces: str) -> PeeringKeeper:
    return PeeringKeeper(None, "qco", namespaces)  # type: ignore[arg-type]  # no call to the API is made


def test_the_cluster_wide_operator_keeps_one_clusterkopfpeering():
    cluster_wide = keeper()
    assert [(o.kind, o.namespace, o.name, o.crd) for o in cluster_wide.objects] == [
        ("ClusterKopfPeering", None, "qco", "clusterkopfpeerings.kopf.dev")
    ]
    assert cluster_wide.patterns == ()


def test_a_namespaced_operator_keeps_a_kopfpeering_per_named_namespace_and_none_for_a_pattern():
    namespaced = keeper("search", "team-*", "ml", "!x")
    assert [(o.kind, o.namespace) for o in namespaced.objects] == [("KopfPeering", "search"), ("KopfPeering", "ml")]
    assert namespaced.patterns == ("team-*", "!x")


def test_the_create_command_is_one_shell_line_with_the_object():
    for obj, scope in ((keeper().objects[0], []), (keeper("ml").objects[0], ["-n", "ml"])):
        words = shlex.split(obj.create_command)
        assert words[0] == "echo" and words[2:] == ["|", "kubectl", "create", *scope, "-f", "-"]
        assert json.loads(words[1]) == {"apiVersion": "kopf.dev/v1", "kind": obj.kind, "metadata": {"name": "qco"}}


class Kube:
    """The two calls the keeper makes, answering as an API server would: `find` (every object holds the same
    keep-alives), and `create` either makes the object or raises the status given."""

    def __init__(self, create_status: int | None = None) -> None:
        self.objects: set[tuple[str | None, str]] = set()
        self.create_status = create_status
        self.status: dict[str, Any] = {}  # the peers' keep-alives, as kopf writes them

    async def find_kopf_peering(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        if (namespace, name) not in self.objects:
            return None
        return {"metadata": {"name": name}, "status": self.status}

    async def create_kopf_peering(self, namespace: str | None, name: str) -> None:
        if self.create_status is not None:
            raise KubeApiError(self.create_status, "POST", "/apis/kopf.dev/v1/clusterkopfpeerings", "refused")
        self.objects.add((namespace, name))


def gauge(name: str = "qco") -> float | None:
    return REGISTRY.get_sample_value(
        "qdrant_operator_peering_object_missing", {"kind": "ClusterKopfPeering", "namespace": "", "name": name}
    )


async def test_a_missing_object_is_created_and_nothing_is_warned(caplog):
    kube = Kube()
    keeper = PeeringKeeper(kube, "made", [])  # type: ignore[arg-type]
    assert await keeper.check() and (None, "made") in kube.objects
    assert gauge("made") == 0 and not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_forbidden_is_one_warning_with_the_command_and_the_gauge_until_the_object_exists(caplog):
    caplog.set_level(logging.INFO, logger="collection_operator")
    kube = Kube(create_status=403)
    keeper = PeeringKeeper(kube, "qco", [])  # type: ignore[arg-type]
    assert not await keeper.check() and not await keeper.check()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once per change, not once per look
    assert "ClusterKopfPeering qco does not exist" in warnings[0] and "may not create it" in warnings[0]
    assert warnings[0].endswith(keeper.objects[0].create_command)
    assert gauge() == 1
    kube.objects.add((None, "qco"))  # an administrator ran the command
    assert await keeper.check()
    assert gauge() == 0 and "peering object ClusterKopfPeering qco exists" in caplog.messages


async def test_the_crd_missing_and_a_create_race_are_told_apart():
    crd_missing = PeeringKeeper(Kube(create_status=404), "qco", [])  # type: ignore[arg-type]
    verdict = await crd_missing.verdict(crd_missing.objects[0])
    assert verdict.missing and "CRD clusterkopfpeerings.kopf.dev is not installed" in verdict.why
    raced = PeeringKeeper(Kube(create_status=409), "qco", [])  # type: ignore[arg-type]  # another replica won
    assert not (await raced.verdict(raced.objects[0])).missing
    failing = PeeringKeeper(Kube(create_status=500), "qco", [])  # type: ignore[arg-type]
    assert (await failing.verdict(failing.objects[0])).missing is None  # not known: the gauge is left alone


def keepalive(priority: int, seen_ago: float = 0, lifetime: int = 60) -> dict[str, Any]:
    """A peer's entry as kopf writes it."""
    lastseen = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seen_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen.isoformat()}


def active() -> float | None:
    return REGISTRY.get_sample_value("qdrant_operator_active")


async def test_the_active_gauge_applies_kopfs_rule_to_the_peering_objects_status(caplog):
    caplog.set_level(logging.INFO, logger="collection_operator")
    kube = Kube()
    keeper = PeeringKeeper(kube, "qco", [], identity="me@pod-a/1/x")  # type: ignore[arg-type]
    metrics.RESOURCE_READY.labels("VectorCollection", "ns/docs").set(1)
    await keeper.check()  # created just now: kopf has not written its keep-alive yet, so it is paused
    assert active() == 0 and keeper.active is False
    kube.status = {"me@pod-a/1/x": keepalive(10), "me@pod-b/1/y": keepalive(5)}
    await keeper.check()
    assert active() == 1 and "this replica (me@pod-a/1/x) is the active one: it processes resources" in caplog.messages
    kube.status["me@pod-b/1/y"] = keepalive(20)  # a replica of a higher priority: kopf pauses this one
    await keeper.check()
    assert active() == 0 and any("stands by" in m for m in caplog.messages)
    assert (
        REGISTRY.get_sample_value("qdrant_operator_resource_ready", {"kind": "VectorCollection", "resource": "ns/docs"})
        is None
    ), "a standby's per-resource series are dropped"
    kube.status["me@pod-b/1/y"] = keepalive(10)  # a tie: kopf pauses both
    await keeper.check()
    assert active() == 0
    kube.status["me@pod-b/1/y"] = keepalive(10, seen_ago=120)  # its keep-alives stopped: gone
    await keeper.check()
    assert active() == 1
    del kube.status["me@pod-a/1/x"]  # not listed (yet, or any more)
    await keeper.check()
    assert active() == 0


async def test_a_namespaced_operator_is_active_only_where_it_leads_in_every_peering_object():
    kube = Kube()
    keeper = PeeringKeeper(kube, "qco", ["search", "ml"], identity="me")  # type: ignore[arg-type]
    kube.status = {"me": keepalive(10)}
    await keeper.check()  # creates both: their keep-alives are read at the next look
    assert active() == 0
    await keeper.check()
    assert active() == 1
    kube.objects.discard(("ml", "qco"))
    kube.create_status = 403  # may not create it again: kopf keeps the replica paused
    await keeper.check()
    assert active() == 0


def test_the_own_identity_is_kopfs_format_and_pod_id_wins(monkeypatch):
    monkeypatch.delenv("POD_ID", raising=False)
    user, rest = own_identity().split("@", 1)
    host, started, suffix = rest.split("/")
    assert (host, len(started), len(suffix)) == (socket.gethostname(), 14, 3) and user
    monkeypatch.setenv("POD_ID", "qco-7d9f-abcde")
    assert own_identity() == "qco-7d9f-abcde"
