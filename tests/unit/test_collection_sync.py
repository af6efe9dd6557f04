"""The reconcile loop of a VectorCollection against an in-memory gateway (pure logic, no network)."""

from __future__ import annotations

import copy
from typing import Any

from collection_operator.api import VectorCollectionSpec
from collection_operator.qdrant.errors import AlreadyExists, OutcomeUnknown, Unreachable
from collection_operator.reconcile import mapping
from collection_operator.reconcile.collection_sync import ReindexGate, Target, sync


class FakeQdrant:
    """Keeps collections as Qdrant would report them; records every write."""

    def __init__(self) -> None:
        self.collections: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.writes: list[str] = []
        self.fail_create: Exception | None = None
        self.create_attempts = 0
        self.created_status = "green"

    async def get_collection(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.collections.get(name))

    async def create_collection(self, name: str, body: dict[str, Any]) -> None:
        self.create_attempts += 1
        if name in self.collections:  # as Qdrant: never overwritten
            raise AlreadyExists(f"Collection `{name}` already exists!")
        self.writes.append(f"create {name}")
        self.collections[name] = {
            "status": self.created_status, "points_count": 0, "segments_count": 1,
            "config": {"params": {"vectors": body["vectors"]}, "hnsw_config": body.get("hnsw_config", {"m": 16}),
                       "metadata": body.get("metadata")},
            "payload_schema": {},
        }
        if self.fail_create:
            raise self.fail_create

    async def update_collection(self, name: str, body: dict[str, Any]) -> None:
        self.writes.append(f"update {name} {sorted(body)}")
        config = self.collections[name]["config"]
        config["hnsw_config"] = {**config["hnsw_config"], **body.get("hnsw_config", {})}
        if "hnsw_config" in body:
            self.collections[name]["status"] = "yellow"  # re-indexing
        if "metadata" in body:
            config["metadata"] = {**(config.get("metadata") or {}), **body["metadata"]}

    async def delete_collection(self, name: str) -> None:
        self.collections.pop(name, None)

    async def create_payload_index(self, name: str, field: str, schema: dict[str, Any]) -> None:
        self.writes.append(f"index {name} {field}")
        self.collections[name]["payload_schema"][field] = {"data_type": schema["type"], "params": schema}

    async def delete_payload_index(self, name: str, field: str) -> None:
        self.writes.append(f"unindex {name} {field}")
        self.collections[name]["payload_schema"].pop(field, None)

    async def list_aliases(self) -> dict[str, str]:
        return dict(self.aliases)

    async def update_aliases(self, actions: list[dict[str, Any]]) -> None:
        self.writes.append("aliases")
        for action in actions:
            if "create_alias" in action:
                self.aliases[action["create_alias"]["alias_name"]] = action["create_alias"]["collection_name"]


def spec(**fields: Any) -> VectorCollectionSpec:
    return VectorCollectionSpec.model_validate(
        {"connectionRef": {"name": "main"}, "vectors": [{"size": 4, "distance": "Dot"}], **fields}
    )


def target(name: str = "docs", uid: str = "u1", generation: int = 1, status: dict[str, Any] | None = None) -> Target:
    return Target("ns", name, uid, generation, "ns/main", status or {})


async def run(q: FakeQdrant, s: VectorCollectionSpec, t: Target, gate: ReindexGate | None = None,
              alive: tuple[str, ...] = ()):
    return await sync(q, s, t, gate or ReindexGate(), owner_alive=lambda m: m.rsplit("/", 1)[-1] in alive)


async def test_create_then_nothing_to_do():
    q = FakeQdrant()
    first = await run(q, spec(payloadIndexes=[{"field": "k", "type": "Keyword"}], aliases=["a"]), target())
    assert first.verdict.reason == "InSync" and first.reconciled
    assert q.writes == ["create docs", "index docs k", "aliases"]
    assert [e[1] for e in first.events] == ["Created"]
    status = {"observedGeneration": 1, **first.status}
    q.writes.clear()
    again = await run(q, spec(payloadIndexes=[{"field": "k", "type": "Keyword"}], aliases=["a"]), target(status=status))
    assert q.writes == [] and again.events == [] and again.qdrant_writes == 0


async def test_lost_create_reply_is_resolved_by_the_marker():
    q = FakeQdrant()
    q.fail_create = OutcomeUnknown("read timed out")
    outcome = await run(q, spec(), target())
    assert outcome.verdict.reason == "InSync"
    assert q.writes == ["create docs"]


