"""QdrantConnection: the decisions of its daemon's loop, one tick at a time: the spec, its Secrets (re-read on
the health interval, a changed reference at once), when the client is built or changed, what status says,
and when its collections are swept for drift or checked for existence. The daemon (handlers/connection.py)
does what a tick says; the state between ticks lives in one ConnectionRun."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.connection import Health, QdrantConnectionSpec, QdrantConnectionStatus
from ..config import OperatorSettings
from .connection import credentials, secret_refs, status, verdict
from .outcome import Outcome, ReconcileError, parse
from .ports import ClientsPort, Credentials, SecretsPort, SecretUnavailable

log = logging.getLogger(__name__)
TICK_SECONDS = 1.0  # how often the daemon compares the client's report with status (no I/O when equal)
SECRET_RECHECK_SECONDS = 10.0  # a missing Secret is looked for again this often, or each health interval if sooner
# A routine sweep spreads its collections evenly over this share of the resync interval instead of checking
# them back to back: each is still checked once per interval, and Qdrant, the API server and new objects see
# a steady trickle rather than a burst of 1,000 reconciles. A re-sweep after an outage is not spread.
SWEEP_SPREAD = 0.5

ConnectionOutcome = Outcome[QdrantConnectionStatus]


@dataclass(frozen=True)
class Observed:
    """The connection and what its daemon runs, as of one tick."""

    namespace: str
    name: str
    spec: Mapping[str, Any]  # the live spec
    has_conditions: bool  # its status has conditions already (an operator restart keeps the last verdict)
    collections: Sequence[Mapping[str, Any]]  # the VectorCollections that reference it
    sweeping: bool  # a drift sweep is still running
    checking: bool  # an existence check is still running

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Tick:
    """What the daemon does now, then it waits `delay` seconds."""

    outcome: ConnectionOutcome | None  # the status to write (only what changed is); None: leave it
    delay: float
    sweep: float | None = None  # sweep every collection in `collections`, spread over this many seconds
    check: bool = False  # check that every applied collection still exists in Qdrant
    users: int | None = None  # collections from allowed namespaces (a gauge)
    probed: bool = False  # the client has its first health verdict


def _failed(exc: ReconcileError) -> ConnectionOutcome:
    return Outcome(exc.verdict, QdrantConnectionStatus())


class ConnectionRun:
    """One QdrantConnection's loop state. No sweep at start: kopf resumes (or creates) every collection then,
    and a sweep beside them doubled the work of an operator restart (1,005 reconciles more while 1,005 were
    resumed)."""

    def __init__(self, now: float, settings: OperatorSettings):
        self.applied: tuple[Any, ...] | None = None  # what the client was built with
        self.credentials: Credentials | None = None
        self.read_refs: tuple[Any, ...] | None = None
        self.next_credentials_check = 0.0
        self.next_sweep = now + settings.resync_interval_seconds
        self.next_existence_check = now + settings.existence_check_interval_seconds
        self.was_ready: bool | None = None  # the connection's readiness at the last probed tick
        self.resweep = False  # readiness changed: every collection re-checks now, not at the next resync

    async def step(
        self, observed: Observed, now: float, settings: OperatorSettings, secrets: SecretsPort, clients: ClientsPort
    ) -> Tick:
        """One tick at monotonic time `now`, with the operator's settings as they are now (hot reload)."""
        try:
            spec = parse(QdrantConnectionSpec, observed.spec)
        except ReconcileError as exc:
            return Tick(_failed(exc), settings.resync_interval_seconds)
        client_settings = settings.resolve(spec)
        interval = client_settings.health_check.interval_seconds
        if now >= self.next_credentials_check or secret_refs(spec) != self.read_refs:
            self.next_credentials_check = now + interval
            try:
                self.credentials = await credentials(secrets, observed.namespace, spec)
                self.read_refs = secret_refs(spec)
            except ReconcileError as exc:  # SecretNotFound
                # A client already running keeps its last good credentials; status says what is wrong.
                self.next_credentials_check = 0.0
                return Tick(_failed(exc), min(interval, SECRET_RECHECK_SECONDS))
            except SecretUnavailable as exc:
                log.warning("connection %s: reading its Secrets failed, retrying: %s", observed.key, exc)
                self.next_credentials_check = 0.0
                if self.credentials is None:
                    return Tick(None, TICK_SECONDS)
        assert self.credentials is not None
        wanted = (spec.targets, client_settings, self.credentials, spec.tls.insecure_skip_verify if spec.tls else False)
        client = clients.get(observed.key)
        if client is None or wanted != self.applied:
            client = await clients.apply(
                observed.key, observed.namespace, observed.name, spec, client_settings, self.credentials
            )
            self.applied = wanted
        client.spec = spec  # allowedNamespaces and the rest take effect on the next collection reconcile
        report = client.report
        users = sum(1 for b in observed.collections if client.allows(b["metadata"]["namespace"]))
        probed = report.health != Health.UNKNOWN
        summary = verdict(report)
        # After a restart the last verdict stands until the first probe; a new connection says Connecting.
        outcome = Outcome(summary, status(report, users, spec.shown_url), reconciled=probed)
        write = outcome if probed or not observed.has_conditions else None
        if probed:
            # An outage or a recovery reaches the collections' status within a tick, not at the next resync:
            # while the connection is down their reconcile stops before any Qdrant call.
            self.resweep = self.resweep or (self.was_ready is not None and summary.ready != self.was_ready)
            self.was_ready = summary.ready
        sweep = None
        if (self.resweep or (summary.ready and now >= self.next_sweep)) and not observed.sweeping:
            sweep = 0.0 if self.resweep else settings.resync_interval_seconds * SWEEP_SPREAD
            self.next_sweep, self.resweep = now + settings.resync_interval_seconds, False
        every = settings.existence_check_interval_seconds
        # Beside a sweep too: a spread sweep takes half the resync interval to reach its last collection.
        check = summary.ready and bool(every) and now >= self.next_existence_check and not observed.checking
        if check:
            self.next_existence_check = now + every
        return Tick(write, TICK_SECONDS, sweep, check, users, probed)
