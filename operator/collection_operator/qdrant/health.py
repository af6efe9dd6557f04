"""Health of one target: a pure state machine (HealthTracker) and the probing task (HealthMonitor).

Unknown until the first probe ends. A probe is GET / (server version), GET /cluster (peers, leader) and, when
distributed, GET /cluster/telemetry (which peers answer). Healthy
after `success_threshold` consecutive good probes; Unhealthy after `failure_threshold` consecutive failed
ones; Degraded in between (failing but not yet past the threshold, recovering, or the server answers but
reports trouble, e.g. its consensus thread stopped).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from .. import metrics
from ..api.connection import Health
from ..config import HealthSettings
from .errors import QdrantError, classify
from .report import HealthReport, ProbeResult

log = logging.getLogger(__name__)


class HealthTracker:
    def __init__(self, failure_threshold: int, success_threshold: int) -> None:
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.health = Health.UNKNOWN
        self._failures = 0
        self._successes = 0

    def record(self, ok: bool, *, trouble: bool = False) -> Health:
        if ok:
            self._failures = 0
            self._successes += 1
            recovered = self.health in (Health.UNKNOWN, Health.HEALTHY) or self._successes >= self.success_threshold
            self.health = Health.DEGRADED if trouble or not recovered else Health.HEALTHY
        else:
            self._successes = 0
            self._failures += 1
            self.health = Health.UNHEALTHY if self._failures >= self.failure_threshold else Health.DEGRADED
        return self.health


Probe = Callable[[], Awaitable[ProbeResult]]


class HealthMonitor:
    """Runs `probe` every `interval_seconds` (each bounded by `timeout_seconds`) and keeps `report`.
    `on_probe(error or None)` sees every outcome (the gateway feeds its breaker); `on_change(report)` sees
    changes."""

    def __init__(
        self,
        name: str,
        probe: Probe,
        settings: HealthSettings,
        *,
        on_probe: Callable[[QdrantError | None], None] | None = None,
        on_change: Callable[[HealthReport], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._probe = probe
        self._on_probe = on_probe
        self._on_change = on_change
        self._tracker = HealthTracker(settings.failure_threshold, settings.success_threshold)
        self.report = HealthReport()
        self._task: asyncio.Task[None] | None = None
        metrics.HEALTH.labels(name).state(Health.UNKNOWN.value)

    def configure(self, settings: HealthSettings) -> None:
        self.settings = settings
        self._tracker.failure_threshold = settings.failure_threshold
        self._tracker.success_threshold = settings.success_threshold

    async def probe_once(self) -> HealthReport:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                result = await self._probe()
        except Exception as raw:
            error = classify(raw)
            metrics.HEALTH_PROBE_DURATION.labels(self.name, error.reason).observe(time.perf_counter() - started)
            health = self._tracker.record(False)
            report = dataclasses.replace(self.report, health=health, error=error, error_reason=error.reason)
            outcome: QdrantError | None = error
        else:
            metrics.HEALTH_PROBE_DURATION.labels(self.name, "ok").observe(time.perf_counter() - started)
            health = self._tracker.record(True, trouble=result.trouble is not None)
            report = HealthReport(
                health,
                result.server_version,
                result.distributed,
                result.peers,
                trouble=result.trouble,
                topology=result.topology,
                read_only=result.read_only,
                jwt_rbac=result.jwt_rbac,
            )
            outcome = None
        if self._on_probe is not None:
            self._on_probe(outcome)
        self._publish(report)
        return report

    def _publish(self, report: HealthReport) -> None:
        changed = report != self.report
        self.report = report
        if changed:
            metrics.HEALTH.labels(self.name).state(report.health.value)
            log.info("connection %s health %s (%s)", self.name, report.health.value, report.error_reason or "ok")
            if self._on_change is not None:
                self._on_change(report)

    async def run(self) -> None:
        while True:
            await self.probe_once()
            await asyncio.sleep(self.settings.interval_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"health:{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
