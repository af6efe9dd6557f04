"""Plans, approval and blue/green migrations against the in-memory Qdrant of tests/fakes.py (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from collection_operator.api import VectorCollectionSpec
from collection_operator.reconcile import bluegreen
from collection_operator.reconcile.bluegreen import CopyPace, physical_name, sync_blue_green
from collection_operator.reconcile.collection import Difference, plan_hash
from collection_operator.reconcile.collection_sync import sync
from collection_operator.reconcile.gates import ConnectionGate
from collection_operator.reconcile.mapping import OWNER_KEY
from collection_operator.reconcile.outcome import State
from collection_operator.reconcile.target import APPROVE_PLAN, Target
from tests.builders import collection_spec
from tests.fakes import FakeQdrant


def spec(**fields: Any) -> VectorCollectionSpec:
    return VectorCollectionSpec.model_validate(collection_spec(changePolicy={"immutable": "BlueGreen"}) | fields)


class Resource:
    """A VectorCollection whose status accumulates as the operator's merge patches would leave it."""

    def __init__(self, q: FakeQdrant, s: VectorCollectionSpec, gate: ConnectionGate | None = None) -> None:
        self.q, self.spec, self.gate = q, s, gate or ConnectionGate()
        self.status: dict[str, Any] = {}
        self.generation = 1
        self.approved: str | None = None
        self.events: list[str] = []
        self.pace = CopyPace()

    def change(self, **fields: Any) -> None:
        self.spec = spec(**fields)
        self.generation += 1

    async def reconcile(self) -> Any:
        approval = {APPROVE_PLAN: self.approved} if self.approved else {}
        t = Target(
            "ns", "docs", "u1", self.generation, {"connectionRef": {"name": "main"}}, dict(self.status), approval
        )
        run = sync_blue_green if self.status.get("physicalCollection") or _blue(self.spec) else sync
        if run is sync:
            outcome = await sync(self.q, self.spec, t, self.gate, owner_alive=lambda m: True)
        else:
            outcome = await sync_blue_green(self.q, self.spec, t, self.gate, lambda m: True, pace=self.pace)
        for key, value in outcome.status.to_patch().items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value
        if outcome.reconciled:
            self.status["appliedGeneration"] = self.generation
        self.events += [e[1] for e in outcome.events]
        return outcome

    async def settle(self, limit: int = 200) -> Any:
        """Reconcile until the operator stops asking to run again soon (a migration's copy requeues)."""
        for _ in range(limit):
            outcome = await self.reconcile()
            if outcome.verdict.reason not in ("Migrating", "Switched"):
                return outcome
        raise AssertionError("the migration never settled")


def _blue(s: VectorCollectionSpec) -> bool:
    return s.change_policy.immutable == "BlueGreen"


POINTS = {i: {"vector": [float(i), 1.0, 0.0, 0.0], "payload": {"n": i}} for i in range(1, 1001)}


def test_the_physical_name_covers_only_what_qdrant_cannot_change():
    assert physical_name(spec(), "docs") == physical_name(spec(hnsw={"m": 32}, aliases=["a"]), "docs")
    assert physical_name(spec(), "docs") != physical_name(spec(shardNumber=2), "docs")
    assert physical_name(spec(), "docs") != physical_name(spec(vectors=[{"size": 8, "distance": "Dot"}]), "docs")
    assert physical_name(spec(), "docs").startswith("docs-") and len(physical_name(spec(), "docs")) == 13


@pytest.mark.parametrize(
    ("differences", "mode"),
    [
        ([Difference("shardNumber", 2, 1)], "Copy"),
        ([Difference("vectors[].distance", "Cosine", "Dot")], "Copy"),
        ([Difference("vectors", ["a", "b"], ["a"])], "Copy"),
        ([Difference("vectors[].size", 8, 4)], "Reembed"),
        ([Difference("vectors[t].multivector", {"comparator": "max_sim"}, None)], "Reembed"),
        ([Difference("vectors", ["a"], [""])], "Reembed"),
        ([Difference("shardingMethod", "custom", "auto")], "Reembed"),
    ],
)
def test_which_changes_copy_and_which_wait_for_reembedding(differences, mode):
    assert bluegreen.mode_of(differences) == mode


async def test_a_new_resource_is_created_behind_its_alias():
    q = FakeQdrant()
    r = Resource(q, spec(aliases=["docs-current"]))
    outcome = await r.settle()
    physical = physical_name(r.spec, "docs")
    assert outcome.verdict.reason == "InSync" and outcome.reconciled
    assert list(q.collections) == [physical]
    assert q.aliases == {"docs": physical, "docs-current": physical}
    assert r.status["physicalCollection"] == physical and r.status["collectionName"] == "docs"


