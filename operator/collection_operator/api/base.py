"""Shared building blocks of the three custom resources: wire conventions, references, conditions."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "qdrant.collection-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# The prefix of every finalizer, annotation and label the operator owns.
PREFIX = f"{GROUP}/"
FINALIZER = f"{PREFIX}finalizer"


def cel(rule: str, message: str, **extra: str) -> dict[str, Any]:
    """One x-kubernetes-validations entry (a CEL rule the API server enforces)."""
    return {"rule": rule, "message": message, **extra}


def immutable(field: str) -> dict[str, Any]:
    """A transition rule on the parent object: an optional field may be neither set, changed nor unset
    after creation. (A rule on the field itself would not see it being added or removed.)"""
    return cel(
        f"has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field})",
        f"{field} is immutable: create a new resource to change it",
        fieldPath=f".{field}",
        reason="FieldValueForbidden",
    )


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are errors, never ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(WireModel):
    """Status is written by the operator only; tolerate fields from newer operator versions."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True)

    def to_patch(self) -> dict[str, Any]:
        """The fields that were set, camelCase; an explicit None stays (a merge patch removes that key)."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(StatusModel):
    """A metav1.Condition: one aspect of the resource's state."""

    type: str = Field(
        description="Ready (the summary), Reconciling (work in progress), Stalled (a person must "
        "act) or Paused (reconciling held back by the paused annotation)."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Why, in one CamelCase word (e.g. InSync, ImmutableFieldChanged); see docs/troubleshooting.md.",
    )
    message: str = Field("", max_length=32768, description="What happened, for people.")
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"}, description="Last status change.")
    observed_generation: int | None = Field(None, ge=0, description="The metadata.generation this condition is about.")


CONDITIONS_SCHEMA_EXTRA: dict[str, Any] = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class StatusBase(StatusModel):
    observed_generation: int | None = Field(
        None,
        description="The metadata.generation the conditions are about; when it equals metadata.generation, they "
        "describe the current spec.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling and Stalled (kstatus), plus Paused while paused.",
        json_schema_extra=CONDITIONS_SCHEMA_EXTRA,
    )


class SecretKeyRef(WireModel):
    """A key of a Secret in the resource's own namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret's data.")


class LocalObjectRef(WireModel):
    """A resource in the same namespace."""

    name: str = Field(min_length=1, max_length=253, description="Name of the resource.")


class DeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"
