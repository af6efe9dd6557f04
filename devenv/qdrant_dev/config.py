"""A collection's full config: the create request over Qdrant's defaults, and a PATCH applied to it."""

from __future__ import annotations

from typing import Any

from qdrant_client.http import models as m

from devenv.qdrant_dev.errors import wrong_input


def default_config(req: m.CreateCollection) -> m.CollectionConfig:
    """A new collection's full config: the request over the defaults of Qdrant's config.yaml (1.19)."""
    hnsw = m.HnswConfig(m=16, ef_construct=100, full_scan_threshold=10000, max_indexing_threads=0, on_disk=False)
    optimizers = m.OptimizersConfig(
        deleted_threshold=0.2,
        vacuum_min_vector_number=1000,
        default_segment_number=0,
        max_segment_size=None,
        memmap_threshold=None,
        indexing_threshold=10000,
        flush_interval_sec=5,
        max_optimization_threads=None,
    )
    wal = m.WalConfig(wal_capacity_mb=32, wal_segments_ahead=0)

    def merged(base: Any, diff: Any) -> Any:
        return base if diff is None else base.model_copy(update=diff.model_dump(exclude_none=True))

    return m.CollectionConfig(
        params=m.CollectionParams(
            vectors=req.vectors,
            shard_number=req.shard_number or 1,
            sharding_method=req.sharding_method,
            replication_factor=req.replication_factor or 1,
            write_consistency_factor=req.write_consistency_factor or 1,
            on_disk_payload=True if req.on_disk_payload is None else req.on_disk_payload,
            sparse_vectors=req.sparse_vectors,
        ),
        hnsw_config=merged(hnsw, req.hnsw_config),
        optimizer_config=merged(optimizers, req.optimizers_config),
        wal_config=merged(wal, req.wal_config),
        quantization_config=req.quantization_config,
        # Qdrant keeps the strict mode as given, without defaults; a collection created without one has none.
        strict_mode_config=m.StrictModeConfigOutput(**req.strict_mode_config.model_dump(exclude_none=True))
        if req.strict_mode_config
        else None,
        metadata=req.metadata,
    )


def updated_config(config: m.CollectionConfig, req: m.UpdateCollection) -> tuple[m.CollectionConfig, bool]:
    """Apply a PATCH; also says whether the change makes Qdrant rebuild segments (re-index)."""
    new = config.model_copy(deep=True)
    reindex = False
    if req.vectors:
        for name, diff in req.vectors.items():
            target = _vector_params(new, name)
            changes: dict[str, Any] = {}
            if diff.hnsw_config is not None:
                current = target.hnsw_config.model_dump(exclude_none=True) if target.hnsw_config else {}
                changes["hnsw_config"] = m.HnswConfigDiff(
                    **{**current, **diff.hnsw_config.model_dump(exclude_none=True)}
                )
            if diff.quantization_config is not None:
                q = diff.quantization_config
                changes["quantization_config"] = None if isinstance(q, m.Disabled) else q
            if diff.on_disk is not None:
                changes["on_disk"] = diff.on_disk
            _set_vector_params(new, name, target.model_copy(update=changes))
            reindex = reindex or bool(changes)
    if req.optimizers_config is not None:
        new.optimizer_config = new.optimizer_config.model_copy(
            update=req.optimizers_config.model_dump(exclude_none=True)
        )
        reindex = True
    if req.params is not None:
        given = req.params.model_dump(exclude_none=True)
        new.params = new.params.model_copy(update=given)
        reindex = reindex or "on_disk_payload" in given
    if req.hnsw_config is not None:
        new.hnsw_config = new.hnsw_config.model_copy(update=req.hnsw_config.model_dump(exclude_none=True))
        reindex = True
    if req.quantization_config is not None:
        q = req.quantization_config
        new.quantization_config = None if isinstance(q, m.Disabled) else q
        reindex = True
    if req.sparse_vectors:
        sparse = dict(new.params.sparse_vectors or {})
        for name, diff in req.sparse_vectors.items():
            if name not in sparse:
                raise wrong_input(f"Not existing vector name error: {name}")
            sparse[name] = _merged_sparse(sparse[name], diff)
        new.params.sparse_vectors = sparse
        reindex = True
    if req.strict_mode_config is not None:
        current = new.strict_mode_config.model_dump(exclude_none=True) if new.strict_mode_config else {}
        new.strict_mode_config = m.StrictModeConfigOutput(
            **{**current, **req.strict_mode_config.model_dump(exclude_none=True)}
        )
    if req.metadata is not None and new.metadata is None:
        new.metadata = dict(req.metadata)  # as Qdrant does: the first metadata is taken as given, nulls too
    elif req.metadata is not None:
        # Qdrant merges metadata keys; a key set to null is removed.
        meta = {**new.metadata, **req.metadata}
        new.metadata = {k: v for k, v in meta.items() if v is not None}
    return new, reindex


