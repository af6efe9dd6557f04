"""VectorCollection spec -> Qdrant's REST shapes, field by field. Explicit, so every name is reviewed.

Only what the spec states is mapped: a field left out is absent here, and Qdrant keeps its default.
"""

from __future__ import annotations

import re
from typing import Any

from ..api.collection import (
    OWNER_METADATA_KEY,
    Hnsw,
    Optimizers,
    PayloadIndex,
    Preset,
    Quantization,
    SparseVector,
    StrictMode,
    Vector,
    VectorCollectionSpec,
)

# Key of the ownership marker in the collection's Qdrant metadata.
OWNER_KEY = OWNER_METADATA_KEY


def _snake(name: str) -> str:
    """A PascalCase enum value as Qdrant spells it: OneAndHalfBits -> one_and_half_bits."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _compact(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


def hnsw(h: Hnsw | None) -> dict[str, Any] | None:
    if h is None:
        return None
    return _compact(
        {
            "m": h.m,
            "ef_construct": h.ef_construct,
            "full_scan_threshold": h.full_scan_threshold,
            "max_indexing_threads": h.max_indexing_threads,
            "on_disk": h.on_disk,
            "payload_m": h.payload_m,
        }
    )


def quantization(q: Quantization | None) -> dict[str, Any] | str | None:
    """Qdrant's quantization_config; "Disabled" is only meaningful in an update."""
    if q is None:
        return None
    if q.scalar is not None:
        return {"scalar": _compact({"type": "int8", "quantile": q.scalar.quantile, "always_ram": q.scalar.always_ram})}
    if q.product is not None:
        return {"product": _compact({"compression": q.product.compression, "always_ram": q.product.always_ram})}
    if q.binary is not None:
        encoding = _snake(q.binary.encoding) if q.binary.encoding else None
        return {"binary": _compact({"always_ram": q.binary.always_ram, "encoding": encoding})}
    return "Disabled"


# What defines a dense vector's space: only a new vector (or a new collection) changes these.
VECTOR_SPACE_KEYS = ("size", "distance", "datatype", "multivector_config")


def vector(v: Vector) -> dict[str, Any]:
    return _compact(
        {
            "size": v.size,
            "distance": v.distance,
            "datatype": v.datatype.lower() if v.datatype else None,
            "on_disk": v.on_disk,
            "multivector_config": {"comparator": "max_sim"} if v.multivector else None,
            "hnsw_config": hnsw(v.hnsw),
            "quantization_config": quantization(v.quantization),
        }
    )


def unnamed(vectors: dict[str, Any]) -> bool:
    """Qdrant's bare VectorParams (the unnamed vector) rather than a map of named ones; a vector may be named
    "size", so the key alone does not tell."""
    return isinstance(vectors.get("size"), int)


def vectors(spec: VectorCollectionSpec) -> dict[str, Any] | None:
    """One unnamed vector is Qdrant's bare VectorParams; named ones are a map."""
    if not spec.vectors:
        return None
    if len(spec.vectors) == 1 and spec.vectors[0].name == "":
        return vector(spec.vectors[0])
    return {v.name: vector(v) for v in spec.vectors}


def sparse_vector(s: SparseVector) -> dict[str, Any]:
    index = {}
    if s.index:
        index = _compact(
            {
                "on_disk": s.index.on_disk,
                "full_scan_threshold": s.index.full_scan_threshold,
                "datatype": s.index.datatype.lower() if s.index.datatype else None,
                "memory": s.index.memory.lower() if s.index.memory else None,
            }
        )
    return _compact({"index": index or None, "modifier": s.modifier.lower() if s.modifier else None})


def vector_name_config(v: Vector | SparseVector) -> dict[str, Any]:
    """The VectorNameConfig of PUT /collections/{name}/vectors/{vector}: only what defines the vector space
    (index, quantization and storage are changed afterwards with a PATCH)."""
    if isinstance(v, SparseVector):
        block = sparse_vector(v)
        return {
            "sparse": _compact({"modifier": block.get("modifier"), "datatype": block.get("index", {}).get("datatype")})
        }
    dense = vector(v)
    return {"dense": {k: dense[k] for k in VECTOR_SPACE_KEYS if k in dense}}