async def test_shard_number_change_copies_switches_and_rolls_back_within_the_window():
    q = FakeQdrant()
    r = Resource(q, spec(aliases=["docs-current"]))
    r.pace = CopyPace(page_points=300, seconds=0.0)  # one page per reconcile: progress is visible
    await r.settle()
    blue = r.status["physicalCollection"]
    q.put_points(blue, POINTS)

    r.change(aliases=["docs-current"], shardNumber=2)
    first = await r.reconcile()
    green = physical_name(r.spec, "docs")
    assert first.verdict.reason == "Migrating" and q.aliases["docs"] == blue, "the name stays until the switch"
    assert r.status["plan"]["migration"] == "Copy" and r.status["plan"]["phase"] == "Applying"
    assert r.status["migration"]["resumeFrom"] == "301" and r.status["migration"]["copiedPoints"] == 300
    # Writes mid-copy, behind the cursor (points 1 and 2 are copied already) and ahead of it.
    q.put_points(blue, {1: {"vector": [9.0, 1.0, 0.0, 0.0], "payload": {"n": 1, "edited": True}}})
    del q.points[blue][2]
    q.put_points(blue, {5000: {"vector": [1.0, 0.0, 0.0, 0.0], "payload": {"late": True}}})
    outcome = await r.settle()
    assert outcome.verdict.reason == "InSync", outcome.verdict
    assert q.aliases == {"docs": green, "docs-current": green}
    assert q.points[green] == q.points[blue] and len(q.points[green]) == 1000, "the catch-up pass carried them"
    assert r.status["previousCollection"] == blue and r.status["rollbackUntil"]
    assert q.collections[green]["config"]["params"]["shard_number"] == 2
    assert {"MigrationStarted", "Switched"} <= set(r.events)

    copies = [w for w in q.writes if w.startswith("copy")]
    r.change(aliases=["docs-current"], shardNumber=1)  # reverted within the window (a field left out is not enforced)
    outcome = await r.settle()
    assert q.aliases == {"docs": blue, "docs-current": blue} and "RolledBack" in r.events
    assert [w for w in q.writes if w.startswith("copy")] == copies, "a rollback copies nothing"
    assert r.status["previousCollection"] == green
    assert r.status["plan"]["migration"] == "Rollback", "status.plan shows the rollback (docs/blue-green.md)"

    r.status["rollbackUntil"] = "2000-01-01T00:00:00Z"  # the window is over
    await r.settle()
    assert green not in q.collections and "PreviousDeleted" in r.events
    assert "previousCollection" not in r.status and blue in q.collections


async def test_a_restarted_operator_resumes_where_the_status_says():
    q = FakeQdrant()
    r = Resource(q, spec())
    r.pace = CopyPace(page_points=100, seconds=0.0)
    await r.settle()
    q.put_points(r.status["physicalCollection"], POINTS)
    r.change(shardNumber=3)
    for _ in range(4):
        await r.reconcile()
    assert r.status["migration"]["resumeFrom"] == "401"
    restarted = Resource(q, r.spec, ConnectionGate())  # a new process: only the status survives
    restarted.status, restarted.generation, restarted.pace = dict(r.status), r.generation, r.pace
    await restarted.settle()
    copied = sum(int(w.split()[-1]) for w in q.writes if w.startswith("copy") and w.split()[-1] != "0")
    assert copied == 1000, "no page of the first pass was copied twice"


async def test_vector_size_change_waits_for_reembedding_then_switches_on_count():
    q = FakeQdrant()
    r = Resource(q, spec())
    await r.settle()
    blue = r.status["physicalCollection"]
    q.put_points(blue, dict(list(POINTS.items())[:10]))
    r.change(vectors=[{"size": 8, "distance": "Dot"}])
    outcome = await r.reconcile()
    green = physical_name(r.spec, "docs")
    assert outcome.verdict.reason == "AwaitingReembedding" and green in outcome.verdict.message
    assert q.aliases["docs"] == blue and q.points.get(green, {}) == {}
    q.put_points(green, {i: {"vector": [0.0] * 8, "payload": {}} for i in range(10)})  # the pipeline's work
    await r.settle()
    assert q.aliases["docs"] == green and "Switched" in r.events


