"""kopf's peering object, there when the replicas need it.

Given a peering name, kopf starts paused and stays paused until it has read that object; it never creates
it, and while it is missing says so only at DEBUG (kopf 1.45, `_core/engines/peering.py`: each keep-alive
into it logs "not found"). `kubectl apply` cannot create the object in the same apply as its CRD (kubectl
knows no kind before its CRD is served), so the operator makes its own: at start, every few seconds while
one is missing and every 10 s after (so one deleted by hand comes back). When it may not create it (no
`create` on kopf.dev peerings) or the CRD is not installed, it logs a WARNING naming the object and the
command that fixes it, and sets `qdrant_operator_peering_object_missing` to 1, until the object exists.

Whether this replica is the active one (`qdrant_operator_active`): kopf keeps its pause state to itself (a
private toggle), but it decides from the peering object's status alone, by a fixed rule: a replica runs while
no other alive peer has its priority or a higher one. The operator gives kopf its identity (kopf.operator's
public `identity` argument, own_identity) so it can find its own entry, and applies the same rule to the same
object at each look (every few seconds): the gauge follows kopf's state within one look. A replica that stops
being active drops its per-resource series (qdrant_operator_resource_ready): the active replica's are current.
"""

from __future__ import annotations

import asyncio
import datetime
import getpass
import json
import logging
import os
import random
import socket
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import metrics
from .api import KubeApi, KubeApiError, kopf_peering

log = logging.getLogger(__name__)

MISSING_RECHECK_SECONDS = 5.0
PRESENT_RECHECK_SECONDS = 10.0  # also how soon the active gauge follows a handover
_PATTERN = set("!*?,")  # kopf's namespace pattern syntax: globs, exclusions, lists


@dataclass(frozen=True)
class PeeringObject:
    """A ClusterKopfPeering (namespace None, the operator watches the cluster) or one namespace's KopfPeering."""

    namespace: str | None
    name: str

    @property
    def kind(self) -> str:
        return "ClusterKopfPeering" if self.namespace is None else "KopfPeering"

    @property
    def crd(self) -> str:
        return f"{self.kind.lower()}s.kopf.dev"

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + ("" if self.namespace is None else f" in namespace {self.namespace}")

    @property
    def create_command(self) -> str:
        manifest = kopf_peering(self.namespace, self.name)
        manifest["metadata"].pop("namespace", None)
        scope = "" if self.namespace is None else f" -n {self.namespace}"
        return f"echo '{json.dumps(manifest, separators=(',', ':'))}' | kubectl create{scope} -f -"


@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int
    deadline: datetime.datetime  # lastseen + lifetime: after it, kopf counts the peer as gone

    @property
    def pod(self) -> str:
        """The Pod name in kopf's identity: POD_ID as is, else "user@host/started/random", whose host is the Pod's
        hostname (its name; a Deployment's Pod names hold no dot, a resolver's domain after one is dropped)."""
        if "@" not in self.identity:
            return self.identity
        host = self.identity.split("@", 1)[1].split("/", 1)[0]
        return host.split(".", 1)[0]


def peers(status: Mapping[str, Any]) -> list[Peer]:
    """The peers a kopf peering object's status lists (identity -> priority, lifetime, lastseen)."""
    found = []
    for identity, info in status.items():
        try:
            lastseen = datetime.datetime.fromisoformat(info["lastseen"])
            if lastseen.tzinfo is None:
                lastseen = lastseen.replace(tzinfo=datetime.UTC)
            lifetime = datetime.timedelta(seconds=int(info.get("lifetime", 60)))
            found.append(Peer(identity, int(info.get("priority", 0)), lastseen + lifetime))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # not a peer entry kopf wrote
    return found


def leaders(status: Mapping[str, Any], now: datetime.datetime) -> list[Peer]:
    """The alive peers of the top priority. kopf lets exactly one replica run: the only one of them; when several
    share it, kopf pauses them all (kopf 1.45, `_core/engines/peering.py`, process_peering_event)."""
    alive = [p for p in peers(status) if p.deadline > now]
    top = max((p.priority for p in alive), default=None)
    return [p for p in alive if p.priority == top]


def own_identity() -> str:
    """This replica's name in the peering object, given to kopf (kopf.operator's `identity`) so the operator knows
    which entry is its own: kopf's own format (`detect_own_id`), POD_ID as is, else user@host/started/random."""
    if pod := os.environ.get("POD_ID"):
        return pod
    started = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=3))
    return f"{getpass.getuser()}@{socket.gethostname()}/{started}/{suffix}"


