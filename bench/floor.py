"""The floor under bench/throughput.py: the least any operator does for a VectorCollection applied to
Kubernetes, without kopf and without a single check. One watch on a namespace's VectorCollections; for each
new one, its collection created with a bare qdrant-client on its connection's server (CONCURRENCY creates in
flight per server, as the operator's gate allows), then one status patch saying Ready. It runs as its own
process, as the operator does:

    python -m bench.floor NAMESPACE URL [URL ...]    # connection q0 is the first URL, q1 the second ...

Its throughput over the bare client's is the most an operator can reach on the same machine: every object
costs the API server and etcd their share of the same cores (the create, the watch events, the status write)
before any operator code runs. Not a product: no retries, no ownership, no drift; a benchmark fixture.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config, watch
from qdrant_client import AsyncQdrantClient, models

from bench.kube import BARE_BODY, CONCURRENCY, PLURAL
from collection_operator.api import GROUP, VERSION

READY_LINE = "floor: watching"
tasks: set[asyncio.Task[None]] = set()  # the reconciles in flight (asyncio keeps only weak references)


async def _serve(namespace: str, urls: list[str]) -> None:
    await config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    qdrants = {f"q{i}": AsyncQdrantClient(url=url, check_compatibility=False) for i, url in enumerate(urls)}
    slots = {name: asyncio.Semaphore(CONCURRENCY) for name in qdrants}
    async with client.ApiClient() as api_client:
        api = client.CustomObjectsApi(api_client)

        async def reconcile(obj: dict[str, Any]) -> None:
            spec, name = obj["spec"], obj["metadata"]["name"]
            connection = spec["connectionRef"]["name"]
            async with slots[connection]:  # the same body and hnsw setting as the bare client sends
                await qdrants[connection].create_collection(
                    spec["collectionName"],
                    vectors_config=BARE_BODY,
                    hnsw_config=models.HnswConfigDiff(ef_construct=100),
                )
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            ready = {"type": "Ready", "status": "True", "reason": "InSync", "message": "", "lastTransitionTime": now}
            await api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": {"conditions": [ready]}},
                _content_type="application/merge-patch+json",
            )

        print(READY_LINE, flush=True)
        async with watch.Watch() as stream:
            async for event in stream.stream(
                api.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, timeout_seconds=3600
            ):
                conditions = (event["object"].get("status") or {}).get("conditions")  # the CRD defaults a status
                if event["type"] == "ADDED" and not conditions:
                    task = asyncio.create_task(reconcile(event["object"]))
                    tasks.add(task)
                    task.add_done_callback(_done)


def _done(task: asyncio.Task[None]) -> None:
    tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        print(f"floor: {task.exception()!r}", flush=True)  # the bulk then waits in vain: say why


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2:]))