async def test_reembedding_switch_can_be_approved_early():
    q = FakeQdrant()
    r = Resource(q, spec())
    await r.settle()
    q.put_points(r.status["physicalCollection"], dict(list(POINTS.items())[:10]))
    r.change(vectors=[{"size": 8, "distance": "Dot"}])
    await r.reconcile()
    switch_hash = r.status["plan"]["hash"]
    assert r.status["plan"]["phase"] == "AwaitingApproval"
    r.approved = switch_hash
    await r.settle()
    assert q.aliases["docs"] == physical_name(r.spec, "docs")


async def test_manual_approval_holds_a_reindex_until_the_annotation_names_its_hash():
    q = FakeQdrant()
    manual = {"changePolicy": {"approval": "Manual"}}
    r = Resource(q, spec(**manual, hnsw={"m": 16}))
    assert (await r.settle()).verdict.reason == "InSync", "a create needs no approval"
    writes = list(q.writes)
    r.change(**manual, hnsw={"m": 32})
    held = await r.reconcile()
    plan = r.status["plan"]
    assert held.verdict.reason == "AwaitingApproval" and plan["hash"] in held.verdict.message
    assert plan["phase"] == "AwaitingApproval" and plan["reindex"] and plan["actions"] == ["set hnsw.m: 16 -> 32"]
    assert q.writes == writes and r.events[-1] == "PlanAwaitingApproval"
    await r.reconcile()
    assert r.events.count("PlanAwaitingApproval") == 1, "one Event per plan, not per reconcile"
    r.approved = "0" * 12
    assert (await r.reconcile()).verdict.reason == "AwaitingApproval", "another hash approves nothing"
    r.approved = plan["hash"]
    await r.reconcile()
    assert q.collections["docs"]["config"]["hnsw_config"]["m"] == 32, "Reject policy: a plain collection"
    assert "PlanApproved" in r.events and r.status["plan"]["phase"] == "Applied"
    r.change(**manual, hnsw={"m": 64})
    assert (await r.reconcile()).verdict.reason == "AwaitingApproval", "an approval never carries to a new plan"


async def test_manual_approval_holds_a_migration_and_the_plan_names_it():
    q = FakeQdrant()
    manual = {"changePolicy": {"approval": "Manual", "immutable": "BlueGreen"}}
    r = Resource(q, spec(**manual))
    await r.settle()
    r.change(**manual, shardNumber=2)
    held = await r.reconcile()
    assert held.verdict.reason == "AwaitingApproval" and r.status["plan"]["migration"] == "Copy"
    assert len(q.collections) == 1
    r.approved = r.status["plan"]["hash"]
    assert (await r.settle()).verdict.reason == "InSync"
    assert q.aliases["docs"] == physical_name(r.spec, "docs")


async def test_a_migration_approved_in_the_same_commit_goes_ahead_and_its_early_switch_still_waits():
    q = FakeQdrant()
    manual = {"changePolicy": {"approval": "Manual", "immutable": "BlueGreen"}}
    r = Resource(q, spec(**manual))
    await r.settle()
    q.put_points(r.status["physicalCollection"], dict(list(POINTS.items())[:10]))
    await r.settle()
    # Before the change is applied: its hash from the manifest's spec and the published live state.
    change = {**manual, "vectors": [{"size": 8, "distance": "Dot"}]}  # a new size: re-embedded
    precomputed = plan_hash("ns/docs", spec(**change), r.status["planBase"])
    r.change(**change)
    r.approved = precomputed
    outcome = await r.reconcile()
    assert outcome.verdict.reason == "AwaitingReembedding" and "MigrationStarted" in r.events
    assert "PlanAwaitingApproval" not in r.events
    switch = r.status["plan"]
    assert switch["phase"] == "AwaitingApproval" and switch["hash"] != precomputed, "approving it was not this"
    assert (await r.reconcile()).verdict.reason == "AwaitingReembedding"


async def test_a_plain_collection_moves_to_the_alias_layout_on_its_first_migration():
    q = FakeQdrant()
    r = Resource(q, spec(changePolicy={"immutable": "Reject"}))
    await r.settle()
    assert list(q.collections) == ["docs"] and not q.aliases
    q.put_points("docs", dict(list(POINTS.items())[:50]))
    r.change(shardNumber=2)
    await r.settle()
    green = physical_name(r.spec, "docs")
    assert q.aliases == {"docs": green} and "docs" not in q.collections and len(q.points[green]) == 50
    assert "NameUnresolved" in r.events and "previousCollection" not in r.status


async def test_reject_stalls_an_immutable_change_even_in_the_alias_layout():
    q = FakeQdrant()
    r = Resource(q, spec())
    await r.settle()
    r.change(changePolicy={"immutable": "Reject"}, shardNumber=2)
    outcome = await r.reconcile()
    assert outcome.verdict.reason == "ImmutableFieldChanged" and len(q.collections) == 1


