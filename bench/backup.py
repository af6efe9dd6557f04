"""A snapshot of at least 1 GiB from the real Qdrant 1.19, streamed to a real S3 server (SeaweedFS,
devenv/seaweed.py) the operator's way, against a bare upload of the same file with the same library.

- operator: the operator's own path (reconcile/snapshot.py `offload`): the snapshot download of its Qdrant
  gateway (`QdrantSnapshots.download_snapshot`, streamed) fed to `collection_operator.objectstore.Store.upload`
  (multipart, sha256 while streaming), what a CollectionSnapshot with `spec.objectStore` does;
- baseline: obstore's own `put` of the snapshot file from Qdrant's snapshot directory on local disk;
- where the time goes: store_from_file, Store.upload fed from that local file (no Qdrant download), and
  download_only, the operator's download from Qdrant alone (the bytes dropped, nothing uploaded);

Each upload runs in a fresh interpreter of its own (this module with `--child`), the three in turn, ROUNDS
times, so one's allocations never count against the other; that interpreter samples its VmRSS
every 10 ms and reports the peak over what it held before the first byte. The objects Store.upload wrote must
carry the size and sha256 Qdrant recorded for the snapshot.

    .venv/bin/python -m bench.backup     # bench/results/backup-real.json; needs the real Qdrant and weed

Reports throughput ratio (goal >= 0.9x) and RSS growth (goal < 50 MiB); it never asserts timings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.client import write_results
from devenv import gotools, seaweed
from tests.fixtures.qdrant import start_real_server

GIB = 2**30
TARGET_BYTES = int(float(os.environ.get("BACKUP_TARGET_GIB", "1.0")) * GIB)  # the snapshot's size at least
BLOB_BYTES = 512 * 1024  # payload per point: large values fill the collection fast (JSON strings, no floats)
BATCH = 12  # points per upsert, ~8 MiB of JSON (Qdrant's default request limit is 32 MiB)
ROUNDS = int(os.environ.get("BACKUP_ROUNDS", "3"))
MODES = ("bare", "operator", "store_from_file", "download_only")
COLLECTION = "backup-bench"


# ------------------------------------------------------------------------------------ one upload (child)


class PeakRss:
    """VmRSS sampled every 10 ms in a thread: what the process held on entry and the most it held since; and the
    CPU seconds the process used meanwhile."""

    def __init__(self) -> None:
        self.before = self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/self/status")

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRss:
        self.before = self.peak = self.now()
        self._cpu = time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())
        self.cpu_seconds = round(time.process_time() - self._cpu, 2)


async def _operator_upload(job: dict[str, Any]) -> dict[str, Any]:
    from collection_operator.api.connection import QdrantConnectionSpec
    from collection_operator.config import resolve
    from collection_operator.objectstore import Store, StoreConfig, Uploaded
    from collection_operator.qdrant import QdrantGateway
    from collection_operator.qdrant.adapters import QdrantSnapshots

    store = Store(StoreConfig(**job["store"]))
    settings = resolve(QdrantConnectionSpec(url=job["qdrant"], environment="Production"))
    async with QdrantGateway(job["qdrant"], settings, name="bench") as gateway:
        if job["mode"] in ("operator", "download_only"):
            source = QdrantSnapshots(gateway).download_snapshot(COLLECTION, job["snapshot"])
        else:  # "store_from_file": where the time goes, Store.upload fed from the local file instead
            source = _read(Path(job["file"]))
        with PeakRss() as rss:
            started = time.perf_counter()
            if job["mode"] == "download_only":  # where the time goes: Qdrant's download alone, bytes dropped
                uploaded = Uploaded(job["key"], job["sha256"], sum([len(chunk) async for chunk in source]))
            else:
                uploaded = await store.upload(job["key"], source)
            seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "size": uploaded.size,
        "sha256": uploaded.sha256,
        "rss_before": rss.before,
        "rss_peak": rss.peak,
        "cpu_seconds": rss.cpu_seconds,
    }


async def _read(file: Path) -> AsyncIterator[bytes]:
    with file.open("rb") as f:
        while chunk := f.read(2**20):
            yield chunk


async def _bare_upload(job: dict[str, Any]) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    config = job["store"]
    store = S3Store(
        config["bucket"],
        endpoint=config["endpoint"],
        region=config["region"],
        access_key_id=config["access_key_id"],
        secret_access_key=config["secret_access_key"],
        client_options={"allow_http": True},
    )
    file = Path(job["file"])
    size = file.stat().st_size  # noqa: ASYNC240 (before the clock starts)
    with PeakRss() as rss:
        started = time.perf_counter()
        await obstore.put_async(store, f"{config['prefix']}/{job['key']}", file)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "size": size,
        "rss_before": rss.before,
        "rss_peak": rss.peak,
        "cpu_seconds": rss.cpu_seconds,
    }


def child() -> None:
    job = json.loads(sys.stdin.read())
    upload = _bare_upload if job["mode"] == "bare" else _operator_upload
    print(json.dumps(asyncio.run(upload(job))))


# ----------------------------------------------------------------------------------- the run (parent)


def _snapshot_of_target_size(http: httpx.Client) -> tuple[int, dict[str, Any], float]:
    """Points with large payloads, then a snapshot, more points and a new snapshot until it reaches
    TARGET_BYTES (the file holds about twice the payload: the payload storage and the WAL); the points, the
    snapshot's description and the seconds the last snapshot took."""
    http.put(
        f"/collections/{COLLECTION}",
        json={"vectors": {"size": 4, "distance": "Dot", "on_disk": True}, "on_disk_payload": True},
    ).raise_for_status()
    points, payload_goal = 0, TARGET_BYTES * 0.55
    while True:
        while points * BLOB_BYTES < payload_goal:
            batch = [
                {
                    "id": points + i,
                    "vector": [0.5, 0.5, 0.5, 0.5],
                    # base64 of random bytes: nothing for a compressor to find
                    "payload": {"blob": base64.b64encode(os.urandom(BLOB_BYTES * 3 // 4)).decode()},
                }
                for i in range(BATCH)
            ]
            http.put(f"/collections/{COLLECTION}/points?wait=true", json={"points": batch}).raise_for_status()
            points += BATCH
        started = time.perf_counter()
        snap = http.post(f"/collections/{COLLECTION}/snapshots?wait=true").raise_for_status().json()["result"]
        seconds = time.perf_counter() - started
        if snap["size"] >= TARGET_BYTES:
            return points, snap, seconds
        http.delete(f"/collections/{COLLECTION}/snapshots/{snap['name']}?wait=true").raise_for_status()
        payload_goal *= TARGET_BYTES / snap["size"] * 1.05


def _run_child(job: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.backup", "--child"], input=json.dumps(job), capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"{job['mode']} upload failed ({out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-backup-") as tmp:
        s3 = seaweed.Seaweed(Path(tmp) / "s3")
        s3.start()
        qdrant = start_real_server(Path(tmp) / "qdrant", counted=False)
        try:
            assert qdrant.node is not None and qdrant.node.pid is not None and s3.pid is not None
            return _measure(qdrant.url, qdrant.node.storage, s3, {"qdrant": qdrant.node.pid, "s3": s3.pid})
        finally:
            qdrant.close()
            s3.stop()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(url: str, storage: Path, s3: seaweed.Seaweed, servers: dict[str, int]) -> dict[str, Any]:
    load = os.getloadavg()
    with httpx.Client(base_url=url, timeout=600) as http:
        started = time.perf_counter()
        points, snap, snapshot_s = _snapshot_of_target_size(http)
        fill_s = time.perf_counter() - started - snapshot_s
    file = storage / "snapshots" / COLLECTION / snap["name"]
    bucket = "backups"
    s3.create_bucket(bucket)
    store = {
        "bucket": bucket,
        "prefix": "bench",
        "endpoint": s3.endpoint,
        "region": s3.region,
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key,
    }
    print(f"[backup] {points} points, snapshot {snap['size'] / GIB:.2f} GiB in {snapshot_s:.0f} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for round_ in range(ROUNDS):
        for mode in MODES:
            job = {
                "mode": mode,
                "store": store,
                "key": f"{mode}-{round_}/{snap['name']}",
                "file": str(file),
                "qdrant": url,
                "snapshot": snap["name"],
                "sha256": snap["checksum"],
            }
            cpu = {name: _cpu_seconds(pid) for name, pid in servers.items()}
            result = _run_child(job)
            for name, pid in servers.items():
                result[f"{name}_cpu_seconds"] = round(_cpu_seconds(pid) - cpu[name], 2)
            if mode != "bare" and (result["size"], result["sha256"]) != (snap["size"], snap["checksum"]):
                raise RuntimeError(f"the uploaded object is not the snapshot: {result} vs {snap}")
            result["mib_per_s"] = round(result["size"] / 2**20 / result["seconds"], 1)
            result["rss_growth_mib"] = round((result["rss_peak"] - result["rss_before"]) / 2**20, 1)
            runs[mode].append(result)
            print(
                f"[backup] round {round_ + 1} {mode}: {result['mib_per_s']} MiB/s, RSS +{result['rss_growth_mib']} MiB,"
                f" CPU s: this process {result['cpu_seconds']}, Qdrant {result['qdrant_cpu_seconds']},"
                f" SeaweedFS {result['s3_cpu_seconds']}",
                flush=True,
            )
            if mode != "download_only":
                s3.s3("DELETE", f"/{bucket}/bench/{job['key']}")  # keep the disk for the next round
    bare = statistics.median(r["mib_per_s"] for r in runs["bare"])
    operator = statistics.median(r["mib_per_s"] for r in runs["operator"])
    from_file = statistics.median(r["mib_per_s"] for r in runs["store_from_file"])
    download = statistics.median(r["mib_per_s"] for r in runs["download_only"])
    results = {
        "qdrant": "real Qdrant 1.19.0, single node",
        "s3": f"SeaweedFS weed mini ({gotools.TOOLS['weed'][1]}) on loopback",
        "snapshot_bytes": snap["size"],
        "points": points,
        "payload_bytes_per_point": BLOB_BYTES,
        "fill_and_earlier_snapshots_seconds": round(fill_s, 1),
        "snapshot_seconds": round(snapshot_s, 1),
        "rounds": ROUNDS,
        "load_average_at_start": [round(x, 2) for x in load],
        "bare_obstore_put_mib_per_s": bare,
        "operator_stream_mib_per_s": operator,
        "throughput_operator_over_bare": round(operator / bare, 2),
        "store_upload_from_file_mib_per_s": from_file,
        "throughput_store_from_file_over_bare": round(from_file / bare, 2),
        "download_only_mib_per_s": download,
        "cpu_seconds_per_gib_median": {
            mode: {
                who: round(statistics.median(r[key] for r in runs[mode]) / (snap["size"] / GIB), 1)
                for who, key in (
                    ("uploader", "cpu_seconds"),
                    ("qdrant", "qdrant_cpu_seconds"),
                    ("seaweedfs", "s3_cpu_seconds"),
                )
            }
            for mode in MODES
        },
        "operator_rss_growth_mib_max": max(r["rss_growth_mib"] for r in runs["operator"]),
        "bare_rss_growth_mib_max": max(r["rss_growth_mib"] for r in runs["bare"]),
        "sha256_matches_qdrant": True,
        "runs": runs,
    }
    out = write_results("backup", "real", results)
    print(
        f"[backup] operator {operator} MiB/s vs bare {bare} MiB/s: {results['throughput_operator_over_bare']}x "
        f"(goal >= 0.9); operator RSS growth {results['operator_rss_growth_mib_max']} MiB (goal < 50); {out}"
    )
    return results


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main()
