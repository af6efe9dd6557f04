"""The handler adapters and the VectorCollection step on the fakes of tests/fakes.py: status written only
on change, Events only on transitions, the delete budget, and the pre-checks before any Qdrant call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
import pytest

from collection_operator.api.collection import VectorCollectionStatus
from collection_operator.api.connection import QdrantConnectionSpec
from collection_operator.config import OperatorSettings
from collection_operator.handlers.adapter import delete_with_budget, indexed, requeue, sweep_collection, write
from collection_operator.handlers.context import Context
from collection_operator.qdrant.errors import Unreachable
from collection_operator.reconcile import collection_step
from collection_operator.reconcile.outcome import DELETE_ATTEMPTS, Outcome, State, Verdict
from collection_operator.reconcile.restore import RestoreTracker
from collection_operator.reconcile.snapshot import Offsite
from collection_operator.reconcile.target import Target
from collection_operator.redact import SecretValues
from tests.builders import collection_spec
from tests.fakes import FakeConnection, FakeConnections, FakeObjectStores, FakeSecrets

PLURAL = "vectorcollections"


def body(generation: int = 1, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "qdrant.collection-operator.dev/v1alpha1",
        "kind": "VectorCollection",
        "metadata": {
            "namespace": "ns",
            "name": "docs",
            "uid": "u1",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": collection_spec(**spec),
    }


@pytest.fixture
def ctx() -> Context:
    events: list[tuple[str, str, str]] = []
    context = Context(
        OperatorSettings(),
        FakeSecrets(),
        SecretValues(),  # type: ignore[arg-type]
        poster=lambda _b, t, r, m: events.append((t, r, m)),
    )
    context.events = events  # type: ignore[attr-defined]
    return context


def outcome(state: State, reason: str, reconciled: bool = False, **fields: Any) -> Outcome[VectorCollectionStatus]:
    return Outcome(
        Verdict(state, reason, f"{reason} message"),
        VectorCollectionStatus.model_validate(fields),
        reconciled=reconciled,
    )


async def test_status_is_written_only_when_it_changes(ctx):
    b = body()
    assert await write(ctx, PLURAL, b, outcome(State.READY, "InSync", True, points_count=3))
    first = ctx.kube.patches[-1][2]
    assert first["observedGeneration"] == 1 and first["pointsCount"] == 3
    assert {c["type"]: c["status"] for c in first["conditions"]} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    assert not await write(ctx, PLURAL, b, outcome(State.READY, "InSync", True, points_count=3))
    assert await write(ctx, PLURAL, b, outcome(State.READY, "InSync", True, points_count=4))
    assert ctx.kube.patches[-1][2] == {"pointsCount": 4}, "only the key that changed is patched"
    assert len(ctx.kube.patches) == 2


async def test_observed_generation_is_the_generation_the_verdict_is_about(ctx):
    await write(ctx, PLURAL, body(), outcome(State.READY, "InSync", True))
    b2 = body(generation=2)
    await write(ctx, PLURAL, b2, outcome(State.FAILED, "ConnectionNotReady"))
    assert ctx.statuses.current(PLURAL, b2)["observedGeneration"] == 1, "a transient failure is no verdict on 2"
    for _ in range(3):
        await write(ctx, PLURAL, b2, outcome(State.STALLED, "ImmutableFieldChanged"))
    warnings = [e for e in ctx.events if e[0] == "Warning"]
    assert [w[1] for w in warnings] == ["ConnectionNotReady", "ImmutableFieldChanged"], "one per transition"
    status = ctx.statuses.current(PLURAL, b2)
    assert status["observedGeneration"] == 2, "Stalled is the final verdict on generation 2 (kstatus: Failed)"
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["observedGeneration"] == 2
    await write(ctx, PLURAL, body(generation=3), outcome(State.PAUSED, "Paused"))
    assert ctx.statuses.current(PLURAL, body(generation=3))["observedGeneration"] == 3


async def test_reconciling_posts_no_event_and_pause_is_a_normal_one(ctx):
    await write(ctx, PLURAL, body(), outcome(State.RECONCILING, "Optimizing"))
    assert ctx.events == []
    await write(ctx, PLURAL, body(), outcome(State.PAUSED, "Paused"))
    assert ctx.events == [("Normal", "Paused", "Paused message")]
    paused = next(c for c in ctx.kube.patches[-1][2]["conditions"] if c["type"] == "Paused")
    assert paused["status"] == "True"


async def test_secret_values_never_reach_status_or_events(ctx):
    secret = "s3cr3t-api-key-value"
    ctx.secrets.add(secret.encode())
    leaky = Outcome(
        Verdict(State.FAILED, "Unauthorized", f"key {secret} refused by http://u:pw@127.0.0.1:6333/"),
        VectorCollectionStatus(),
    )
    await write(ctx, PLURAL, body(), leaky)
    ctx.post_event(body(), "Warning", "Leak", f"again {secret}")
    written = json.dumps(ctx.kube.patches) + json.dumps(ctx.events)
    assert secret not in written and "pw@" not in written and "***" in written


def test_requeue_only_when_asked():
    requeue(outcome(State.READY, "InSync"))
    waiting = outcome(State.FAILED, "ConnectionNotReady")
    waiting.requeue_after = 10
    with pytest.raises(kopf.TemporaryError) as err:
        requeue(waiting)
    assert err.value.delay == 10


async def test_delete_budget_retries_then_releases_with_a_warning(ctx):
    async def failing() -> tuple[str, str, str]:
        raise Unreachable("connection refused")

    for attempt in range(DELETE_ATTEMPTS - 1):
        with pytest.raises(kopf.TemporaryError):
            await delete_with_budget(ctx, body(), attempt, "collection docs", "it is left", failing, (Unreachable,))
    assert ctx.events == []
    await delete_with_budget(ctx, body(), DELETE_ATTEMPTS - 1, "collection docs", "it is left", failing, (Unreachable,))
    assert [e[1] for e in ctx.events] == ["DeleteAbandoned"] and "it is left" in ctx.events[0][2]


# ----- the VectorCollection step's pre-checks -----------------------------------------------------


def environment(connections: FakeConnections) -> collection_step.Environment:
    return collection_step.Environment(
        connections,
        FakeSecrets(),
        {},
        RestoreTracker(),
        owner_alive=lambda _: False,
        snapshots=lambda _: None,
        offsite=Offsite(FakeSecrets(), FakeObjectStores().open),
    )


async def step(b: dict[str, Any], connections: FakeConnections) -> Outcome[VectorCollectionStatus]:
    return await collection_step.step(Target.of(b, b.get("status") or {}), environment(connections))


@pytest.mark.parametrize(
    ("annotation", "state"), [(collection_step.PAUSED, State.PAUSED), (collection_step.MANAGED, State.UNMANAGED)]
)
async def test_paused_and_unmanaged_touch_nothing(annotation, state):
    conn = FakeConnection()
    value = "true" if state == State.PAUSED else "false"
    out = await step(body(annotations={annotation: value}), FakeConnections({"ns/main": conn}))
    assert out.verdict.state == state and conn.collections.writes == []


async def test_connection_checks_before_any_qdrant_call():
    missing = await step(body(), FakeConnections())
    assert missing.verdict.reason == "ConnectionNotReady"
    assert missing.verdict.message == "QdrantConnection ns/main not found (or not seen by the operator yet)"
    assert missing.requeue_after
    known = await step(body(), FakeConnections(known={"ns/main"}))
    assert known.verdict.message == "QdrantConnection ns/main is not connected yet"
    down = FakeConnection(problem="CircuitOpen: circuit breaker open")
    out = await step(body(), FakeConnections({"ns/main": down}))
    assert out.verdict.reason == "ConnectionNotReady" and down.collections.writes == []
    elsewhere = await step(
        body(connectionRef={"name": "main", "namespace": "other"}),
        FakeConnections({"other/main": FakeConnection(namespace="other")}),
    )
    assert elsewhere.verdict.state == State.STALLED and elsewhere.verdict.reason == "ConnectionNotAllowed"
    assert elsewhere.status.to_patch() == {"collectionName": "docs", "connection": "other/main"}


async def test_a_ready_connection_creates_the_collection():
    conn = FakeConnection()
    out = await step(body(), FakeConnections({"ns/main": conn}))
    assert out.verdict.reason == "InSync" and out.reconciled
    assert conn.collections.writes == ["create docs"]


async def test_delete_removes_only_an_owned_collection():
    conn = FakeConnection()
    connections = FakeConnections({"ns/main": conn})
    await step(body(), connections)
    foreign = Target.of({**body(), "metadata": {**body()["metadata"], "uid": "u2"}}, {})
    assert (await collection_step.delete(foreign, connections))[1] == "NotDeleted"
    assert "docs" in conn.collections.collections
    observed = Target.of(body(), {})
    assert (await collection_step.delete(observed, connections))[1] == "Deleted"
    assert "docs" not in conn.collections.collections


async def test_drift_sweep_skips_a_resource_gone_or_being_deleted_since_its_list(ctx):
    """The sweep's list is seconds old: it acts only on the body the live index holds once the lock is taken
    (a stale body re-created a Delete-policy collection its delete handler had just removed)."""
    listed = body()
    deleting = {**listed, "metadata": {**listed["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    for latest in (None, deleting):
        await sweep_collection(ctx, listed, {"u1": True}, {}, lambda latest=latest: latest)
    assert ctx.kube.patches == []
    await sweep_collection(ctx, listed, {"u1": True}, {}, lambda: listed)
    assert ctx.kube.patches, "a live resource is reconciled (here: its connection is not ready)"


def test_annotation_toggles_are_read_from_kopfs_essences():
    from collection_operator.handlers.collection import _annotations_toggled

    def essence(**annotations: str) -> dict[str, Any]:
        return {"spec": {}, "metadata": {"annotations": annotations}} if annotations else {"spec": {}}

    paused = {collection_step.PAUSED: "true"}
    assert _annotations_toggled(essence(), essence(**paused))
    assert _annotations_toggled(essence(**paused), essence()), "removing the annotation is a toggle too"
    assert not _annotations_toggled(essence(other="x"), essence(other="y"))


def test_a_connection_waits_only_for_resources_that_delete_data_through_it():
    from collection_operator.reconcile.dependents import dependents, waiting_for

    applied = {"appliedGeneration": 1}
    collections = [
        {**body(deletionPolicy="Delete"), "status": applied},
        {**body(deletionPolicy="Retain"), "status": applied},
        {**body(deletionPolicy="Delete"), "status": {}},  # never applied: deletes nothing
    ]
    snapshot = {
        "metadata": {"namespace": "ns", "name": "nightly"},
        "spec": {"deletionPolicy": "Delete"},
        "status": {"connection": "ns/main", "snapshots": [{"name": "s1"}]},
    }
    found = dependents(
        "ns/main",
        collections,
        [snapshot, {**snapshot, "status": {"connection": "ns/other", "snapshots": [{"name": "x"}]}}],
    )
    assert found == [("collectionsnapshots", "ns", "nightly"), ("vectorcollections", "ns", "docs")]
    assert "CollectionSnapshot ns/nightly, VectorCollection ns/docs" in waiting_for(found).message


@pytest.mark.parametrize("state", [State.PAUSED, State.UNMANAGED])
def test_hands_off_keeps_what_still_holds_of_the_last_verdict(state):
    from collection_operator.reconcile.status import conditions_for

    def types(current: list[dict[str, str]]) -> dict[str, str]:
        return {c.type: f"{c.status}/{c.reason}" for c in conditions_for(Verdict(state, state.value), 3, current)}

    stamp = {"lastTransitionTime": "2026-01-01T00:00:00Z", "message": ""}
    ready = {"type": "Ready", "status": "True", "reason": "InSync", **stamp}
    optimizing = {"type": "Ready", "status": "False", "reason": "Optimizing", **stamp}
    stalled = {"type": "Stalled", "status": "True", "reason": "ImmutableFieldChanged", **stamp}
    assert types([ready])["Ready"] == "True/InSync" and types([ready])[state.value] == f"True/{state.value}"
    # Work in progress stops while hands are off: its Ready=False would read InProgress to kstatus forever.
    assert "Ready" not in types([optimizing]) and types([optimizing])["Reconciling"] == "False/Idle"
    assert types([optimizing, stalled])["Stalled"] == "True/ImmutableFieldChanged"


async def test_sweeps_wait_for_handler_work_but_not_forever(ctx):
    await asyncio.wait_for(ctx.quiet(within=10), 1)  # nothing in flight: no wait at all
    order: list[str] = []

    async def handler() -> None:
        with ctx.handling():
            await asyncio.sleep(0.05)
            order.append("handler")

    async def sweep_item() -> None:
        await asyncio.sleep(0)  # the handler has started
        await ctx.quiet(within=10)
        order.append("sweep")

    await asyncio.gather(sweep_item(), handler())
    assert order == ["handler", "sweep"]
    with ctx.handling():  # a handler that never ends delays a sweep by `within`, no more
        await asyncio.wait_for(ctx.quiet(within=0.01), 1)


async def test_connections_declared_in_the_index_are_waited_for(ctx):
    registry = ctx.connections
    await asyncio.wait_for(registry.settled("ns/unknown", 10), 1)  # not declared: no daemon is coming
    registry.declared = {"ns/main": [True]}
    waiting = asyncio.create_task(registry.settled("ns/main", 10))
    await asyncio.sleep(0.01)
    assert not waiting.done(), "a declared connection's first probe is waited for"
    registry.first_probe("ns/main").set()
    await asyncio.wait_for(waiting, 1)


def test_an_index_keeps_what_reconcilers_read_and_drops_the_servers_bookkeeping():
    body = {
        "apiVersion": "qdrant.collection-operator.dev/v1alpha1",
        "kind": "VectorCollection",
        "metadata": {
            "name": "c",
            "namespace": "ns",
            "uid": "u1",
            "generation": 3,
            "annotations": {
                "qdrant.collection-operator.dev/paused": "true",
                "kopf.qdrant.collection-operator.dev/last-handled-configuration": '{"spec": {}}',
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"collectionName": "c"},
        "status": {"phase": "Ready"},
    }
    kept = indexed(body)
    assert kept["metadata"] == {
        "name": "c",
        "namespace": "ns",
        "uid": "u1",
        "generation": 3,
        "annotations": {"qdrant.collection-operator.dev/paused": "true"},
    }
    assert (kept["apiVersion"], kept["kind"], kept["spec"], kept["status"]) == (
        body["apiVersion"],
        body["kind"],
        body["spec"],
        body["status"],
    )
    assert "managedFields" in body["metadata"]  # the body kopf handed over is left as it was
    assert "annotations" not in indexed({"metadata": {"name": "c"}})["metadata"]


async def test_the_internal_entries_gauge_counts_what_the_operator_holds(ctx):
    from prometheus_client import REGISTRY

    from collection_operator import metrics

    metrics.watch_internal_entries(ctx.internal_entries(asyncio.get_running_loop()))

    def entries(holds: str) -> float | None:
        return REGISTRY.get_sample_value("qdrant_operator_internal_entries", {"holds": holds})

    assert entries("resource_locks") == 0
    held = ctx.lock("vectorcollections/ns/a")
    async with held:
        assert entries("resource_locks") == 1
        ctx.statuses.remember("vectorcollections", "u1", {"phase": "Ready"})
        assert entries("status_cache") == 1
        waiting = asyncio.create_task(asyncio.sleep(3600))
        assert entries("asyncio_tasks") >= 2  # this test and the task
        waiting.cancel()
    del held  # the per-resource locks are weak: one nobody holds or waits for is gone
    assert entries("resource_locks") == 0


async def test_a_routine_sweep_spreads_its_collections_over_the_time_it_is_given(ctx, monkeypatch):
    from collection_operator.handlers import connection

    started: list[float] = []

    async def checked(_ctx: Any, body: Any, *_: Any) -> None:
        started.append(asyncio.get_running_loop().time())

    monkeypatch.setattr(connection, "sweep_collection", checked)
    bodies = [{"metadata": {"uid": f"u{i}", "namespace": "ns", "name": f"c{i}"}} for i in range(4)]
    indexes = connection.Indexes({}, {}, {})  # kopf indexes are mappings
    begin = asyncio.get_running_loop().time()
    await connection._sweep(ctx, bodies, indexes, {}, spread=0.4)
    offsets = [t - begin for t in started]
    assert len(offsets) == 4
    assert all(offset >= i * 0.1 - 0.005 for i, offset in enumerate(offsets)), offsets  # never earlier
    started.clear()
    begin = asyncio.get_running_loop().time()
    await connection._sweep(ctx, bodies, indexes, {})  # a re-sweep after an outage: back to back
    assert started[-1] - begin < 0.3, "not spread (the spread sweep's last one started 0.3 s in)"


def test_the_existence_check_picks_out_applied_collections_gone_from_qdrant():
    from collection_operator.reconcile.collection_step import MANAGED, PAUSED, gone_from_qdrant

    applied = {"appliedGeneration": 2, "collectionName": "c", "aliases": ["c-a"]}
    here, moved = {"c", "other"}, {"c-a": "other"}
    assert not gone_from_qdrant({}, applied, here, {"c-a": "c"})
    assert gone_from_qdrant({}, applied, {"other"}, {"c-a": "c"})  # the collection is gone
    assert gone_from_qdrant({}, applied, here, {})  # its alias is gone
    assert gone_from_qdrant({}, applied, here, moved)  # its alias points elsewhere
    assert not gone_from_qdrant({}, {"collectionName": "c"}, set(), {})  # never applied: its handler's business
    assert not gone_from_qdrant({PAUSED: "true"}, applied, set(), {})
    assert not gone_from_qdrant({MANAGED: "false"}, applied, set(), {})


def test_index_functions_run_in_the_event_loop():
    """kopf runs a plain function in its thread pool; every index function of every resource runs before any
    handler may, so at start a sync one costs a thread hop per resource."""
    import inspect

    import collection_operator.handlers.operator  # noqa: F401 - registers every handler

    handlers = kopf.get_default_registry()._indexing.get_all_handlers()
    assert len(handlers) == 5
    assert [h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)] == []


def test_handlers_take_only_indexes_that_exist_as_parameters():
    """kopf passes every index by its name; a parameter for one (default INDEX) must name an index, or a typo
    would run the handler with None."""
    import inspect

    import collection_operator.handlers.operator  # noqa: F401 - registers every handler
    from collection_operator.handlers.adapter import INDEX

    registry = kopf.get_default_registry()
    indexes = {h.id for h in registry._indexing.get_all_handlers()}
    handlers = [*registry._changing.get_all_handlers(), *registry._spawning.get_all_handlers()]
    wanted = {
        (h.fn.__name__, name)
        for h in handlers
        for name, param in inspect.signature(h.fn).parameters.items()
        if param.default is INDEX
    }
    assert {name for _, name in wanted} <= indexes
    assert ("connection_daemon", "collections_by_connection") in wanted  # the parameters are found at all


def shared(**spec: Any) -> FakeConnections:
    """A connection in namespace "platform" that namespace "ns" may use."""
    conn_spec = QdrantConnectionSpec.model_validate(
        {"url": "http://127.0.0.1:6333", "allowedNamespaces": ["*"], **spec}
    )
    return FakeConnections({"platform/main": FakeConnection(namespace="platform", spec=conn_spec)})


def tenant(**spec: Any) -> dict[str, Any]:
    return body(connectionRef={"name": "main", "namespace": "platform"}, **spec)


async def test_a_tenant_adopts_and_deletes_only_where_the_connection_lets_it():
    connections = shared()
    q = connections.running["platform/main"].collections
    await q.create_collection("docs", {"vectors": {"size": 4, "distance": "Dot"}, "metadata": {}})
    q.writes.clear()
    b = tenant(onExisting="Adopt", deletionPolicy="Delete")
    refused = await step(b, connections)
    assert (refused.verdict.state, refused.verdict.reason) == (State.STALLED, "AdoptionNotAllowed")
    assert "QdrantConnection platform/main does not let namespace ns adopt it" in refused.verdict.message
    assert q.writes == [] and not q.collections["docs"]["config"].get("metadata"), "not marked, not changed"
    # Even a resource whose status says it was applied deletes nothing that does not bear its marker.
    applied = Target.of(b, {"appliedGeneration": 1, "collectionName": "docs"})
    assert (await collection_step.delete(applied, connections))[1] == "NotDeleted"
    assert "docs" in q.collections

    allowed = shared(adoption={"namespaces": ["other", "ns"]})
    allowed.running["platform/main"].collections = q
    adopted = await step(b, allowed)
    assert adopted.verdict.reason == "InSync"
    assert (await collection_step.delete(Target.of(b, {}), allowed))[1] == "Deleted"
    assert "docs" not in q.collections


async def test_namespace_prefix_names_the_collection_and_its_aliases_in_qdrant():
    connections = shared(collectionNames={"prefix": "Namespace"})
    q = connections.running["platform/main"].collections
    out = await step(tenant(aliases=["latest"]), connections)
    assert out.verdict.reason == "InSync"
    assert q.writes == ["create ns.docs", "aliases"] and q.aliases == {"ns.latest": "ns.docs"}
    assert out.status.collection_name == "ns.docs" and out.status.aliases == ["ns.latest"]
    assert (await collection_step.delete(Target.of(tenant(), {}), connections))[1] == "Deleted"
    assert q.collections == {}

    too_long = await step(tenant(collectionName="x" * 253), connections)
    assert (too_long.verdict.state, too_long.verdict.reason) == (State.STALLED, "InvalidSpec")
    assert "exceeds 255 characters" in too_long.verdict.message and q.writes[-1] == "delete ns.docs"


async def test_a_prefix_changed_under_an_applied_collection_stalls_without_writes():
    """The field is immutable, but a connection deleted and re-created with another prefix is not an update."""
    connections = shared(collectionNames={"prefix": "Namespace"})
    q = connections.running["platform/main"].collections
    b = tenant()
    b["status"] = {"appliedGeneration": 1, "collectionName": "docs"}
    out = await step(b, connections)
    assert (out.verdict.state, out.verdict.reason) == (State.STALLED, "CollectionNameChanged")
    assert "docs" in out.verdict.message and "ns.docs" in out.verdict.message
    assert out.status.collection_name == "docs" and q.writes == []


async def test_a_prefixed_blue_green_collection_is_versioned_under_its_prefixed_name():
    connections = shared(collectionNames={"prefix": "Namespace"})
    q = connections.running["platform/main"].collections
    out = await step(tenant(changePolicy={"immutable": "BlueGreen"}), connections)
    assert out.verdict.reason == "InSync"
    (physical,) = q.collections
    assert physical.startswith("ns.docs-") and q.aliases == {"ns.docs": physical}
    assert (out.status.collection_name, out.status.physical_collection) == ("ns.docs", physical)
