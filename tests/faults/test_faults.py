"""The standing fault-injection suite (issue 9): each scenario injects one kind of fault into a namespace of
VectorCollections (half deletionPolicy Delete, half Retain, POINTS points each once Ready), then asserts the
invariants of Scenario.problems() - nothing lost, nothing Retain deleted, every Delete removed, each
collection owned by exactly its live resource - within a deadline, and records the time to converge."""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import Scenario, restart_control_plane
from tests.fixtures.operator import wait_for

pytestmark = pytest.mark.integration


def ready(sc: Scenario, count: int, **spec: object) -> list[str]:
    """count collections created, Ready and filled with points."""
    names = sc.create(count, start=len(sc.policies), **spec)
    wait_for(lambda: sc.count_converged(names) == len(names), 180, f"{len(names)} collections Ready")
    sc.fill(names)
    return names


@pytest.mark.timeout(180)
def test_qdrant_killed_mid_batch_and_restarted(scenario: Scenario) -> None:
    kept = ready(scenario, 6)
    scenario.qdrant.set_faults(latency_ms=100)  # stretches the batch so the kill lands inside it
    batch = scenario.create(20, start=len(kept))
    wait_for(lambda: len(scenario.in_qdrant(batch)) >= 5, 60, "the batch under way")
    scenario.qdrant.kill()
    killed = time.monotonic()
    scenario.qdrant.start()  # faults reset: a restarted dev server starts clean
    took = scenario.converge(120, since=killed)
    scenario.record("Qdrant SIGKILL after 5 of 20 creates (100 ms latency), restarted at once", took)


@pytest.mark.timeout(240)
def test_qdrant_slow_and_flaky(scenario: Scenario) -> None:
    # The Testing profile makes one attempt per call; with 30 % errors every resync would flap some collection.
    scenario.connect(retry={"maxAttempts": 5, "initialDelaySeconds": 0.2, "maxDelaySeconds": 1})
    kept = ready(scenario, 6)
    scenario.qdrant.set_faults(latency_ms=150, error_rate=0.3)
    started = time.monotonic()
    scenario.create(12, start=len(kept))
    scenario.update(kept[:3], payloadIndexes=[{"field": "tenant", "type": "Keyword"}])
    scenario.delete(kept[3:])
    took = scenario.converge(180, since=started)
    scenario.record(
        "150 ms latency and 30 % HTTP 503 on every call (5 attempts per call) during 12 creates, 3 updates, 3 deletes",
        took,
    )


@pytest.mark.timeout(600)
def test_operator_sigkilled_during_create_update_and_delete(scenario: Scenario) -> None:
    """Two SIGKILLs in each phase, each once a further share of the phase's work is done."""
    kills, took = 2, dict[str, float]()
    scenario.qdrant.set_faults(latency_ms=20)
    names = scenario.create(50)
    phases = [
        ("create", lambda: None, lambda: len(scenario.in_qdrant(names))),
        (
            "update",
            lambda: scenario.update(names, payloadIndexes=[{"field": "tenant", "type": "Keyword"}]),
            lambda: scenario.count_converged(names),
        ),
        ("delete", lambda: scenario.delete(names), lambda: len(names) - len(set(scenario.live()) & set(names))),
    ]
    for phase, act, progress in phases:
        started = time.monotonic()
        act()
        for k in range(1, kills + 1):
            share = k * len(names) // (kills + 1)
            wait_for(lambda share=share, progress=progress: progress() >= share, 150, f"{phase}: {share} done")
            scenario.operator.kill()
            scenario.operator.start()
        took[phase] = scenario.converge(240, since=started)
        if phase == "create":
            scenario.fill(names)
    phases_took = ", ".join(f"{phase} {s:.0f} s" for phase, s in took.items())
    scenario.record(
        f"operator SIGKILL x{kills} in each of create, update, delete (20 ms Qdrant latency): {phases_took}",
        sum(took.values()),
    )


@pytest.mark.timeout(240)
def test_api_server_and_etcd_restarted(scenario: Scenario) -> None:
    kept = ready(scenario, 6)
    started = time.monotonic()
    batch = scenario.create(14, start=len(kept))
    scenario.delete(kept[:4])
    wait_for(lambda: scenario.in_qdrant(batch), 60, "the batch under way")
    restart_control_plane()
    took = scenario.converge(150, since=started)
    scenario.record("kube-apiserver and etcd SIGKILL, restarted, during 14 creates and 4 deletes", took)


@pytest.mark.timeout(180)
def test_resources_deleted_while_operator_down(scenario: Scenario) -> None:
    names = ready(scenario, 12)
    scenario.operator.kill()
    scenario.delete(names[:9])
    scenario.update(names[9:], hnsw={"m": 32})
    started = time.monotonic()
    scenario.operator.start()
    took = scenario.converge(120, since=started)
    scenario.record("operator SIGKILL, then 9 deletes and 3 updates (re-index), operator started again", took)


@pytest.mark.timeout(480)
def test_namespace_of_many_collections_deleted(scenario: Scenario) -> None:
    names = ready(scenario, 100)
    started = time.monotonic()
    scenario.plane.admin("delete", "namespace", scenario.namespace, "--wait=false")
    wait_for(
        lambda: "NotFound" in scenario.plane.admin("get", "namespace", scenario.namespace, check=False),
        300,
        "the namespace to be gone",
    )
    took = scenario.converge(60, since=started)
    scenario.record(f"namespace deleted with its connection and {len(names)} collections", took)