def optimizers(o: Optimizers | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return _compact(
        {
            "deleted_threshold": o.deleted_threshold,
            "vacuum_min_vector_number": o.vacuum_min_vector_number,
            "default_segment_number": o.default_segment_number,
            "max_segment_size": o.max_segment_size,
            "memmap_threshold": o.memmap_threshold,
            "indexing_threshold": o.indexing_threshold,
            "flush_interval_sec": o.flush_interval_sec,
            "max_optimization_threads": o.max_optimization_threads,
        }
    )


def strict_mode(s: StrictMode | None) -> dict[str, Any] | None:
    """Qdrant's strict_mode_config: the same names in snake_case, only the limits the spec states."""
    return None if s is None else s.model_dump(exclude_none=True)


def payload_index_schema(index: PayloadIndex) -> dict[str, Any]:
    """The field_schema of PUT /collections/{name}/index: always the params form, so it compares."""
    params = index.params.model_dump(exclude_none=True) if index.params else {}
    if "tokenizer" in params:
        params["tokenizer"] = params["tokenizer"].lower()
    return {"type": index.type.lower(), **params}


def create_body(spec: VectorCollectionSpec, owner: str) -> dict[str, Any]:
    """PUT /collections/{name}. `owner` is the ownership marker, "namespace/name/uid"."""
    return _without_disabled(desired_config(spec, owner))


def desired_config(spec: VectorCollectionSpec, owner: str) -> dict[str, Any]:
    """The collection's configuration as the spec states it, in create-body shape; a disabled
    quantization stays "Disabled" so that an update can switch quantization off."""
    return _compact(
        {
            "vectors": vectors(spec) or {},
            "sparse_vectors": {s.name: sparse_vector(s) for s in spec.sparse_vectors} or None,
            "shard_number": spec.shard_number,
            "sharding_method": spec.sharding_method.lower() if spec.sharding_method else None,
            "replication_factor": spec.replication_factor,
            "write_consistency_factor": spec.write_consistency_factor,
            "on_disk_payload": spec.on_disk_payload,
            "hnsw_config": hnsw(spec.hnsw),
            "optimizers_config": optimizers(spec.optimizers),
            "wal_config": _compact(
                {"wal_capacity_mb": spec.wal.capacity_mb, "wal_segments_ahead": spec.wal.segments_ahead}
            )
            if spec.wal
            else None,
            "quantization_config": quantization(spec.quantization),
            "strict_mode_config": strict_mode(spec.strict_mode),
            "metadata": {**spec.metadata, OWNER_KEY: owner},
        }
    )


def _without_disabled(body: dict[str, Any]) -> dict[str, Any]:
    """Creating with quantization "Disabled" is creating without quantization (Qdrant refuses the word)."""
    return {
        k: _without_disabled(v) if isinstance(v, dict) else v
        for k, v in body.items()
        if not (k == "quantization_config" and v == "Disabled")
    }


# -------------------------------------------------------------------------------------- presets

_PRESET_HNSW = Hnsw(m=64, ef_construct=1024, full_scan_threshold=20000)
_PRESET_OPTIMIZERS = Optimizers(default_segment_number=4, memmap_threshold=100000)
_INT8_IN_RAM = Quantization.model_validate({"scalar": {"type": "Int8", "quantile": 0.99, "alwaysRam": True}})


def _overlay(base: Any, explicit: Any) -> Any:
    """Explicit fields win over a preset's, field by field."""
    if base is None or explicit is None:
        return explicit if explicit is not None else base
    if isinstance(explicit, Quantization):
        return explicit  # one of four shapes: never merged with another
    merged = base.model_dump(exclude_none=True) | explicit.model_dump(exclude_none=True)
    return type(explicit).model_validate(merged)


def apply_preset(spec: VectorCollectionSpec) -> VectorCollectionSpec:
    """The spec with its preset's defaults filled in where the user left fields out."""
    if spec.preset is None:
        return spec
    update: dict[str, Any] = {}
    if spec.preset in (Preset.EMBEDDINGS, Preset.HIGH_RECALL):
        update["hnsw"] = _overlay(_PRESET_HNSW, spec.hnsw)
        update["optimizers"] = _overlay(_PRESET_OPTIMIZERS, spec.optimizers)
        disabled = Quantization(disabled=True)
        update["quantization"] = spec.quantization or (_INT8_IN_RAM if spec.preset == Preset.EMBEDDINGS else disabled)
    else:  # LowMemory
        update["hnsw"] = _overlay(Hnsw(on_disk=True), spec.hnsw)
        update["on_disk_payload"] = True if spec.on_disk_payload is None else spec.on_disk_payload
        update["quantization"] = spec.quantization or _INT8_IN_RAM
        update["vectors"] = [v.model_copy(update={"on_disk": True}) if v.on_disk is None else v for v in spec.vectors]
    return spec.model_copy(update=update)
