"""VectorCollection: observe -> diff -> plan -> status. Pure: no kopf, no HTTP.

`plan()` compares the desired Qdrant configuration (from the spec, see mapping.py) with what
GET /collections/{name} returns, leaf by leaf, for the fields the spec states. The result is a value
that says exactly what the handler will do; unit tests inspect it.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic.alias_generators import to_camel

from ..api.collection import DriftPolicy, SparseVector, Vector, VectorCollectionSpec
from . import mapping

NONE: Mapping[str, str] = MappingProxyType({})
# Leaves that Qdrant cannot change on an existing collection.
IMMUTABLE_LEAVES = {"size", "distance", "datatype", "multivector_config", "shard_number", "sharding_method"}
# A dense vector's settings a PATCH can change (a new vector is created without them).
MUTABLE_VECTOR_BLOCKS = {"hnsw_config", "quantization_config", "on_disk"}
# What Qdrant means when it leaves these out of GET /collections/{name}.
LIVE_DEFAULTS = {
    "sharding_method": "auto",
    "datatype": "float32",
    "on_disk": False,
    "always_ram": False,
    "enabled": False,  # strict mode: absent is off
}
# PATCH blocks that make Qdrant rebuild segments: one such change at a time per connection.
REINDEXING_BLOCKS = {"vectors", "hnsw_config", "quantization_config", "sparse_vectors", "optimizers_config"}


class Ownership(enum.Enum):
    OURS = "ours"
    UNMARKED = "unmarked"  # exists, created outside the operator
    OTHER = "other"  # marked by another VectorCollection


@dataclass(frozen=True)
class Difference:
    path: str  # spec-style path, e.g. "vectors[text].hnsw.m"
    desired: Any
    actual: Any

    def as_status(self) -> dict[str, str]:
        return {"field": self.path, "desired": _show(self.desired), "actual": _show(self.actual)}


@dataclass
class Plan:
    create: dict[str, Any] | None = None
    update: dict[str, Any] = field(default_factory=dict)
    create_indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_indexes: list[str] = field(default_factory=list)
    alias_actions: list[dict[str, Any]] = field(default_factory=list)
    drift: list[Difference] = field(default_factory=list)  # mutable differences found
    immutable: list[Difference] = field(default_factory=list)  # need a new collection: nothing is done
    alias_conflicts: list[str] = field(default_factory=list)  # declared aliases Qdrant cannot give us (see plan)
    # Named vectors added (name -> VectorNameConfig) and removed, dense and sparse alike (Qdrant 1.18+).
    create_vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_vectors: list[str] = field(default_factory=list)
    kept_vectors: list[str] = field(default_factory=list)  # in Qdrant, not in the spec, never declared here: left

    @property
    def reindexes(self) -> bool:
        return bool(REINDEXING_BLOCKS & self.update.keys())

    def hold(self, *, everything: bool = False) -> None:
        """Write none of the in-place changes (Report, an immutable difference); `everything`: not the create
        nor the aliases either (an alias conflict)."""
        self.update, self.create_indexes, self.delete_indexes = {}, {}, []
        self.create_vectors, self.delete_vectors = {}, []
        if everything:
            self.create, self.alias_actions = None, []

    @property
    def writes(self) -> bool:
        return bool(
            self.create
            or self.update
            or self.create_indexes
            or self.delete_indexes
            or self.alias_actions
            or self.create_vectors
            or self.delete_vectors
        )


def owner_marker(namespace: str, name: str, uid: str) -> str:
    return f"{namespace}/{name}/{uid}"


def ownership(info: dict[str, Any], marker: str) -> tuple[Ownership, str | None]:
    owner = ((info.get("config") or {}).get("metadata") or {}).get(mapping.OWNER_KEY)
    if owner is None:
        return Ownership.UNMARKED, None
    return (Ownership.OURS if owner == marker else Ownership.OTHER), owner


def _show(value: Any) -> str:
    return "absent" if value is None else str(value)


def _same(desired: Any, actual: Any) -> bool:
    if isinstance(desired, float) or isinstance(actual, float):
        return isinstance(actual, int | float) and math.isclose(desired, actual, rel_tol=1e-6)
    return bool(desired == actual)


def _spec_path(qdrant_path: list[str]) -> str:
    names = {
        "hnsw_config": "hnsw",
        "optimizer_config": "optimizers",
        "optimizers_config": "optimizers",
        "quantization_config": "quantization",
        "multivector_config": "multivector",
        "strict_mode_config": "strict_mode",
        "params": None,
    }
    out = ""
    for i, part in enumerate(qdrant_path):
        if i > 0 and qdrant_path[i - 1] in ("vectors", "sparse_vectors"):
            out += f"[{part}]"
            continue
        renamed = names.get(part, part)
        if renamed is not None:
            out += ("." if out else "") + to_camel(renamed)
    return out


def _leaves(desired: Any, actual: Any, path: list[str]) -> list[tuple[list[str], Any, Any]]:
    """Every leaf the spec states whose live value differs. A quantization method is one leaf: a
    scalar config never merges with a binary one."""
    if isinstance(desired, dict) and path[-1:] != ["quantization_config"]:
        actual = actual if isinstance(actual, dict) else {}
        return [d for key, value in desired.items() for d in _leaves(value, actual.get(key), [*path, key])]
    if path[-1:] == ["quantization_config"]:
        if desired == "Disabled":
            return [] if actual is None else [(path, desired, actual)]
        if not isinstance(actual, dict) or actual.keys() != desired.keys():
            return [(path, desired, actual)]
        method = next(iter(desired))
        return [d for d in _leaves(desired[method], actual[method], [*path, method])]
    if actual is None:
        actual = LIVE_DEFAULTS.get(path[-1])
    return [] if _same(desired, actual) else [(path, desired, actual)]


def plan(
    spec: VectorCollectionSpec,
    info: dict[str, Any] | None,
    marker: str,
    *,
    collection: str,
    live_aliases: Mapping[str, str] = NONE,
    managed_indexes: Collection[str] = (),
    managed_aliases: Collection[str] = (),
    adopt: bool = False,
    collections: Collection[str] = (),
    managed_metadata: Collection[str] = (),
    in_place_vectors: bool = False,
    managed_vectors: Collection[str] = (),
) -> Plan:
    """The minimal steps from `info` (None: the collection does not exist) to `spec`.

    live_aliases maps every alias on the server to its collection; managed_* are what the operator
    created earlier (status), the only ones it removes when they leave the spec; `collections` are the
    server's collection names (an alias can never take one). A plan with alias conflicts writes nothing.
    `in_place_vectors`: the server adds and removes named vectors (Qdrant 1.18+); otherwise a changed set of
    vector names is immutable. Only vectors in `managed_vectors` (declared here before) are ever removed.
    """
    spec = mapping.apply_preset(spec)
    out = Plan()
    desired_indexes = {i.field: mapping.payload_index_schema(i) for i in spec.payload_indexes}
    if info is None:
        out.create = mapping.create_body(spec, marker)
        out.create_indexes = desired_indexes
    else:
        _plan_update(spec, info, out, adopt, marker, in_place_vectors, managed_vectors)
        _plan_metadata(spec.metadata, (info.get("config") or {}).get("metadata") or {}, managed_metadata, out)
        _plan_indexes(desired_indexes, info.get("payload_schema") or {}, managed_indexes, out)
    if spec.drift_policy == DriftPolicy.REPORT and info is not None:
        out.hold()  # Report: differences found in Qdrant are listed, never written
    if out.immutable:
        out.hold()
        return out
    _plan_aliases(spec.aliases, collection, live_aliases, managed_aliases, out, set(collections) | {collection})
    if out.alias_conflicts:
        out.hold(everything=True)
    return out


def _plan_update(
    spec: VectorCollectionSpec,
    info: dict[str, Any],
    out: Plan,
    adopt: bool,
    marker: str,
    in_place_vectors: bool,
    managed_vectors: Collection[str] = (),
) -> None:
    config = info.get("config") or {}
    params = config.get("params") or {}
    desired = mapping.desired_config(spec, marker)
    live_vectors = params.get("vectors") or {}
    want_vectors = desired.pop("vectors")
    unnamed = mapping.unnamed(want_vectors)
    want_sparse = desired.pop("sparse_vectors", {})
    live_sparse = params.get("sparse_vectors") or {}
    shape_changed = unnamed != mapping.unnamed(live_vectors)  # unnamed <-> named: never in place
    dense_changed = not unnamed and want_vectors.keys() != live_vectors.keys()
    sparse_changed = bool(want_sparse) and want_sparse.keys() != live_sparse.keys()
    if shape_changed or dense_changed or sparse_changed:
        live_dense = {} if unnamed else live_vectors
        in_place = in_place_vectors and not shape_changed
        if not in_place or not _plan_vector_set(spec, live_dense, live_sparse, managed_vectors, out):
            if shape_changed or dense_changed:
                out.immutable.append(Difference("vectors", _vector_names(want_vectors), _vector_names(live_vectors)))
            else:
                out.immutable.append(Difference("sparseVectors", sorted(want_sparse), sorted(live_sparse)))
            return

    comparisons: list[tuple[list[str], Any, Any]] = []
    for name, wanted in ({"": want_vectors} if unnamed else want_vectors).items():
        live = live_vectors if unnamed else live_vectors.get(name)
        if name not in out.create_vectors:
            comparisons += [(["vectors", name, *p[2:]], d, a) for p, d, a in _leaves(wanted, live, ["vectors", name])]
    common_sparse = {name: wanted for name, wanted in want_sparse.items() if name not in out.create_vectors}
    comparisons += _leaves(common_sparse, live_sparse, ["sparse_vectors"])
    for key in ("shard_number", "sharding_method", "replication_factor", "write_consistency_factor", "on_disk_payload"):
        if key in desired:
            comparisons += _leaves(desired[key], params.get(key), ["params", key])
    blocks = {
        "hnsw_config": "hnsw_config",
        "optimizers_config": "optimizer_config",
        "quantization_config": "quantization_config",
        "wal_config": "wal_config",
        "strict_mode_config": "strict_mode_config",
    }
    for want_key, live_key in blocks.items():
        if want_key in desired:
            comparisons += _leaves(desired[want_key], config.get(live_key), [want_key])

    for path, want, live in comparisons:
        diff = Difference(_spec_path(path), want, live)
        # Every sparse vector setting is changed in place (Qdrant 1.19 PATCHes its datatype too).
        # path[1] of a vector's leaf is its name, which may be any word (a vector named "size" is fine)
        keys = path[2:] if path[0] == "vectors" else path
        if path[0] == "wal_config" or (path[0] != "sparse_vectors" and IMMUTABLE_LEAVES & set(keys)):
            out.immutable.append(diff)
        else:
            out.drift.append(diff)
            _add_to_patch(out.update, path, spec, unnamed, desired)
    if adopt:
        out.update.setdefault("metadata", {})[mapping.OWNER_KEY] = marker


def _plan_metadata(want: dict[str, str], live: dict[str, Any], managed: Collection[str], out: Plan) -> None:
    """Metadata key by key (Qdrant's PATCH merges keys; null removes one). The ownership marker is never
    compared here; a key leaves Qdrant only if this resource declared it (status.metadataKeys)."""
    for key, value in want.items():
        if value != live.get(key):
            out.drift.append(Difference(f"metadata[{key}]", value, live.get(key)))
            out.update.setdefault("metadata", {})[key] = value
    for key in managed:
        if key not in want and key in live and key != mapping.OWNER_KEY:
            out.update.setdefault("metadata", {})[key] = None


def _plan_vector_set(
    spec: VectorCollectionSpec,
    live_dense: dict[str, Any],
    live_sparse: dict[str, Any],
    managed: Collection[str],
    out: Plan,
) -> bool:
    """Named vectors the spec adds or drops, planned in place (Qdrant 1.18+): each new one created, then its
    index, quantization and storage settings set by the PATCH; each one the spec no longer has and that this
    resource declared before (`managed`, from status.vectorNames) deleted, with its data. A vector in Qdrant the
    spec never declared (added by hand, or there before an adoption) is left with its data (`kept_vectors`).
    `live_dense` is empty for an unnamed vector (unchanged here: only sparse ones may change).

    False (immutable, nothing planned) for "" among named vectors (what Qdrant leaves after a named vector is
    added to an unnamed collection) and for a name that would change between dense and sparse (never a delete
    and re-create of a name the spec still has). Sparse vectors count only when the spec lists some, as
    everywhere else."""
    if "" in live_dense:
        return False
    dense = {v.name: v for v in spec.vectors if v.name}
    sparse = {s.name: s for s in spec.sparse_vectors}
    added: list[Vector | SparseVector] = [v for n, v in dense.items() if n not in live_dense]
    added += [s for n, s in sparse.items() if n not in live_sparse]
    extra = [n for n in live_dense if n not in dense]
    extra += [n for n in (live_sparse if sparse else {}) if n not in sparse]
    removed = [n for n in extra if n in managed]
    out.kept_vectors += [n for n in extra if n not in managed]
    if any(v.name in (live_sparse if isinstance(v, Vector) else live_dense) for v in added):
        return False
    for v in added:
        path = f"{'vectors' if isinstance(v, Vector) else 'sparseVectors'}[{v.name}]"
        config = mapping.vector_name_config(v)
        out.create_vectors[v.name] = config
        out.drift.append(Difference(path, next(iter(config.values())), None))
        if isinstance(v, SparseVector):
            if v.index is not None:  # the whole block, as for a sparse vector that drifted
                out.update.setdefault("sparse_vectors", {})[v.name] = mapping.sparse_vector(v)
            continue
        tuning = {k: x for k, x in mapping.vector(v).items() if k in MUTABLE_VECTOR_BLOCKS and x != "Disabled"}
        if tuning:
            out.update.setdefault("vectors", {})[v.name] = tuning
    for name in removed:
        kind = "vectors" if name in live_dense else "sparseVectors"
        out.delete_vectors.append(name)
        out.drift.append(Difference(f"{kind}[{name}]", None, (live_dense if kind == "vectors" else live_sparse)[name]))
    return True


def _vector_names(vectors: dict[str, Any]) -> list[str]:
    return [""] if mapping.unnamed(vectors) else sorted(vectors)


def _add_to_patch(
    patch: dict[str, Any], path: list[str], spec: VectorCollectionSpec, unnamed: bool, desired: dict[str, Any]
) -> None:
    """Put the whole desired block that contains a drifting leaf into the PATCH body."""
    head = path[0]
    if head == "vectors":
        name, block = path[1], path[2]
        wanted = mapping.vector(next(v for v in spec.vectors if v.name == name or unnamed))
        patch.setdefault("vectors", {}).setdefault(name, {})[block] = wanted[block]
    elif head == "sparse_vectors":
        wanted_sparse = next(s for s in spec.sparse_vectors if s.name == path[1])
        patch.setdefault("sparse_vectors", {})[path[1]] = mapping.sparse_vector(wanted_sparse)
    elif head == "params":
        patch.setdefault("params", {})[path[1]] = desired[path[1]]
    else:
        patch[head] = desired[head]


def _plan_indexes(
    desired: dict[str, dict[str, Any]], live: dict[str, Any], managed: Collection[str], out: Plan
) -> None:
    for name, schema in desired.items():
        have = live.get(name)
        if have is None:
            out.create_indexes[name] = schema
            continue
        live_params = {"type": have.get("data_type"), **(have.get("params") or {})}
        changed = [k for k, v in schema.items() if not _same(v, live_params.get(k))]
        if changed:
            out.drift.append(Difference(f"payloadIndexes[{name}]", schema, live_params))
            out.delete_indexes.append(name)  # a payload index is replaced, not patched
            out.create_indexes[name] = schema
    out.delete_indexes += [name for name in managed if name not in desired and name in live]


def _plan_aliases(
    wanted: list[str], collection: str, live: Mapping[str, str], managed: Collection[str], out: Plan, names: set[str]
) -> None:
    for alias in wanted:
        holder = live.get(alias)
        if holder is None and alias in names:
            out.alias_conflicts.append(alias)  # the name of a collection (maybe this one's own)
        elif holder is None:
            out.alias_actions.append({"create_alias": {"collection_name": collection, "alias_name": alias}})
        elif holder != collection:
            out.alias_conflicts.append(alias)  # never taken from another collection
    for alias in managed:
        if alias not in wanted and live.get(alias) == collection:
            out.alias_actions.append({"delete_alias": {"alias_name": alias}})


def observed_status(info: dict[str, Any]) -> dict[str, Any]:
    """The status fields (snake_case) read from GET /collections/{name}."""
    params = (info.get("config") or {}).get("params") or {}
    return {
        "qdrant_status": info.get("status"),
        "points_count": info.get("points_count"),
        "indexed_vectors_count": info.get("indexed_vectors_count"),
        "segments_count": info.get("segments_count"),
        "shard_number": params.get("shard_number"),
        "replication_factor": params.get("replication_factor"),
    }


def plan_actions(p: Plan, collection: str) -> list[str]:
    """The plan's steps, one line each, in the order they run: what a reviewer reads in status.plan."""
    out = [f"create collection {collection}"] if p.create is not None else []
    out += [f"add vector {n} {_show(next(iter(c.values())))}" for n, c in p.create_vectors.items()]
    whole = {f"{kind}[{n}]" for kind in ("vectors", "sparseVectors") for n in [*p.create_vectors, *p.delete_vectors]}
    if p.update:
        out += [
            f"set {d.path}: {_show(d.actual)} -> {_show(d.desired)}"
            for d in p.drift
            if not d.path.startswith("payloadIndexes[") and d.path not in whole
        ]
        metadata = p.update.get("metadata") or {}
        out += [f"remove metadata key {key}" for key, value in metadata.items() if value is None]
        if mapping.OWNER_KEY in metadata:
            out.append(f"mark {collection} as managed by this resource (adopt)")
    out += [f"drop payload index {f}" for f in p.delete_indexes]
    out += [f"create payload index {f} ({s.get('type')})" for f, s in sorted(p.create_indexes.items())]
    for action in p.alias_actions:
        verb, body = next(iter(action.items()))
        out.append(f"{verb.replace('_', ' ')} {body['alias_name']}")
    out += [f"remove vector {n} and its data" for n in p.delete_vectors]
    return out


def live_digest(info: Mapping[str, Any] | None, applied_generation: int | None) -> str:
    """The live state a plan is computed against, in 12 hex digits: the collection's configuration and payload
    indexes as Qdrant reports them (not its counts, which move with every write), and the generation last applied in
    full. The generation pins the history the plan's other inputs come from (which vectors, metadata keys and
    indexes this resource manages), and makes a plan met again after another generation was applied (A -> B, B -> A,
    A -> B) a new plan rather than one approved long ago. The operator publishes it as status.planBase."""
    indexes = {
        field_name: {"type": schema.get("data_type"), "params": schema.get("params")}
        for field_name, schema in ((info or {}).get("payload_schema") or {}).items()
    }
    state = {
        "config": (info or {}).get("config"),
        "indexes": indexes if info is not None else None,
        "applied": applied_generation,
    }
    return _digest(state)


def plan_hash(resource: str, spec: VectorCollectionSpec, live: str, kind: str = "") -> str:
    """The plan's identity, the value the approve-plan annotation must carry: the resource (namespace/name), its
    whole spec as validated (defaults filled, so a manifest that leaves them out hashes alike) and the live state it
    meets (live_digest). A plan is a function of these, so equal hashes mean the same steps on the same state; any
    other spec, or a state that moved, is another hash. It does not need the plan's steps, so CI can compute it
    before merging from the manifest and status.planBase (`kubectl qdrant plan`). `kind` tells apart a second plan
    of the same spec and state (a blue/green switch before re-embedding is complete)."""
    return _digest(
        {"resource": resource, "spec": spec.model_dump(mode="json", by_alias=True), "live": live, "kind": kind}
    )


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def estimated_vectors(info: dict[str, Any] | None, vectors_touched: int | None = None) -> int | None:
    """points x vectors: the cost of re-indexing or copying the collection (None before it exists)."""
    if info is None:
        return None
    params = (info.get("config") or {}).get("params") or {}
    dense = params.get("vectors") or {}
    count = 1 if mapping.unnamed(dense) else len(dense)
    count += len(params.get("sparse_vectors") or {})
    return int(info.get("points_count") or 0) * (vectors_touched if vectors_touched is not None else max(count, 1))