def _merged_sparse(current: m.SparseVectorParams, diff: m.SparseVectorParams) -> m.SparseVectorParams:
    """Qdrant merges a sparse vector's PATCH field by field, into its index parameters too."""
    index = current.index
    if diff.index is not None:
        given = diff.index.model_dump(exclude_none=True)
        index = index.model_copy(update=given) if index else m.SparseIndexParams(**given)
    return current.model_copy(update={"index": index, "modifier": diff.modifier or current.modifier})


def _vector_params(config: m.CollectionConfig, name: str) -> m.VectorParams:
    vectors = config.params.vectors
    if isinstance(vectors, m.VectorParams) and name == "":
        return vectors
    if isinstance(vectors, dict) and name in vectors:
        return vectors[name]
    raise wrong_input(f"Not existing vector name error: {name}")


def _set_vector_params(config: m.CollectionConfig, name: str, params: m.VectorParams) -> None:
    if isinstance(config.params.vectors, dict):
        config.params.vectors = {**config.params.vectors, name: params}
    else:
        config.params.vectors = params


def with_vector(config: m.CollectionConfig, name: str, req: Any) -> m.CollectionConfig | None:
    """PUT /collections/{name}/vectors/{vector} (a DenseVectorNameConfig or SparseVectorNameConfig) on the
    config, checked as Qdrant 1.19 checks it (collection/vector_name_schema.rs): None when the name exists with the
    same schema (Qdrant answers 200 and changes nothing), else the new config. A name taken with another schema,
    or by the other kind, is a 400. Only the schema is stored (index, quantization and storage come from a PATCH);
    a named vector added to an unnamed collection turns its vectors into a map holding the unnamed one under "",
    as in Qdrant."""
    new = config.model_copy(deep=True)
    params = new.params
    vectors = params.vectors
    dense = {"": vectors} if isinstance(vectors, m.VectorParams) else dict(vectors or {})
    sparse = dict(params.sparse_vectors or {})
    if isinstance(req, m.DenseVectorNameConfig):
        want = req.dense
        datatype = m.Datatype(want.datatype.value) if want.datatype else None
        if name in dense:
            have = dense[name]
            same = (have.size, have.distance, have.multivector_config, have.datatype) == (
                want.size,
                want.distance,
                want.multivector_config,
                datatype,
            )
            if not same:
                raise wrong_input(f"Vector `{name}` already exists with a different configuration")
            return None
        if name in sparse:
            raise wrong_input(f"Vector `{name}` already exists as a sparse vector")
        dense[name] = m.VectorParams(
            size=want.size, distance=want.distance, datatype=datatype, multivector_config=want.multivector_config
        )
        params.vectors = dense
        return new
    want_sparse = req.sparse
    datatype = m.Datatype(want_sparse.datatype.value) if want_sparse.datatype else None
    if name in sparse:
        have_sparse = sparse[name]
        if (have_sparse.modifier, have_sparse.index.datatype if have_sparse.index else None) != (
            want_sparse.modifier,
            datatype,
        ):
            raise wrong_input(f"Sparse vector `{name}` already exists with a different configuration")
        return None
    if name in dense:
        raise wrong_input(f"Vector `{name}` already exists as a dense vector")
    index = m.SparseIndexParams(datatype=datatype) if datatype else None
    sparse[name] = m.SparseVectorParams(index=index, modifier=want_sparse.modifier)
    params.sparse_vectors = sparse
    return new


def without_vector(config: m.CollectionConfig, name: str) -> m.CollectionConfig:
    """DELETE /collections/{name}/vectors/{vector}: the name is dropped from the dense and the sparse vectors; a
    name that is not there changes nothing (Qdrant answers 200)."""
    new = config.model_copy(deep=True)
    if isinstance(new.params.vectors, dict):
        new.params.vectors = {n: v for n, v in new.params.vectors.items() if n != name}
    if new.params.sparse_vectors:
        new.params.sparse_vectors = {n: v for n, v in new.params.sparse_vectors.items() if n != name}
    return new