async def test_a_new_resource_creates_without_looking_first_and_never_overwrites():
    q = FakeQdrant()
    await run(q, spec(hnsw={"m": 8}), target("first", uid="u1"))
    reads: list[str] = []
    original = q.get_collection

    async def counted(name: str) -> dict[str, Any] | None:
        reads.append(name)
        return await original(name)

    q.get_collection = counted  # type: ignore[method-assign]
    await run(q, spec(collectionName="new"), target("new", uid="u2"))
    assert reads == ["new"]  # once, after the create, for status
    refused = await run(q, spec(collectionName="first", hnsw={"m": 32}), target("other", uid="u3"))
    assert refused.verdict.reason == "AlreadyExists"
    assert q.collections["first"]["config"]["hnsw_config"]["m"] == 8


async def test_reindexing_changes_go_one_at_a_time_per_connection():
    q, gate = FakeQdrant(), ReindexGate()
    for name in ("a", "b"):
        await run(q, spec(collectionName=name), target(name, uid=name), gate)
    status = {"observedGeneration": 1}
    first = await run(q, spec(collectionName="a", hnsw={"m": 32}), target("a", "a", 2, status), gate)
    assert first.verdict.reason == "Optimizing" and first.requeue_after  # Qdrant is yellow now
    second = await run(q, spec(collectionName="b", hnsw={"m": 32}), target("b", "b", 2, status), gate)
    assert second.verdict.reason == "Optimizing" and "in flight (ns/a)" in second.verdict.message
    assert q.collections["b"]["config"]["hnsw_config"]["m"] == 16  # held back
    q.collections["a"]["status"] = "green"
    assert (await run(q, spec(collectionName="a", hnsw={"m": 32}), target("a", "a", 2, status), gate)).reconciled
    assert gate.holder is None
    await run(q, spec(collectionName="b", hnsw={"m": 32}), target("b", "b", 2, status), gate)
    assert q.collections["b"]["config"]["hnsw_config"]["m"] == 32


async def test_report_policy_does_not_recreate_a_deleted_collection():
    q = FakeQdrant()
    outcome = await run(q, spec(driftPolicy="Report"), target(status={"observedGeneration": 1}))
    assert outcome.verdict.state == "Stalled" and outcome.verdict.reason == "CollectionMissing"
    assert q.writes == []


async def test_recreated_under_enforce_with_a_warning():
    q = FakeQdrant()
    outcome = await run(q, spec(), target(status={"observedGeneration": 1}))
    assert q.writes == ["create docs"]
    assert outcome.events[0][:2] == ("Warning", "Recreated")


async def test_conflict_only_while_the_owner_lives():
    q = FakeQdrant()
    await run(q, spec(), target("first", uid="u1"))
    conflict = await run(q, spec(collectionName="first", onExisting="Adopt"), target("second", uid="u2"), alive=("u1",))
    assert conflict.verdict.reason == "ResourceConflict" and "ns/first" in conflict.verdict.message
    refused = await run(q, spec(collectionName="first"), target("second", uid="u2"))
    assert refused.verdict.reason == "AlreadyExists"
    adopted = await run(q, spec(collectionName="first", onExisting="Adopt"), target("second", uid="u2"))
    assert adopted.verdict.reason == "InSync"
    assert q.collections["first"]["config"]["metadata"][mapping.OWNER_KEY] == "ns/second/u2"


async def test_unreachable_is_connection_not_ready_and_requeued():
    class Down(FakeQdrant):
        async def get_collection(self, name: str) -> dict[str, Any] | None:
            raise Unreachable("connection refused")

    outcome = await run(Down(), spec(), target())
    assert (outcome.verdict.reason, outcome.requeue_after) == ("ConnectionNotReady", 10.0)
    assert not outcome.reconciled


async def test_a_collection_still_optimizing_after_create_is_not_created_again():
    q = FakeQdrant()
    q.created_status = "yellow"  # Qdrant still building what the create asked for
    first = await run(q, spec(), target())
    assert first.verdict.reason == "Optimizing" and not first.reconciled
    q.collections["docs"]["status"] = "green"
    second = await run(q, spec(), target(status=first.status))
    assert second.verdict.reason == "InSync"
    assert q.create_attempts == 1
