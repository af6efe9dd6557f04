"""The floor under bench/throughput.py: the least any operator does for a VectorCollection applied to
Kubernetes, without kopf and without a single check. One watch on a namespace's VectorCollections; for each
new one, its collection created with a bare qdrant-client on its connection's server (CONCURRENCY creates in
flight per server, as the operator's gate allows), then one status patch saying Ready. It runs as its own
process, as the operator does:

    python -m bench.floor NAMESPACE URL [URL ...]    # connection q0 is the first URL, q1 the second ...

Its throughput over the bare client's is the most an operator can reach on the same machine: every object
costs the API server and etcd their share of the same cores (the create, the watch events, the status write)
before any operator code runs. Not a product: no retries, no ownership, no drift; a benchmark fixture.

`python -m bench.floor --kopf NAMESPACE URL ...` does the same work as a kopf operator with one create handler
(the status through kopf's patch, kopf's settings as the operator sets them): the floor of an operator built on
kopf, between the bare floor and this operator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio import client, config, watch
from qdrant_client import AsyncQdrantClient

from bench.kube import CONCURRENCY, PLURAL, create_bare
from collection_operator.api import GROUP, VERSION

READY_LINE = "floor: watching"
tasks: set[asyncio.Task[None]] = set()  # the reconciles in flight (asyncio keeps only weak references)


async def _serve(namespace: str, urls: list[str]) -> None:
    await config.load_kube_config(config_file=os.environ["KUBECONFIG"])
    qdrants, slots = _qdrants(urls)
    async with client.ApiClient() as api_client:
        api = client.CustomObjectsApi(api_client)

        async def reconcile(obj: dict[str, Any]) -> None:
            spec, name = obj["spec"], obj["metadata"]["name"]
            connection = spec["connectionRef"]["name"]
            async with slots[connection]:
                await create_bare(qdrants[connection], spec["collectionName"])
            await api.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": {"conditions": [_ready_condition()]}},
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


def _qdrants(urls: list[str]) -> tuple[dict[str, AsyncQdrantClient], dict[str, asyncio.Semaphore]]:
    """A bare client per connection (q0 for the first URL ...) and its CONCURRENCY create slots."""
    qdrants = {f"q{i}": AsyncQdrantClient(url=url, check_compatibility=False) for i, url in enumerate(urls)}
    return qdrants, {name: asyncio.Semaphore(CONCURRENCY) for name in qdrants}


def _ready_condition() -> dict[str, str]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": "Ready", "status": "True", "reason": "InSync", "message": "", "lastTransitionTime": now}


def _kopf(namespace: str, urls: list[str]) -> None:
    @kopf.on.startup()
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        settings.posting.level = logging.WARNING  # as handlers/operator.py sets them
        settings.watching.server_timeout = 300
        settings.persistence.consistency_timeout = 30.0
        memo.qdrants, memo.slots = _qdrants(urls)
        print(READY_LINE, flush=True)

    @kopf.on.create(GROUP, VERSION, PLURAL)
    async def create(spec: kopf.Spec, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
        connection = spec["connectionRef"]["name"]
        async with memo.slots[connection]:
            await create_bare(memo.qdrants[connection], spec["collectionName"])
        patch.status["conditions"] = [_ready_condition()]

    kopf.configure(verbose=False)
    asyncio.run(kopf.operator(namespaces=[namespace], standalone=True))


if __name__ == "__main__":
    if sys.argv[1] == "--kopf":
        _kopf(sys.argv[2], sys.argv[3:])
    else:
        asyncio.run(_serve(sys.argv[1], sys.argv[2:]))
