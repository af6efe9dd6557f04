"""The one status writer: diff the wire form the reconcilers computed with what the resource has, and
merge-patch only the keys that differ."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .api import KubeApi


def changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status keys whose values differ: the body of a merge patch, empty when in sync."""
    return {k: v for k, v in desired.items() if current.get(k) != v}


async def write_status(
    kube: KubeApi, plural: str, namespace: str, name: str, current: Mapping[str, Any], desired: Mapping[str, Any]
) -> dict[str, Any]:
    """Patch what differs; returns the patch (empty: nothing was written)."""
    patch = changes(current, desired)
    if patch:
        await kube.patch_status(plural, namespace, name, patch)
    return patch
