"""Operator benchmark: what the operator adds to creating a collection, against a bare qdrant-client.

On the local environment: the real control plane (started if it is not running), a Qdrant on a free
loopback port started for this run (the dev server, or with tier "real" the real Qdrant 1.19 build), and
the operator in-process in a thread (as the integration tests run it), watching only a namespace of its
own. Compares, in one run:

1. apply-to-Ready latency p50/p95 of one VectorCollection, created one after another, versus a bare
   qdrant-client creating the same collection; the difference is the operator's overhead;
2. 200 VectorCollections created at once until all are Ready, versus a bare client creating 200 at the
   connection's maxConcurrentOperations.

Where the time goes is read from the API server's audit log (when the create and the operator's status
write arrived) and the operator's own metrics (reconcile and Qdrant call durations). Prints ratios and
writes bench/results/operator.json (operator-real.json for the real tier). It reports; it never asserts timings.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import prometheus_client
from kubernetes_asyncio import client, config
from qdrant_client import AsyncQdrantClient

from bench.client import start_server, write_results
from bench.kube import (
    BARE_BODY,
    CONCURRENCY,
    PLURAL,
    ReadyWatch,
    audit_events,
    collection_body,
    connect,
    control_plane,
    kubectl,
    ms,
    percentile,
)
from collection_operator.api import GROUP, VERSION
from collection_operator.handlers import operator as operator_main
from devenv import controlplane as cp

SEQUENTIAL = 15
BULK = 200


@contextmanager
def operator_in_thread(namespace: str) -> Iterator[None]:
    """The operator in a thread with its own event loop, watching only `namespace`, as its RBAC identity."""
    env = {
        "KUBECONFIG": str(cp.OPERATOR_KUBECONFIG),
        "QDRANT_OPERATOR_METRICS_PORT": "0",
        "QDRANT_OPERATOR_HEALTH_PORT": "0",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=operator_main.main_loop,
        name="operator",
        daemon=True,
        kwargs={"namespaces": [namespace], "stop_flag": stop, "ready_flag": ready},
    )
    thread.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("operator did not start")
        yield
    finally:
        stop.set()
        thread.join(60)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _sequential(
    api: client.CustomObjectsApi, ns: str, ready: ReadyWatch, bare: AsyncQdrantClient, tag: str
) -> tuple[list[float], list[float], list[str]]:
    operator_s, bare_s, names = [], [], []
    for i in range(SEQUENTIAL):
        name = f"one-{i}"
        started = time.perf_counter()
        await api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, collection_body(name, f"{tag}-one-{i}"))
        operator_s.append(await ready.wait([name]) - started)
        names.append(name)
        started = time.perf_counter()
        await bare.create_collection(f"{tag}-bare-one-{i}", vectors_config=BARE_BODY)
        bare_s.append(time.perf_counter() - started)
    return operator_s, bare_s, names


async def _bulk(
    api: client.CustomObjectsApi, ns: str, ready: ReadyWatch, bare: AsyncQdrantClient, tag: str
) -> tuple[float, float, float]:
    """Each side on a fresh dev server of its own (the engine slows as collections accumulate)."""
    names = [f"bulk-{i}" for i in range(BULK)]
    started = time.perf_counter()
    # All 200 applied at once, as one `kubectl apply -f` of a 200-document file would (but without its start-up).
    await asyncio.gather(
        *(
            api.create_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, collection_body(name, f"{tag}-{name}", "bulk")
            )
            for name in names
        )
    )
    applied = time.perf_counter() - started
    operator_s = await ready.wait(names) - started

    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with limit:
            await bare.create_collection(f"{tag}-bare-bulk-{i}", vectors_config=BARE_BODY)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(BULK)))
    return operator_s, time.perf_counter() - started, applied


def _audit_phases(namespace: str, names: list[str], since: int) -> dict[str, float]:
    """Server-side timeline per collection: create received -> operator's first status write received."""
    created: dict[str, datetime] = {}
    status: dict[str, datetime] = {}
    status_writes: dict[str, int] = {}
    kopf_patches: dict[str, int] = {}
    for event in audit_events(since):
        ref = event.get("objectRef") or {}
        if ref.get("resource") != PLURAL or ref.get("namespace") != namespace or ref.get("name") not in names:
            continue
        at = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        name = ref["name"]
        if event["verb"] == "create":
            created[name] = at
        elif ref.get("subresource") == "status":
            status.setdefault(name, at)
            status_writes[name] = status_writes.get(name, 0) + 1
        elif event["verb"] == "patch":
            kopf_patches[name] = kopf_patches.get(name, 0) + 1
    to_status = [(status[n] - created[n]).total_seconds() for n in names if n in status and n in created]
    return {
        "create_to_status_write_p50_ms": ms(statistics.median(to_status)) if to_status else -1.0,
        "kopf_metadata_patches_per_collection": statistics.mean(kopf_patches.values()) if kopf_patches else 0.0,
        # More than one means another operator (e.g. a test session's, watching all namespaces) handled them too.
        "status_writes_per_collection": statistics.mean(status_writes.values()) if status_writes else 0.0,
    }


