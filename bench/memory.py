"""Memory benchmark: what 1,000 VectorCollections (MEMORY_COLLECTIONS) cost the operator, live objects against
RSS.

bench/scale.py reads the operator process's RSS from outside; this one runs the operator in-process (in a
thread, as bench/operator.py does) so that the Python objects it holds can be counted. On the local control
plane and one dev Qdrant: the connection Ready, then a census of the garbage collector's objects and RSS;
every collection created at once and Ready; 20 s later the census again. Reports, per 1,000 collections, the
RSS growth and the bytes of the objects that are new and still alive (each gc-tracked object plus the strings,
numbers and bytes it refers to), by type. What RSS grew beyond the live objects is the allocator's high-water
mark of the burst (objects freed since, pages not returned to the system). Also the peak RSS of importing
the operator and each of its heavy dependencies alone, in the runtime venv of bench.kube.operator_command (what
bounds the idle figure). Writes bench/results/memory.json.

Idle, side by side (`idle_side_by_side`, also alone: `python -m bench.memory idle`): the RSS of the operator
process started as its image runs it, one connection and no collections, SETTLE_S after its connection is
Ready (bench.peer's "RSS idle"), for this checkout, for the code at MEMORY_BASELINE_REF (default main: the
"before") and for the PyPI peer, in turns, MEMORY_IDLE_ROUNDS times (default 3); medians and ratios, with
the import peaks of each checkout. Writes bench/results/memory-idle.json.
The operator shares the process with this script and the benchmarks' kubernetes_asyncio, so the absolute RSS
is not the operator's own (bench/scale.py's is); the growth is."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import peer
from bench.client import start_server, write_results
from bench.kube import (
    CONCURRENCY,
    PLURAL,
    REPO,
    collection_body,
    connection_ready,
    control_plane,
    kubectl,
    operator_command,
)
from bench.operator import operator_in_thread
from collection_operator.api import GROUP, VERSION

COLLECTIONS = int(os.environ.get("MEMORY_COLLECTIONS", "1000"))
SETTLE_S = 20.0
IDLE_ROUNDS = int(os.environ.get("MEMORY_IDLE_ROUNDS", "3"))
BASELINE_REF = os.environ.get("MEMORY_BASELINE_REF", "main")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def census() -> dict[int, Any]:
    gc.collect()
    return {id(o): o for o in gc.get_objects()}


def new_since(before: dict[int, Any]) -> tuple[int, Counter[str], Counter[str]]:
    """Bytes and counts by type of the gc-tracked objects alive now that were not before, with the untracked
    objects (str, int, bytes, ...) they refer to, each counted once."""
    gc.collect()
    seen: set[int] = set()
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        if obj is before or (id(obj) in before and before[id(obj)] is obj):
            continue
        kind = type(obj).__qualname__ if isinstance(type(obj).__qualname__, str) else repr(type(obj))
        size = sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if not gc.is_tracked(ref) and id(ref) not in seen:
                seen.add(id(ref))
                size += sys.getsizeof(ref)
        sizes[kind] += size
        counts[kind] += 1
    return sum(sizes.values()), sizes, counts


def _malloc_trim() -> float | None:
    """RSS after glibc's malloc_trim(0) (free heap pages handed back to the system), or None without glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return rss_mib()


IMPORTS = {
    "python": "",
    "kopf": "import kopf",
    "qdrant_client": "import qdrant_client",
    "httpx, pydantic, prometheus_client": "import httpx, pydantic, prometheus_client",
    "the operator (all of it)": "import collection_operator.handlers.operator",
}


