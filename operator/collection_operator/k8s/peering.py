"""kopf's peering object, there when the replicas need it.

Given a peering name, kopf starts paused and stays paused until it has read that object; it never creates
it, and while it is missing says so only at DEBUG (kopf 1.45, `_core/engines/peering.py`: each keep-alive
into it logs "not found"). `kubectl apply` cannot create the object in the same apply as its CRD (kubectl
knows no kind before its CRD is served), so the operator makes its own: at start, every few seconds while
one is missing and every minute after (so one deleted by hand comes back). When it may not create it (no
`create` on kopf.dev peerings) or the CRD is not installed, it logs a WARNING naming the object and the
command that fixes it, and sets `qdrant_operator_peering_object_missing` to 1, until the object exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import metrics
from .api import KubeApi, KubeApiError, kopf_peering

log = logging.getLogger(__name__)

MISSING_RECHECK_SECONDS = 5.0
PRESENT_RECHECK_SECONDS = 60.0
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
class Verdict:
    missing: bool | None  # None: not known, the API server's answer was an error
    why: str = ""


class PeeringKeeper:
    """Makes sure the peering objects kopf uses for `name` exist (see the module's docstring): a
    ClusterKopfPeering when the operator watches the cluster (`namespaces` empty), else a KopfPeering in each
    watched namespace. For a namespace pattern kopf uses one in each matching namespace; none is made here."""

    def __init__(self, kube: KubeApi, name: str, namespaces: Sequence[str]) -> None:
        self._kube = kube
        self.name = name
        self.patterns = tuple(ns for ns in namespaces if _PATTERN & set(ns))
        scopes: Iterable[str | None] = [ns for ns in namespaces if ns not in self.patterns] if namespaces else [None]
        self.objects = tuple(PeeringObject(ns, name) for ns in scopes)
        self._last: dict[PeeringObject, Verdict] = {}
        self._task: asyncio.Task[None] | None = None

    async def verdict(self, obj: PeeringObject) -> Verdict:
        try:
            if await self._kube.kopf_peering_exists(obj.namespace, obj.name):
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
            self._last[obj] = verdict
        return all(v.missing is False for v in self._last.values())

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