def _metric_means(connection: str) -> dict[str, float]:
    """Mean duration per reconcile and per Qdrant operation, from the in-process operator's metrics."""
    sums: dict[str, list[float]] = {}
    for metric in prometheus_client.REGISTRY.collect():
        if metric.name not in (
            "qdrant_operator_client_request_duration_seconds",
            "qdrant_operator_reconcile_duration_seconds",
        ):
            continue
        for sample in metric.samples:
            labels = sample.labels
            if metric.name.startswith("qdrant_operator_client") and labels.get("connection") != connection:
                continue
            key = labels.get("operation") or labels.get("kind", "reconcile")
            if sample.name.endswith("_sum"):
                sums.setdefault(key, [0.0, 0.0])[0] += sample.value
            elif sample.name.endswith("_count"):
                sums.setdefault(key, [0.0, 0.0])[1] += sample.value
    return {f"{key}_mean_ms": ms(total / count) for key, (total, count) in sums.items() if count}


async def _run(urls: list[str], namespace: str, tag: str) -> dict[str, Any]:
    server_url, bulk_operator_url, bulk_bare_url = urls
    cfg = client.Configuration()
    await config.load_kube_config(config_file=str(cp.ADMIN_KUBECONFIG), client_configuration=cfg)
    cfg.connection_pool_maxsize = BULK
    async with client.ApiClient(configuration=cfg) as api_client:
        api = client.CustomObjectsApi(api_client)
        await connect(api, namespace, "bench", server_url)
        await connect(api, namespace, "bulk", bulk_operator_url)
        ready = ReadyWatch(api, namespace)
        ready.start()
        bare = AsyncQdrantClient(url=server_url, check_compatibility=False)
        bulk_bare = AsyncQdrantClient(url=bulk_bare_url, check_compatibility=False)
        try:
            await bare.create_collection(f"{tag}-warm", vectors_config=BARE_BODY)  # connections opened
            since = cp.AUDIT_LOG.stat().st_size
            operator_s, bare_s, names = await _sequential(api, namespace, ready, bare, tag)
            phases = {**_audit_phases(namespace, names, since), **_metric_means(f"{namespace}/bench")}
            await bulk_bare.create_collection(f"{tag}-warm", vectors_config=BARE_BODY)
            bulk_operator_s, bulk_bare_s, applied_s = await _bulk(api, namespace, ready, bulk_bare, tag)
        finally:
            await ready.stop()
            await bare.close()
            await bulk_bare.close()
    return {
        "sequential": {
            "collections": SEQUENTIAL,
            "operator_apply_to_ready_p50_ms": ms(percentile(operator_s, 50)),
            "operator_apply_to_ready_p95_ms": ms(percentile(operator_s, 95)),
            "bare_client_create_p50_ms": ms(percentile(bare_s, 50)),
            "bare_client_create_p95_ms": ms(percentile(bare_s, 95)),
            "operator_overhead_p50_ms": ms(percentile(operator_s, 50) - percentile(bare_s, 50)),
            "overhead_target_ms": 150,
            "ratio_operator_over_bare_p50": round(percentile(operator_s, 50) / percentile(bare_s, 50), 2),
            "ratio_operator_over_bare_p95": round(percentile(operator_s, 95) / percentile(bare_s, 95), 2),
            "where_the_time_goes": phases,
        },
        "bulk": {
            "collections": BULK,
            "concurrency": CONCURRENCY,
            "api_creates_accepted_s": round(applied_s, 2),
            "operator_all_ready_s": round(bulk_operator_s, 2),
            "bare_client_all_created_s": round(bulk_bare_s, 2),
            "operator_collections_per_s": round(BULK / bulk_operator_s, 1),
            "bare_client_collections_per_s": round(BULK / bulk_bare_s, 1),
            "ratio_throughput_operator_over_bare": round(bulk_bare_s / bulk_operator_s, 2),
            "throughput_target_ratio": 0.8,
        },
    }