def import_costs(source: Path = REPO / "operator") -> dict[str, float]:
    """Peak RSS (MiB) of importing each, alone, in the operator's runtime venv (its dependencies only), with the
    operator's code from `source`."""
    command, env = operator_command()
    env["PYTHONPATH"] = str(source)
    costs = {}
    for what, statement in IMPORTS.items():
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
        code = f"{statement}\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])"
        out = subprocess.run(
            [command[0], "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        costs[what] = round(int(out.stdout.split()[-1]) / 1024, 1)
    return costs


def _ready(namespace: str) -> int:
    out = kubectl(
        "get",
        PLURAL,
        "-n",
        namespace,
        "-o",
        "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
    )
    return out.split().count("True")


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The operator's source root (operator/) as it is at git `ref`, in a temporary directory, with this
    checkout's package metadata (the operator reads its version there; git does not track it)."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-baseline-") as tmp:
        archive = subprocess.run(["git", "archive", ref, "operator"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        for metadata in (REPO / "operator").glob("*.egg-info"):
            shutil.copytree(metadata, Path(tmp) / "operator" / metadata.name)
        yield Path(tmp) / "operator"


async def idle_side_by_side(tier: str = "dev") -> dict[str, Any]:
    """Idle RSS of this checkout's operator, the same at BASELINE_REF and the PyPI peer (module docstring)."""
    if tier != "dev":
        print(f"idle side by side: dev tier only (asked for {tier}); skipped")
        return {}
    peer.peer_python()
    samples: dict[str, list[float]] = {"ours": [], "before": [], "peer": []}
    with control_plane(), checkout(BASELINE_REF) as before:
        peer.apply_peer_crds()
        for _ in range(IDLE_ROUNDS):  # in turns, so load from other work falls on all three alike
            samples["ours"].append(await peer.idle_rss_mib("ours", tier))
            samples["before"].append(await peer.idle_rss_mib("ours", tier, before))
            samples["peer"].append(await peer.idle_rss_mib("peer", tier))
        imports = {"ours": import_costs(), "before": import_costs(before)}
    median = {who: statistics.median(values) for who, values in samples.items()}
    results = {
        "what": "VmRSS of the operator process, one connection, no collections, "
        f"{peer.SETTLE_S:g} s after it started (bench.peer's RSS idle); {IDLE_ROUNDS} rounds in turns",
        "before": f"this repository at {BASELINE_REF} ({_git('rev-parse', '--short', BASELINE_REF)})",
        "ours": f"this checkout ({_git('rev-parse', '--short', 'HEAD')}"
        + (", with uncommitted changes)" if _git("status", "--porcelain") else ")"),
        "peer": f"{peer.PEER_PACKAGE} {peer.PEER_RELEASE} from PyPI",
        "rss_idle_mib": samples,
        "rss_idle_median_mib": median,
        "ratio_ours_over_peer": round(median["ours"] / median["peer"], 2),
        "ratio_before_over_peer": round(median["before"] / median["peer"], 2),
        "ratio_ours_over_before": round(median["ours"] / median["before"], 2),
        "import_peak_rss_mib": imports,
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
    }
    out = write_results("memory-idle", tier, results)
    print(f"idle RSS, median of {IDLE_ROUNDS} (MiB): {median}")
    print(
        f"  ours/peer {results['ratio_ours_over_peer']}x, before/peer {results['ratio_before_over_peer']}x,"
        f" ours/before {results['ratio_ours_over_before']}x; imports {imports}; results: {out}"
    )
    return results


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


async def main(tier: str = "dev") -> dict[str, Any]:
    await idle_side_by_side(tier)
    return await asyncio.to_thread(_measure, tier)  # all of it waits on kubectl and the operator's thread


def _measure(tier: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    ns = f"memory-{tag}"
    with control_plane(), tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        server = start_server(tier, Path(tmp) / "data")
        kubectl("create", "namespace", ns)
        try:
            with operator_in_thread(ns):
                try:
                    connection = {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "QdrantConnection",
                        "metadata": {"name": "bench", "namespace": ns},
                        "spec": {
                            "url": server.url,
                            "environment": "Production",
                            "maxConcurrentOperations": CONCURRENCY,
                        },
                    }
                    kubectl("apply", "-f", "-", stdin=json.dumps(connection))
                    deadline = time.monotonic() + 60
                    while not connection_ready(ns, "bench"):
                        if time.monotonic() > deadline:
                            raise RuntimeError("QdrantConnection bench did not become Ready")
                        time.sleep(0.5)
                    time.sleep(SETTLE_S)
                    before = census()  # holds every object alive now, so no new one can take an old one's id
                    rss_before = rss_mib()  # with the census itself in it, as in the figure after
                    items = []
                    for i in range(COLLECTIONS):
                        body = collection_body(f"c{i:04d}", f"{tag}-c{i:04d}")
                        body["metadata"]["namespace"] = ns
                        items.append(body)
                    listing = Path(tmp) / "collections.json"
                    listing.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
                    started = time.monotonic()
                    kubectl("create", "-f", str(listing), timeout=600)
                    del items  # the benchmark's own copies are not the operator's
                    while (ready := _ready(ns)) < COLLECTIONS:
                        if time.monotonic() - started > 900:
                            raise RuntimeError(f"only {ready} of {COLLECTIONS} Ready after 900 s")
                        time.sleep(2)
                    all_ready_s = time.monotonic() - started
                    rss_peak_window = rss_mib()
                    time.sleep(SETTLE_S)
                    rss_after = rss_mib()
                    live, sizes, counts = new_since(before)
                    trimmed = _malloc_trim()
                    del before
                finally:  # while the operator runs: it releases its finalizers, so nothing is left behind
                    kubectl("delete", "namespace", ns, "--timeout=300s", timeout=330)
        finally:
            server.close()
    per_1000 = 1000 / COLLECTIONS
    results = {
        "server": f"dev Qdrant on loopback; operator in-process, {COLLECTIONS} collections on one connection",
        "collections": COLLECTIONS,
        "all_ready_s": round(all_ready_s, 1),
        "rss_before_mib": round(rss_before, 1),
        "rss_when_all_ready_mib": round(rss_peak_window, 1),
        "rss_after_settling_mib": round(rss_after, 1),
        "rss_per_1000_mib": round((rss_after - rss_before) * per_1000, 1),
        "rss_per_1000_after_malloc_trim_mib": round((trimmed - rss_before) * per_1000, 1) if trimmed else None,
        "live_objects_per_1000_mib": round(live / 2**20 * per_1000, 1),
        "allocator_high_water_per_1000_mib": round(((rss_after - rss_before) - live / 2**20) * per_1000, 1),
        "live_by_type_per_1000_kib": {
            kind: {"kib": round(size / 1024 * per_1000, 1), "objects": round(counts[kind] * per_1000)}
            for kind, size in sizes.most_common(12)
        },
        "target_per_1000_mib": 20,
        "import_peak_rss_mib": import_costs(),
        "target_idle_mib": 100,
    }
    out = write_results("memory", tier, results)
    print(f"memory benchmark ({results['server']})")
    print(
        f"  per 1,000 collections: RSS +{results['rss_per_1000_mib']} MiB, of which live objects "
        f"{results['live_objects_per_1000_mib']} MiB and allocator high-water "
        f"{results['allocator_high_water_per_1000_mib']} MiB (target <= 20 MiB); after malloc_trim(0) "
        f"+{results['rss_per_1000_after_malloc_trim_mib']} MiB"
    )
    print(f"  live, by type (KiB per 1,000): {results['live_by_type_per_1000_kib']}")
    print(f"  peak RSS of imports alone, runtime venv (MiB; idle target 100): {results['import_peak_rss_mib']}")
    print(f"  results: {out}")
    return results


if __name__ == "__main__":
    asyncio.run(idle_side_by_side() if sys.argv[1:] == ["idle"] else main())