@dataclass(frozen=True)
class Verdict:
    missing: bool | None  # None: not known, the API server's answer was an error
    why: str = ""


class PeeringKeeper:
    """Makes sure the peering objects kopf uses for `name` exist (see the module's docstring): a
    ClusterKopfPeering when the operator watches the cluster (`namespaces` empty), else a KopfPeering in each
    watched namespace. For a namespace pattern kopf uses one in each matching namespace; none is made here."""

    def __init__(self, kube: KubeApi, name: str, namespaces: Sequence[str], identity: str = "") -> None:
        self._kube = kube
        self.name = name
        self.identity = identity  # this replica's entry in the peering objects (own_identity)
        self._holds: dict[PeeringObject, bool] = {}
        self.active: bool | None = None
        self.patterns = tuple(ns for ns in namespaces if _PATTERN & set(ns))
        scopes: Iterable[str | None] = [ns for ns in namespaces if ns not in self.patterns] if namespaces else [None]
        self.objects = tuple(PeeringObject(ns, name) for ns in scopes)
        self._last: dict[PeeringObject, Verdict] = {}
        self._task: asyncio.Task[None] | None = None

    async def verdict(self, obj: PeeringObject) -> Verdict:
        try:
            if (found := await self._kube.find_kopf_peering(obj.namespace, obj.name)) is not None:
                now = datetime.datetime.now(datetime.UTC)
                self._holds[obj] = [p.identity for p in leaders(found.get("status") or {}, now)] == [self.identity]
                return Verdict(missing=False)
            await self._kube.create_kopf_peering(obj.namespace, obj.name)
        except KubeApiError as exc:
            if exc.status == 409:  # another replica created it in the meantime
                return Verdict(missing=False)
            if exc.status == 403:
                return Verdict(True, f"this operator may not create it ({exc}); create it: {obj.create_command}")
            if exc.status == 404:
                return Verdict(True, f"its CRD {obj.crd} is not installed (manifests/base/peering.yaml)")
            return Verdict(None, str(exc))
        log.info("created %s: the operator's replicas meet there", obj)
        return Verdict(missing=False)

    async def check(self) -> bool:
        """One look at every object, creating what is missing; True when all exist."""
        for obj in self.objects:
            verdict = await self.verdict(obj)
            last = self._last.get(obj)
            if verdict != last:
                if verdict.missing:
                    log.warning(
                        "peering object %s does not exist, so kopf keeps this operator paused: %s", obj, verdict.why
                    )
                elif verdict.missing is None:
                    log.warning("could not check peering object %s: %s", obj, verdict.why)
                elif last is not None:
                    log.info("peering object %s exists", obj)
            if verdict.missing is not None:
                gauge = metrics.PEERING_OBJECT_MISSING.labels(obj.kind, obj.namespace or "", obj.name)
                gauge.set(1 if verdict.missing else 0)
            if verdict.missing is not False:
                self._holds[obj] = False  # kopf keeps a replica paused until it has read the object
            self._last[obj] = verdict
        if self.objects:
            self._track_activity(all(self._holds.get(obj, False) for obj in self.objects))
        return all(v.missing is False for v in self._last.values())

    def _track_activity(self, active: bool) -> None:
        metrics.OPERATOR_ACTIVE.set(1 if active else 0)
        if active != self.active:
            if active:
                log.info("this replica (%s) is the active one: it processes resources", self.identity)
            elif self.active is not None:
                log.info("this replica (%s) stands by: another one is active, or kopf paused them all", self.identity)
                metrics.RESOURCE_READY.clear()  # no longer current here: the active replica exports them
        self.active = active

    async def run(self) -> None:
        for pattern in self.patterns:
            log.warning(
                "peering in the namespaces matching %r: kopf pauses this operator until a KopfPeering %s exists in "
                "each, and the operator makes none for a pattern; create them (`%s`) or list the "
                "namespaces by name",
                pattern,
                self.name,
                PeeringObject("NAMESPACE", self.name).create_command,
            )
        while True:
            try:
                present = await self.check()
            except Exception:  # a bug here must not end the checks
                log.exception("checking the peering objects failed")
                present = False
            await asyncio.sleep(PRESENT_RECHECK_SECONDS if present else MISSING_RECHECK_SECONDS)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="peering-keeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