async def main(tier: str = "dev") -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    namespace = f"bench-{tag}"
    with control_plane(), tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        for i in range(3):
            (Path(tmp) / str(i)).mkdir()
        servers = [start_server(tier, Path(tmp) / str(i) / "data") for i in range(3)]
        kubectl("create", "namespace", namespace)
        try:
            with operator_in_thread(namespace):
                results = await _run([server.url for server in servers], namespace, tag)
                # Retain (the default) deletes nothing in Qdrant; removing them while the operator runs lets
                # it release any finalizer, so the namespace goes away cleanly.
                kubectl("delete", PLURAL, "--all", "-n", namespace, "--timeout=120s")
        finally:
            kubectl("delete", "namespace", namespace, "--wait=false")
            for server in servers:
                server.close()
    engine = "dev Qdrant (qdrant-edge engine)" if tier == "dev" else "real Qdrant 1.19.0 (release build)"
    results = {"server": f"{engine} on loopback; control plane {cp.KUBERNETES_VERSION}", **results}
    out = write_results("operator", tier, results)
    _print(results, out)
    return results


def _print(results: dict[str, Any], out: Path) -> None:
    seq, bulk = results["sequential"], results["bulk"]
    print(f"operator benchmark ({results['server']})")
    print(
        f"  apply-to-Ready, one at a time ({seq['collections']}x): p50 {seq['operator_apply_to_ready_p50_ms']} ms, "
        f"p95 {seq['operator_apply_to_ready_p95_ms']} ms; bare qdrant-client create p50 "
        f"{seq['bare_client_create_p50_ms']} ms, p95 {seq['bare_client_create_p95_ms']} ms"
    )
    print(
        f"    = {seq['ratio_operator_over_bare_p50']}x the bare client at p50 "
        f"({seq['ratio_operator_over_bare_p95']}x at p95); operator overhead p50 "
        f"{seq['operator_overhead_p50_ms']} ms (target < {seq['overhead_target_ms']} ms)"
    )
    print(f"    where the time goes: {seq['where_the_time_goes']}")
    if seq["where_the_time_goes"]["status_writes_per_collection"] > 1:
        print(
            "    WARNING: more than one status write per collection: another operator watching all namespaces "
            "(a test session?) reconciled them too; figures are disturbed"
        )
    print(
        f"  {bulk['collections']} at once: operator {bulk['operator_all_ready_s']} s to all Ready "
        f"({bulk['operator_collections_per_s']}/s); bare client at concurrency {bulk['concurrency']} "
        f"{bulk['bare_client_all_created_s']} s ({bulk['bare_client_collections_per_s']}/s)"
    )
    print(
        f"    = {bulk['ratio_throughput_operator_over_bare']}x the bare client's throughput "
        f"(target >= {bulk['throughput_target_ratio']}x)"
    )
    print(f"  written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
