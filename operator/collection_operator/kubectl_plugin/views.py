"""The plugin's pure parts: the status tree and its rendering, the active operator replica of a kopf peering
object, the approval patch, a plan computed before the change is applied. No I/O: main.py reads and writes, these
decide and format."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..api.collection import VectorCollectionSpec
from ..k8s.peering import Peer, leaders, peers
from ..reconcile.collection import plan_hash
from ..reconcile.collection_step import PAUSED
from ..reconcile.target import APPROVE_PLAN
from .errors import PluginError

AWAITING_APPROVAL = "AwaitingApproval"
NOT_LISTED = "not found in the namespaces listed (in another one, -A shows it; or it does not exist)"


# ----- the status tree: connection -> collections -> snapshots ----------------------------------------------


@dataclass
class Node:
    kind: str
    namespace: str
    name: str
    ready: str = "Unknown"  # the Ready condition's status; "-" for a placeholder of an object not listed
    reason: str = ""
    message: str = ""
    since: str = ""  # Ready's lastTransitionTime: when the verdict last changed
    details: dict[str, Any] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "reason": self.reason,
            "message": self.message,
            "since": self.since,
            **self.details,
            "children": [child.as_json() for child in self.children],
        }


def _node(kind: str, body: Mapping[str, Any], details: dict[str, Any]) -> Node:
    meta, status = body["metadata"], body.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if generation is not None and observed != generation:
        details["observedGeneration"] = f"{observed if observed is not None else '-'} of {generation}"
    if (meta.get("annotations") or {}).get(PAUSED) == "true":
        details["paused"] = True
    return Node(
        kind,
        meta["namespace"],
        meta["name"],
        ready.get("status", "Unknown"),
        ready.get("reason", ""),
        ready.get("message", ""),
        ready.get("lastTransitionTime", ""),
        {k: v for k, v in details.items() if v not in (None, [], "")},
    )


def connection_node(body: Mapping[str, Any]) -> Node:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    endpoints = status.get("endpoints") or [{"url": url} for url in spec.get("endpoints") or [spec.get("url")] if url]
    return _node(
        "QdrantConnection",
        body,
        {
            "health": status.get("health"),
            "version": status.get("serverVersion"),
            "breaker": status.get("circuitBreaker"),
            "endpoints": endpoints,
        },
    )


def collection_node(body: Mapping[str, Any]) -> Node:
    status = body.get("status") or {}
    return _node(
        "VectorCollection",
        body,
        {
            "collection": status.get("collectionName"),
            "qdrant": status.get("qdrantStatus"),
            "points": status.get("pointsCount"),
            "plan": status.get("plan"),
            "drift": status.get("drift") or [],
            "restoredFrom": status.get("restoredFrom"),
        },
    )


def snapshot_node(body: Mapping[str, Any]) -> Node:
    status = body.get("status") or {}
    return _node(
        "CollectionSnapshot",
        body,
        {
            "phase": status.get("phase"),
            "connection": status.get("connection"),
            "schedule": (body.get("spec") or {}).get("schedule"),
            "snapshots": len(status.get("snapshots") or []),
            "lastSnapshot": status.get("lastSnapshotTime"),
            "nextSchedule": status.get("nextScheduleTime"),
        },
    )


def connection_of(collection: Mapping[str, Any]) -> str:
    """The "namespace/name" of the QdrantConnection a VectorCollection names (its own namespace by default)."""
    ref = (collection.get("spec") or {}).get("connectionRef") or {}
    return f"{ref.get('namespace') or collection['metadata']['namespace']}/{ref.get('name', '')}"


def tree(
    connections: Iterable[Mapping[str, Any]],
    collections: Iterable[Mapping[str, Any]],
    snapshots: Iterable[Mapping[str, Any]],
    only: str | None = None,
) -> list[Node]:
    """One root per connection (only the one keyed `only`, "namespace/name", if given). Nothing read is left
    out: a collection whose connection was not listed hangs under a placeholder of that connection, and a
    snapshot whose collection was not listed under a placeholder of the collection, below the connection the
    snapshot records (status.connection)."""
    roots = {node.key: node for node in map(connection_node, connections)}

    def root(key: str) -> Node:
        if key not in roots:
            namespace, _, name = key.partition("/")
            roots[key] = Node("QdrantConnection", namespace, name, "-", message=NOT_LISTED)
        return roots[key]

    by_collection: dict[str, list[Node]] = {}
    for body in snapshots:
        ref = ((body.get("spec") or {}).get("collectionRef") or {}).get("name", "")
        by_collection.setdefault(f"{body['metadata']['namespace']}/{ref}", []).append(snapshot_node(body))
    for body in collections:
        node = collection_node(body)
        node.children = by_collection.pop(node.key, [])
        root(connection_of(body)).children.append(node)
    for key, orphans in by_collection.items():
        namespace, _, name = key.partition("/")
        owner = next((s.details["connection"] for s in orphans if s.details.get("connection")), f"{namespace}/?")
        root(owner).children.append(
            Node("VectorCollection", namespace, name, "-", message=NOT_LISTED, children=orphans)
        )
    for node in roots.values():
        node.children.sort(key=lambda n: n.key)
        for child in node.children:
            child.children.sort(key=lambda n: n.key)
    return [roots[k] for k in sorted(roots) if only is None or k == only]


def _detail_lines(node: Node) -> list[str]:
    if node.ready == "-":  # a placeholder: nothing was read
        return [f"message: {node.message}"]
    d = node.details
    lines = []
    if node.kind == "QdrantConnection":
        lines.append(_pairs(("health", d.get("health")), ("version", d.get("version")), ("breaker", d.get("breaker"))))
        for e in d.get("endpoints") or []:
            extra = [str(e[k]) for k in ("health", "circuitBreaker", "reason") if e.get(k)]
            if e.get("inRotation") is False:
                extra.append("out of rotation")
            lines.append(f"endpoint {e['url']}" + (f" ({', '.join(extra)})" if extra else ""))
    elif node.kind == "VectorCollection":
        lines.append(
            _pairs(("collection", d.get("collection")), ("qdrant", d.get("qdrant")), ("points", d.get("points")))
        )
        if plan := d.get("plan"):
            lines.append(f"plan {plan.get('phase')} {plan.get('hash')}: {plan.get('summary', '')}".rstrip(": "))
        drift = d.get("drift") or []
        lines.append(
            "drift: " + ("; ".join(f"{x['field']} is {x['actual']}, spec says {x['desired']}" for x in drift) or "none")
        )
        if d.get("restoredFrom"):
            lines.append(f"restored from {d['restoredFrom']}")
    else:
        lines.append(
            _pairs(
                ("phase", d.get("phase")),
                ("schedule", d.get("schedule")),
                ("snapshots", d.get("snapshots")),
                ("last", d.get("lastSnapshot")),
                ("next", d.get("nextSchedule")),
            )
        )
    if d.get("paused"):
        lines.append("paused (resume: kubectl qdrant resume " + node.name + ")")
    if d.get("observedGeneration"):
        lines.append(f"observed generation {d['observedGeneration']}: the operator has not caught up yet")
    if node.message:
        lines.append("message: " + " ".join(node.message.splitlines()))
    return [line for line in lines if line]


def _pairs(*pairs: tuple[str, Any]) -> str:
    return "  ".join(f"{k} {v}" for k, v in pairs if v is not None)


def _header(node: Node) -> str:
    verdict = f"Ready={node.ready}" + (f" {node.reason}" if node.reason else "")
    return f"{node.kind} {node.key}  {verdict}" + (f"  since {node.since}" if node.since else "")


def render(roots: Sequence[Node]) -> str:
    """The tree as text, one block per connection, children drawn with box-drawing branches."""
    out: list[str] = []

    def walk(node: Node, lead: str, branch: str, stem: str) -> None:
        out.append(lead + branch + _header(node))
        inner = lead + stem
        out.extend(inner + ("│   " if node.children else "    ") + line for line in _detail_lines(node))
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            walk(child, inner, "└── " if last else "├── ", "    " if last else "│   ")

    for root in roots:
        walk(root, "", "", "")
    return "\n".join(out)


# ----- the active operator replica ----------------------------------------------------------------------------


def active_peer(status: Mapping[str, Any], now: datetime.datetime) -> Peer:
    """The replica kopf lets run: the alive peer with the highest priority, if no other alive peer shares it
    (kopf pauses every replica of a tied top priority). A PluginError says why there is none."""
    top = leaders(status, now)
    if not top:
        listed = len(peers(status))
        raise PluginError(f"no operator replica is alive in the peering object ({listed} listed, none seen lately)")
    if len(top) > 1:
        names = ", ".join(sorted(p.identity for p in top))
        raise PluginError(
            f"no replica is active: {names} share the top priority {top[0].priority}, and kopf pauses them all"
        )
    return top[0]


# ----- approval ------------------------------------------------------------------------------------------------


def pending_plan(body: Mapping[str, Any]) -> dict[str, Any]:
    """The plan awaiting approval, or a PluginError saying there is none."""
    meta = body["metadata"]
    plan = (body.get("status") or {}).get("plan")
    what = f"VectorCollection {meta['namespace']}/{meta['name']}"
    if not plan:
        raise PluginError(f"{what} has no plan to approve (status.plan is empty)")
    if plan.get("phase") != AWAITING_APPROVAL:
        raise PluginError(f"{what} has no plan awaiting approval: its plan {plan.get('hash')} is {plan.get('phase')}")
    if plan.get("generation") is not None and plan["generation"] != meta.get("generation"):
        raise PluginError(
            f"{what}'s plan {plan.get('hash')} is for generation {plan['generation']}, the spec is at generation "
            f"{meta.get('generation')}: wait for the operator to plan the current spec, then approve"
        )
    return dict(plan)


def describe_plan(plan: Mapping[str, Any]) -> str:
    lines = [f"plan {plan.get('hash')}  phase {plan.get('phase')}  generation {plan.get('generation')}"]
    lines.append(f"  {plan.get('summary', '')}")
    lines.extend(f"  - {action}" for action in plan.get("actions") or [])
    notes = [
        "re-indexes" if plan.get("reindex") else "",
        f"migration {plan['migration']}" if plan.get("migration") else "",
        f"~{plan['estimatedVectors']} vectors touched" if plan.get("estimatedVectors") is not None else "",
    ]
    if any(notes):
        lines.append("  " + ", ".join(n for n in notes if n))
    return "\n".join(lines)


def _pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901): ~ and / inside a part escaped."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def approval_patch(body: Mapping[str, Any], plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A JSON patch that sets approve-plan to this plan's hash only if the object still shows this plan for this
    generation: the `test` ops make the API server refuse it (422) when the plan changed after it was read."""
    annotations = body["metadata"].get("annotations")
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/status/plan/hash", "value": plan["hash"]},
        {"op": "test", "path": "/status/plan/phase", "value": AWAITING_APPROVAL},
        {"op": "test", "path": "/metadata/generation", "value": body["metadata"]["generation"]},
    ]
    if annotations is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {APPROVE_PLAN: plan["hash"]}})
    else:
        ops.append({"op": "add", "path": _pointer("metadata", "annotations", APPROVE_PLAN), "value": plan["hash"]})
    return ops


