"""The vocabulary every step of a VectorCollection's reconcile shares: the resource as Kubernetes has it
(Target), the outcome it gets back, and the one way to add status fields to that outcome. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.base import PREFIX
from ..api.collection import VectorCollectionSpec, VectorCollectionStatus
from . import reasons
from .collection import owner_marker
from .outcome import Outcome

APPROVE_PLAN = f"{PREFIX}approve-plan"  # its value: the hash of the plan a person approved
# Verdicts that saw the collection, held by another.
EXISTS_ELSEWHERE = (reasons.RESOURCE_CONFLICT, reasons.ALREADY_EXISTS, reasons.ADOPTION_NOT_ALLOWED)
CollectionOutcome = Outcome[VectorCollectionStatus]


@dataclass(frozen=True)
class Target:
    """A VectorCollection as Kubernetes has it; `status` is the one the operator last wrote."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]  # as written: validated by the step, which reports an invalid one
    status: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, body: Mapping[str, Any], status: Mapping[str, Any]) -> Target:
        meta = body["metadata"]
        return cls(
            meta["namespace"],
            meta["name"],
            meta["uid"],
            meta.get("generation", 0),
            body["spec"],
            status,
            meta.get("annotations") or {},
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def connection(self) -> str:
        """The QdrantConnection's "namespace/name"."""
        ref = self.spec["connectionRef"]
        return f"{ref.get('namespace') or self.namespace}/{ref['name']}"

    @property
    def marker(self) -> str:
        return owner_marker(self.namespace, self.name, self.uid)

    @property
    def approved(self) -> str | None:
        """The approve-plan annotation: the hash of a plan a person approved."""
        return self.annotations.get(APPROVE_PLAN)

    @property
    def ever_reconciled(self) -> bool:
        """A generation of this resource was applied to Qdrant in full once (status.appliedGeneration)."""
        return self.status.get("appliedGeneration") is not None

    @property
    def seen_in_qdrant(self) -> bool:
        """The operator has observed or created this collection before (e.g. it was still optimizing), or
        found it held by someone else: then it looks before any create, so a conflict costs one read."""
        ready: dict[str, Any] = next((c for c in self.status.get("conditions") or [] if c.get("type") == "Ready"), {})
        return (
            self.ever_reconciled
            or self.status.get("qdrantStatus") is not None
            or ready.get("reason") in EXISTS_ELSEWHERE
        )


def collection_name(spec: VectorCollectionSpec, resource_name: str) -> str:
    return spec.collection_name or resource_name


def status(**fields: Any) -> VectorCollectionStatus:
    """A status holding exactly these fields (the writer sends only what was set)."""
    return VectorCollectionStatus.model_validate(fields)


def with_fields(outcome: CollectionOutcome, **fields: Any) -> CollectionOutcome:
    """`outcome` with these status fields added; they replace any of the same name it set already."""
    outcome.status = status(**{**outcome.status.model_dump(exclude_unset=True), **fields})
    return outcome
