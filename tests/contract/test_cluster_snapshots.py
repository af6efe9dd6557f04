"""Snapshots of a distributed collection on the 3-node real Qdrant cluster: the facts the operator's
CollectionSnapshot relies on (docs/snapshots.md, "Distributed Qdrant").

- a collection snapshot holds the shards of the node that takes it, nothing else, and lives on that node;
- recovering such a snapshot into a new collection answers 200 and silently holds only those shards;
- a shard snapshot can be taken only through a node that holds the shard;
- a node holding every shard (replication factor = peers) takes a complete snapshot, and recovering it
  through that node into a new collection gives back every point with its vector;
- a shard snapshot recovers only into the same shard of a collection that exists (404 otherwise), and
  recovered through one replica it is copied to the shard's other replicas.
"""

from __future__ import annotations

import io
import random
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devenv.qdrant_real import Node
from tests.contract.conftest import wait_until

POINTS = 5000
DIM = 8


@pytest.fixture
def names(qdrant_cluster: list[Node]) -> Iterator[list[str]]:
    """Collections the test creates (append to the list); every one is deleted afterwards."""
    created: list[str] = []
    yield created
    for name in created:
        httpx.delete(f"{qdrant_cluster[0].url}/collections/{name}", timeout=60)


def call(node: Node, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{node.url}{path}", timeout=300, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()["result"]


def vectors() -> dict[int, list[float]]:
    rng = random.Random(11)
    return {i: [round(rng.uniform(-1, 1), 4) for _ in range(DIM)] for i in range(POINTS)}


def create(nodes: list[Node], name: str, replication_factor: int) -> None:
    body = {"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 3, "replication_factor": replication_factor}
    call(nodes[0], "PUT", f"/collections/{name}", json=body)
    wait_until(lambda: all_active(nodes, name), 60, f"every replica of {name} Active")


def fill(node: Node, name: str, data: dict[int, list[float]]) -> None:
    for start in range(0, POINTS, 1000):
        batch = [{"id": i, "vector": data[i], "payload": {"n": i}} for i in range(start, start + 1000)]
        call(node, "PUT", f"/collections/{name}/points?wait=true", json={"points": batch})


def view(node: Node, name: str) -> dict[str, Any]:
    result: dict[str, Any] = call(node, "GET", f"/collections/{name}/cluster")
    return result


def all_active(nodes: list[Node], name: str) -> bool:
    states = set()
    for node in nodes:
        info = view(node, name)
        states |= {s["state"] for s in info["local_shards"] + info["remote_shards"]}
    return states == {"Active"}


def local_points(nodes: list[Node], name: str) -> dict[int, dict[str, int]]:
    """{shard: {peer: points}} as every node counts its own replicas."""
    found: dict[int, dict[str, int]] = {}
    for node in nodes:
        info = view(node, name)
        for shard in info["local_shards"]:
            found.setdefault(shard["shard_id"], {})[str(info["peer_id"])] = shard["points_count"]
    return found


def count(node: Node, name: str) -> int:
    return int(call(node, "POST", f"/collections/{name}/points/count", json={"exact": True})["count"])


def settled_count(node: Node, name: str) -> int | None:
    """The exact point count, or None while the node answers 500 for a shard of a just recovered collection it
    has not set up yet ("Local shard 0 not found", seen on a loaded machine); any other failure fails."""
    response = httpx.post(f"{node.url}/collections/{name}/points/count", json={"exact": True}, timeout=300)
    if response.status_code == 500 and "not found" in response.text:
        return None
    assert response.status_code < 300, f"count {name}: {response.status_code} {response.text}"
    return int(response.json()["result"]["count"])


def scroll(node: Node, name: str) -> dict[int, list[float]]:
    found: dict[int, list[float]] = {}
    offset = None
    while True:
        body: dict[str, Any] = {
            "limit": 1000,
            "with_vector": True,
            **({"offset": offset} if offset is not None else {}),
        }
        page = call(node, "POST", f"/collections/{name}/points/scroll", json=body)
        found.update({p["id"]: p["vector"] for p in page["points"]})
        if (offset := page.get("next_page_offset")) is None:
            return found


def same(found: dict[int, list[float]], expected: dict[int, list[float]]) -> bool:
    return found.keys() == expected.keys() and all(
        all(abs(a - b) < 1e-6 for a, b in zip(found[i], expected[i], strict=True)) for i in expected
    )


def shards_with_data(node: Node, name: str, snapshot: str) -> list[int]:
    """Shard directories of a collection snapshot that hold segments."""
    data = httpx.get(f"{node.url}/collections/{name}/snapshots/{snapshot}", timeout=60).content
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getnames()
    return sorted({int(m.split("/")[0]) for m in members if "/segments/" in m and m.split("/")[0].isdigit()})


def test_collection_snapshot_holds_only_the_local_shards_and_its_recovery_silently_loses_the_rest(
    qdrant_cluster: list[Node], names: list[str]
) -> None:
    source, restored = f"snap-{uuid.uuid4().hex[:8]}", f"restored-{uuid.uuid4().hex[:8]}"
    names += [source, restored]
    data = vectors()
    create(qdrant_cluster, source, replication_factor=1)
    fill(qdrant_cluster[0], source, data)
    node = qdrant_cluster[0]
    info = view(node, source)
    local = sorted(s["shard_id"] for s in info["local_shards"])
    per_shard = {shard: next(iter(peers.values())) for shard, peers in local_points(qdrant_cluster, source).items()}
    assert len(local) == 1 and sum(per_shard.values()) == POINTS  # one shard per node at factor 1

    snapshot = call(node, "POST", f"/collections/{source}/snapshots?wait=true")["name"]
    assert snapshot.startswith(f"{source}-{info['peer_id']}-")  # the taking node's peer id is in the name
    assert shards_with_data(node, source, snapshot) == local  # only the node's own shard has data
    other = qdrant_cluster[1]
    assert httpx.get(f"{other.url}/collections/{source}/snapshots/{snapshot}", timeout=10).status_code == 404

    location = f"{node.url}/collections/{source}/snapshots/{snapshot}"
    assert call(node, "PUT", f"/collections/{restored}/snapshots/recover?wait=true", json={"location": location})
    config = call(node, "GET", f"/collections/{restored}")["config"]["params"]
    assert (config["shard_number"], config["replication_factor"]) == (3, 1)
    held = per_shard[local[0]]
    assert held < POINTS
    wait_until(lambda: settled_count(node, restored) == held, 30, "the recovered shard's points")
    found = scroll(node, restored)  # silently partial: only the snapshot node's shard came back
    assert len(found) == held and same(found, {i: data[i] for i in found})


def test_shard_snapshot_only_through_a_node_holding_the_shard(qdrant_cluster: list[Node], names: list[str]) -> None:
    source = f"snap-{uuid.uuid4().hex[:8]}"
    names.append(source)
    create(qdrant_cluster, source, replication_factor=2)
    fill(qdrant_cluster[0], source, vectors())
    info = view(qdrant_cluster[0], source)
    local = {s["shard_id"] for s in info["local_shards"]}
    assert len(local) == 2  # factor 2 over 3 nodes: each node misses one shard
    (missing,) = {s["shard_id"] for s in info["remote_shards"]} - local
    response = httpx.post(
        f"{qdrant_cluster[0].url}/collections/{source}/shards/{missing}/snapshots?wait=true", timeout=60
    )
    assert response.status_code == 400
    assert f"Shard {missing} is not a local or queue proxy shard" in response.text
    for shard in local:
        assert call(qdrant_cluster[0], "POST", f"/collections/{source}/shards/{shard}/snapshots?wait=true")["name"]
    snapshot = call(qdrant_cluster[0], "POST", f"/collections/{source}/snapshots?wait=true")["name"]
    assert shards_with_data(qdrant_cluster[0], source, snapshot) == sorted(local)  # 2 of 3 shards


def test_a_node_holding_every_shard_takes_a_complete_snapshot_that_recovers_point_by_point(
    qdrant_cluster: list[Node], names: list[str]
) -> None:
    source, restored = f"snap-{uuid.uuid4().hex[:8]}", f"restored-{uuid.uuid4().hex[:8]}"
    names += [source, restored]
    data = vectors()
    create(qdrant_cluster, source, replication_factor=3)
    fill(qdrant_cluster[1], source, data)
    node = qdrant_cluster[0]
    assert sorted(s["shard_id"] for s in view(node, source)["local_shards"]) == [0, 1, 2]

    snapshot = call(node, "POST", f"/collections/{source}/snapshots?wait=true")["name"]
    assert shards_with_data(node, source, snapshot) == [0, 1, 2]
    location = f"{node.url}/collections/{source}/snapshots/{snapshot}"
    assert call(node, "PUT", f"/collections/{restored}/snapshots/recover?wait=true", json={"location": location})

    wait_until(lambda: all_active(qdrant_cluster, restored), 120, "every replica of the restored collection Active")
    source_shards = {shard: set(peers.values()) for shard, peers in local_points(qdrant_cluster, source).items()}
    restored_shards = local_points(qdrant_cluster, restored)
    assert {shard: set(peers.values()) for shard, peers in restored_shards.items()} == source_shards
    assert all(len(peers) == 3 for peers in restored_shards.values())  # each shard back on all three nodes
    for other in qdrant_cluster:
        assert count(other, restored) == POINTS
        assert same(scroll(other, restored), data)


def node_of(nodes: list[Node], peer: str) -> Node:
    """The node whose own GET /cluster names it `peer` (the peers' URIs there are p2p addresses, not REST URLs)."""
    return next(n for n in nodes if str(call(n, "GET", "/cluster")["peer_id"]) == peer)


def test_a_shard_recovers_only_into_the_same_shard_of_an_existing_collection(
    qdrant_cluster: list[Node], names: list[str]
) -> None:
    source, two = f"snap-{uuid.uuid4().hex[:8]}", f"two-{uuid.uuid4().hex[:8]}"
    names += [source, two]
    create(qdrant_cluster, source, replication_factor=1)
    fill(qdrant_cluster[0], source, vectors())
    holder = node_of(qdrant_cluster, next(iter(local_points(qdrant_cluster, source)[2])))
    snapshot = call(holder, "POST", f"/collections/{source}/shards/2/snapshots?wait=true")["name"]
    location = {"location": f"{holder.url}/collections/{source}/shards/2/snapshots/{snapshot}"}
    missing = httpx.put(f"{holder.url}/collections/{two}/shards/2/snapshots/recover", json=location, timeout=60)
    assert missing.status_code == 404 and "doesn't exist" in missing.text, missing.text  # no collection: no shard
    body = {"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2, "replication_factor": 1}
    call(qdrant_cluster[0], "PUT", f"/collections/{two}", json=body)
    wait_until(lambda: all_active(qdrant_cluster, two), 60, f"every replica of {two} Active")
    fewer = httpx.put(f"{holder.url}/collections/{two}/shards/2/snapshots/recover", json=location, timeout=60)
    assert fewer.status_code == 404 and "shard 2 not found" in fewer.text, fewer.text  # 2 shards: there is no shard 2


def test_a_shard_recovered_on_one_replica_is_copied_to_the_others(qdrant_cluster: list[Node], names: list[str]) -> None:
    """Recovering through one replica (priority `snapshot`, the default) marks the shard's other replicas Dead
    (lib's recover_shard_snapshot_impl) and Qdrant then copies the recovered replica to them: every replica ends
    Active with the snapshot's points."""
    source, target = f"snap-{uuid.uuid4().hex[:8]}", f"target-{uuid.uuid4().hex[:8]}"
    names += [source, target]
    create(qdrant_cluster, source, replication_factor=1)
    fill(qdrant_cluster[0], source, vectors())
    ((peer, held),) = local_points(qdrant_cluster, source)[0].items()
    holder = node_of(qdrant_cluster, peer)
    snapshot = call(holder, "POST", f"/collections/{source}/shards/0/snapshots?wait=true")
    create(qdrant_cluster, target, replication_factor=2)
    (recovering, *others) = local_points(qdrant_cluster, target)[0]
    location = f"{holder.url}/collections/{source}/shards/0/snapshots/{snapshot['name']}"
    recover = {"location": location, "checksum": snapshot["checksum"]}
    assert call(
        node_of(qdrant_cluster, recovering), "PUT", f"/collections/{target}/shards/0/snapshots/recover", json=recover
    )

    def replicas_settled() -> bool:
        return all_active(qdrant_cluster, target) and set(local_points(qdrant_cluster, target)[0].values()) == {held}

    wait_until(replicas_settled, 120, "both replicas of shard 0 Active with the snapshot's points")
    assert len(others) == 1 and set(local_points(qdrant_cluster, target)[0]) == {recovering, *others}