# ----- a plan computed before the change is applied (approval in the same commit) ----------------------------


@dataclass
class Preview:
    """What a manifest's VectorCollection would be planned as against the live object: the hash the operator will
    give its plan (None for a new resource, whose create needs no approval) and the spec fields it changes."""

    namespace: str
    name: str
    hash: str | None
    plan_base: str | None
    changes: list[str]
    approval: str | None  # the approve-plan annotation the manifest carries
    unsettled: str | None = None  # why the live state may still move before the change is applied

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def planned(self) -> bool:
        """A plan may follow: the spec changes, or the live object has not settled on its own spec yet (its plan
        may be waiting: then this is that plan's hash)."""
        return self.hash is not None and (bool(self.changes) or self.unsettled is not None)

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "hash": self.hash,
            "planBase": self.plan_base,
            "changes": self.changes,
            "approval": self.approval,
            "unsettled": self.unsettled,
        }


def _spec(namespace: str, name: str, raw: Any, where: str) -> VectorCollectionSpec:
    try:
        return VectorCollectionSpec.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise PluginError(f"VectorCollection {namespace}/{name} {where}: invalid spec: {problems}") from None


def _leaves(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(_leaves(item, f"{path}.{key}" if path else key))
        return found
    return {path: value}


def spec_changes(before: VectorCollectionSpec, after: VectorCollectionSpec) -> list[str]:
    """The spec's fields that differ, `path: old -> new`, defaults filled on both sides (lists compared whole)."""
    old = _leaves(before.model_dump(mode="json", by_alias=True))
    new = _leaves(after.model_dump(mode="json", by_alias=True))
    return [
        f"{path}: {_value(old.get(path))} -> {_value(new.get(path))}"
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]


def _value(value: Any) -> str:
    return "-" if value is None else json.dumps(value, separators=(",", ":"))


def preview(doc: Mapping[str, Any], namespace: str, live: Mapping[str, Any] | None) -> Preview:
    """The plan `doc` (a VectorCollection manifest) would get if applied now over `live` (the object as the API
    server has it, None if there is none): the same hash the operator computes (reconcile.collection.plan_hash)
    from the spec and the live state it publishes as status.planBase."""
    meta = doc.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or namespace
    if not name:
        raise PluginError("a VectorCollection in the manifest has no metadata.name")
    spec = _spec(namespace, name, doc.get("spec"), "in the manifest")
    approval = (meta.get("annotations") or {}).get(APPROVE_PLAN)
    if live is None:
        return Preview(namespace, name, None, None, ["new VectorCollection: the operator creates it"], approval)
    status = live.get("status") or {}
    base = status.get("planBase")
    if base is None:
        raise PluginError(
            f"VectorCollection {namespace}/{name} has no status.planBase: the operator has not applied it yet (or "
            "is older than this plugin); compute the plan once it is Ready"
        )
    changes = spec_changes(_spec(namespace, name, live.get("spec"), "in the cluster"), spec)
    return Preview(
        namespace,
        name,
        plan_hash(f"{namespace}/{name}", spec, base),
        base,
        changes,
        approval,
        _unsettled(live),
    )


def _unsettled(live: Mapping[str, Any]) -> str | None:
    """Why status.planBase may not be the state the change will meet: a generation not applied yet, a plan of
    its own in flight, or a verdict other than Ready."""
    meta, status = live["metadata"], live.get("status") or {}
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    if status.get("pendingPlan"):
        return f"a plan is {status['pendingPlan']}"
    if status.get("appliedGeneration") != meta.get("generation"):
        return f"generation {meta.get('generation')} is not applied yet (applied: {status.get('appliedGeneration')})"
    if ready.get("status") != "True":
        return f"it is not Ready ({ready.get('reason') or 'no verdict yet'})"
    return None


def describe_preview(p: Preview) -> str:
    if p.hash is None:
        return f"VectorCollection {p.key}: new; its create needs no approval"
    if not p.planned:
        return f"VectorCollection {p.key}: the spec is unchanged, nothing to plan"
    lines = [f"VectorCollection {p.key}: plan {p.hash} (live state {p.plan_base})"]
    lines.extend(f"  - {change}" for change in p.changes or ["the spec is unchanged"])
    if p.unsettled:
        lines.append(f"  warning: the live state may still move ({p.unsettled}): compute again once it is Ready")
    if p.approval == p.hash:
        lines.append(f"  the manifest approves this plan ({APPROVE_PLAN}: {p.hash})")
    else:
        had = f" (it names {p.approval}, another plan)" if p.approval else ""
        lines.append(f'  to approve it in the same commit, annotate the manifest{had}: {APPROVE_PLAN}: "{p.hash}"')
    return "\n".join(lines)


def stale_approval(p: Preview) -> str | None:
    """The problem `plan --check` fails on: the manifest approves a plan, and not this one."""
    if p.approval is None or not p.planned or p.approval == p.hash:
        return None
    return (
        f"VectorCollection {p.key}: the manifest approves plan {p.approval}, but applied now its plan is {p.hash} "
        "(another change, or the live state moved): the operator would not apply it"
    )