async def test_a_collection_not_ours_is_never_migrated():
    q = FakeQdrant()
    await q.create_collection("docs", {"vectors": {"size": 4, "distance": "Dot"}, "metadata": {}})
    r = Resource(q, spec(shardNumber=2, onExisting="Adopt"))
    outcome = await r.reconcile()
    assert outcome.verdict.reason == "AlreadyExists" and list(q.collections) == ["docs"]


OTHER = {OWNER_KEY: "other-ns/other/u2"}  # another VectorCollection's owner marker


async def test_a_source_another_resource_owns_stalls_the_migration_before_anything_is_written():
    q = FakeQdrant()
    r = Resource(q, spec(changePolicy={"immutable": "Reject"}))
    await r.settle()
    await q.update_collection("docs", {"metadata": OTHER})
    r.change(shardNumber=2)
    writes = len(q.writes)
    outcome = await r.reconcile()
    assert (outcome.verdict.state, outcome.verdict.reason) == ("Stalled", "OwnedByAnotherResource")
    assert "other-ns/other's" in outcome.verdict.message and outcome.requeue_after is None
    assert q.writes[writes:] == [] and r.gate.holder is None


class MarkedDuringTheCopy(FakeQdrant):
    """Another resource marks the plain source as its own while the copy runs."""

    async def copy_points(self, source: str, *args: Any, **kwargs: Any) -> tuple[int, int, Any]:
        await self.update_collection(source, {"metadata": OTHER})
        return await super().copy_points(source, *args, **kwargs)


async def test_a_source_marked_by_another_resource_during_the_copy_is_never_deleted_and_not_retried():
    q = MarkedDuringTheCopy()
    r = Resource(q, spec(changePolicy={"immutable": "Reject"}))
    await r.settle()
    q.put_points("docs", dict(list(POINTS.items())[:50]))
    r.change(shardNumber=2)
    outcome = await r.reconcile()
    assert (outcome.verdict.state, outcome.verdict.reason) == ("Stalled", "OwnedByAnotherResource")
    assert outcome.requeue_after is None and r.gate.holder is None
    assert "docs" in q.collections and q.aliases == {} and "delete docs" not in q.writes
    assert (await r.reconcile()).verdict == outcome.verdict  # the next look says the same: no retry loop


async def test_the_cost_estimate_counts_the_points_and_the_vectors_re_indexed():
    q = FakeQdrant()
    manual = {"changePolicy": {"approval": "Manual"}}
    named = [{"name": "a", "size": 4, "distance": "Dot"}, {"name": "b", "size": 4, "distance": "Dot"}]
    r = Resource(q, spec(**manual, vectors=named))
    await r.settle()
    q.collections["docs"]["points_count"] = 100
    r.change(**manual, vectors=[{**named[0], "hnsw": {"m": 8}}, named[1]])
    await r.reconcile()
    assert r.status["plan"]["estimatedVectors"] == 100, "one named vector re-indexed"
    r.change(**manual, vectors=named, hnsw={"m": 8})
    await r.reconcile()
    assert r.status["plan"]["estimatedVectors"] == 200, "every vector re-indexed"


async def test_a_reconcile_with_nothing_to_do_reads_the_collection_once():
    q = FakeQdrant()
    r = Resource(q, spec())
    await r.settle()
    q.reads.clear()
    outcome = await r.reconcile()
    assert outcome.verdict.reason == "InSync" and outcome.qdrant_writes == 0
    assert q.reads == ["list_aliases", f"get {r.status['physicalCollection']}"]


async def test_a_name_too_long_for_a_versioned_collection_is_stalled_before_anything_is_written():
    q = FakeQdrant()
    r = Resource(q, spec(collectionName="n" * 250))
    outcome = await r.reconcile()
    assert outcome.verdict.reason == "InvalidSpec" and "exceeds 255" in outcome.verdict.message
    assert q.writes == [] and q.collections == {}


async def test_a_versioned_name_taken_by_another_namespace_is_neither_adopted_nor_aliased():
    """Issue 22: the collection behind the alias is adopted only as a plain one would be."""
    q = FakeQdrant()
    s = spec(onExisting="Adopt")
    await q.create_collection(physical_name(s, "docs"), {"vectors": {"size": 4, "distance": "Dot"}, "metadata": {}})
    q.writes.clear()
    outcome = await Resource(q, s).reconcile()
    assert (outcome.verdict.state, outcome.verdict.reason) == (State.STALLED, "AdoptionNotAllowed")
    assert q.writes == [] and q.aliases == {}
