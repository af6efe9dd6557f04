"""Writes the API server recorded in its audit log (Metadata level, one JSON line per write)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


@dataclass
class AuditWindow:
    """Writes appended to the audit log after `opened`; open one, let time pass, then read it."""

    path: Path
    offset: int = 0

    @classmethod
    def open(cls, path: Path) -> AuditWindow:
        return cls(path, path.stat().st_size)

    def writes(self, resource: str, namespace: str, name: str, subresource: str | None = "*") -> list[dict[str, Any]]:
        """Write events on one object; `subresource="*"` means any (including none), None means the object itself."""
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            lines = handle.read().splitlines()
        found = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:  # a line still being written at the end of the file
                continue
            ref = event.get("objectRef") or {}
            if (
                event.get("verb") in WRITE_VERBS
                and ref.get("resource") == resource
                and ref.get("namespace") == namespace
                and ref.get("name") == name
                and (subresource == "*" or ref.get("subresource") == subresource)
            ):
                found.append(event)
        return found
