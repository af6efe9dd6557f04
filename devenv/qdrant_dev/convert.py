"""Translation between Qdrant's REST models (qdrant-client's pydantic models) and qdrant-edge objects.

Everything the REST front accepts is parsed with `qdrant_client.http.models` first; this module only maps
the parsed values onto the engine's own classes and back. Anything the engine cannot express raises
`Unsupported`, which the server reports as a 400 rather than silently ignoring it.
"""

from __future__ import annotations

import uuid
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as m


class Unsupported(ValueError):
    """A valid Qdrant request that the dev server cannot serve with the edge engine."""


def _enum(enum_cls: Any, value: Any, table: dict[str, str] | None = None) -> Any:
    raw = value.value if hasattr(value, "value") else str(value)
    name = (table or {}).get(raw, raw[:1].upper() + raw[1:])
    try:
        return getattr(enum_cls, name)
    except AttributeError:
        raise Unsupported(f"{enum_cls.__name__} `{raw}` is not supported by the dev server") from None


_DATATYPES = {"float32": "Float32", "float16": "Float16", "uint8": "Uint8"}
_BQ_ENCODING = {"one_bit": "OneBit", "two_bits": "TwoBits", "one_and_half_bits": "OneAndHalfBits"}
_BQ_QUERY = {"default": "Default", "binary": "Binary", "scalar4bits": "Scalar4Bits", "scalar8bits": "Scalar8Bits"}
_COMPARATORS = {"max_sim": "MaxSim"}
_COMPRESSION = {"x4": "X4", "x8": "X8", "x16": "X16", "x32": "X32", "x64": "X64"}


# ---------------------------------------------------------------- collection configuration


def hnsw(config: m.HnswConfig) -> qe.HnswIndexConfig:
    return qe.HnswIndexConfig(
        m=config.m,
        ef_construct=config.ef_construct,
        full_scan_threshold=config.full_scan_threshold,
        max_indexing_threads=config.max_indexing_threads or 0,
        on_disk=config.on_disk,
        payload_m=config.payload_m,
    )


def quantization(config: Any) -> Any:
    if config is None or isinstance(config, m.Disabled):
        return None
    if isinstance(config, m.ScalarQuantization):
        s = config.scalar
        return qe.ScalarQuantizationConfig(_enum(qe.ScalarType, s.type), quantile=s.quantile, always_ram=s.always_ram)
    if isinstance(config, m.ProductQuantization):
        p = config.product
        return qe.ProductQuantizationConfig(
            _enum(qe.CompressionRatio, p.compression, _COMPRESSION), always_ram=p.always_ram
        )
    if isinstance(config, m.BinaryQuantization):
        b = config.binary
        return qe.BinaryQuantizationConfig(
            always_ram=b.always_ram,
            encoding=_enum(qe.BinaryQuantizationEncoding, b.encoding, _BQ_ENCODING) if b.encoding else None,
            query_encoding=_enum(qe.BinaryQuantizationQueryEncoding, b.query_encoding, _BQ_QUERY)
            if b.query_encoding
            else None,
        )
    raise Unsupported(f"quantization {type(config).__name__} is not supported by the dev server")


def merged_hnsw(base: m.HnswConfig, diff: m.HnswConfigDiff | None) -> m.HnswConfig:
    if diff is None:
        return base
    return base.model_copy(update=diff.model_dump(exclude_none=True))


def _dense(params: m.VectorParams, collection: m.CollectionConfig) -> qe.EdgeVectorParams:
    return qe.EdgeVectorParams(
        size=params.size,
        distance=_enum(qe.Distance, params.distance),
        on_disk=params.on_disk,
        multivector_config=qe.MultiVectorConfig(
            _enum(qe.MultiVectorComparator, params.multivector_config.comparator, _COMPARATORS)
        )
        if params.multivector_config
        else None,
        datatype=_enum(qe.VectorStorageDatatype, params.datatype, _DATATYPES) if params.datatype else None,
        quantization_config=quantization(params.quantization_config),
        hnsw_config=hnsw(merged_hnsw(collection.hnsw_config, params.hnsw_config)) if params.hnsw_config else None,
    )


def _sparse(params: m.SparseVectorParams) -> qe.EdgeSparseVectorParams:
    index = params.index or m.SparseIndexParams()
    return qe.EdgeSparseVectorParams(
        full_scan_threshold=index.full_scan_threshold,
        on_disk=index.on_disk,
        modifier=qe.Modifier.Idf if params.modifier == m.Modifier.IDF else None,
        datatype=_enum(qe.VectorStorageDatatype, index.datatype, _DATATYPES) if index.datatype else None,
        memory=_enum(qe.Memory, index.memory) if index.memory else None,
    )


def edge_config(config: m.CollectionConfig) -> qe.EdgeConfig:
    vectors = config.params.vectors
    if isinstance(vectors, m.VectorParams):
        dense: Any = _dense(vectors, config)
    else:
        dense = {name: _dense(v, config) for name, v in (vectors or {}).items()}
    opt = config.optimizer_config
    return qe.EdgeConfig(
        vectors=dense or None,
        sparse_vectors={name: _sparse(v) for name, v in (config.params.sparse_vectors or {}).items()} or None,
        on_disk_payload=config.params.on_disk_payload,
        hnsw_config=hnsw(config.hnsw_config),
        quantization_config=quantization(config.quantization_config),
        optimizers=qe.EdgeOptimizersConfig(
            deleted_threshold=opt.deleted_threshold,
            vacuum_min_vector_number=opt.vacuum_min_vector_number,
            default_segment_number=opt.default_segment_number,
            max_segment_size=opt.max_segment_size,
            indexing_threshold=opt.indexing_threshold,
        ),
    )


def create_vector_op(name: str, req: m.DenseVectorNameConfig | m.SparseVectorNameConfig) -> Any:
    """The engine's own CreateVectorName for PUT /collections/{name}/vectors/{vector}, as a factory (one
    operation per shard)."""
    if isinstance(req, m.DenseVectorNameConfig):
        d = req.dense
        distance = _enum(qe.Distance, d.distance)
        datatype = _enum(qe.VectorStorageDatatype, d.datatype, _DATATYPES) if d.datatype else None
        multivector = (
            qe.MultiVectorConfig(_enum(qe.MultiVectorComparator, d.multivector_config.comparator, _COMPARATORS))
            if d.multivector_config
            else None
        )
        return lambda: qe.UpdateOperation.create_dense_vector(name, d.size, distance, multivector, datatype)
    s = req.sparse
    modifier = qe.Modifier.Idf if s.modifier == m.Modifier.IDF else None
    sparse_datatype = _enum(qe.VectorStorageDatatype, s.datatype, _DATATYPES) if s.datatype else None
    return lambda: qe.UpdateOperation.create_sparse_vector(name, modifier, sparse_datatype)


_SCHEMA_PARAMS = {
    "keyword": qe.KeywordIndexParams,
    "integer": qe.IntegerIndexParams,
    "float": qe.FloatIndexParams,
    "geo": qe.GeoIndexParams,
    "bool": qe.BoolIndexParams,
    "datetime": qe.DatetimeIndexParams,
    "uuid": qe.UuidIndexParams,
}
_PARAM_FIELDS = ("is_tenant", "is_principal", "on_disk", "lookup", "range", "enable_hnsw")


def schema_type(schema: Any) -> str:
    return str(schema.value if isinstance(schema, m.PayloadSchemaType) else schema.type.value)


def field_schema(schema: Any) -> Any:
    """A payload index schema: a bare type, or typed params (text index options are kept but not applied)."""
    kind = schema_type(schema)
    if isinstance(schema, m.PayloadSchemaType) or kind == "text":
        return _enum(qe.PayloadSchemaType, kind)
    given = schema.model_dump(exclude_none=True)
    return _SCHEMA_PARAMS[kind](**{k: given[k] for k in _PARAM_FIELDS if k in given})


# ---------------------------------------------------------------- points


def point_id(value: Any) -> int | str:
    """Qdrant ids are unsigned ints or UUIDs; UUIDs are normalised to their canonical text."""
    if isinstance(value, int):
        return value
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(f"Unable to parse UUID: {value}") from None


def _vector_in(value: Any) -> Any:
    if isinstance(value, m.SparseVector):
        return qe.SparseVector(list(value.indices), list(value.values))
    if isinstance(value, list):
        return value
    raise Unsupported(f"vector input {type(value).__name__} (inference objects) is not supported by the dev server")


def vector_in(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _vector_in(v) for name, v in value.items()}
    return _vector_in(value)


def vector_out(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, qe.SparseVector):
        return {"indices": list(value.indices), "values": list(value.values)}
    if isinstance(value, dict):
        if set(value) == {""}:
            return vector_out(value[""])
        return {name: vector_out(v) for name, v in value.items()}
    return value


def with_payload(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, list):
        return qe.PayloadSelector.Include(value)
    if isinstance(value, m.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, m.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    raise Unsupported("payload selector")


# ---------------------------------------------------------------- filters


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _match(match: Any) -> Any:
    if isinstance(match, m.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, m.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, m.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    if isinstance(match, m.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, m.MatchAny):
        values: Any = list(match.any)
        return qe.MatchAny(values)
    if isinstance(match, m.MatchExcept):
        excluded: Any = list(match.except_)
        return qe.MatchExcept(excluded)
    raise Unsupported(f"match {type(match).__name__}")


def _geo(point: m.GeoPoint) -> qe.GeoPoint:
    return qe.GeoPoint(lon=point.lon, lat=point.lat)


def _range(value: Any) -> Any:
    if isinstance(value, m.DatetimeRange):
        text = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in value.model_dump().items()}
        return qe.RangeDateTime(**text)
    return qe.RangeFloat(gte=value.gte, gt=value.gt, lte=value.lte, lt=value.lt)


def _field(cond: m.FieldCondition) -> qe.FieldCondition:
    vc = cond.values_count
    return qe.FieldCondition(
        key=cond.key,
        match=_match(cond.match) if cond.match is not None else None,
        range=_range(cond.range) if cond.range is not None else None,
        geo_bounding_box=qe.GeoBoundingBox(
            _geo(cond.geo_bounding_box.top_left), _geo(cond.geo_bounding_box.bottom_right)
        )
        if cond.geo_bounding_box
        else None,
        geo_radius=qe.GeoRadius(_geo(cond.geo_radius.center), cond.geo_radius.radius) if cond.geo_radius else None,
        geo_polygon=qe.GeoPolygon([_geo(p) for p in cond.geo_polygon.exterior.points]) if cond.geo_polygon else None,
        values_count=qe.ValuesCount(lt=vc.lt, gt=vc.gt, lte=vc.lte, gte=vc.gte) if vc else None,
        is_empty=cond.is_empty,
        is_null=cond.is_null,
    )


def _condition(cond: Any) -> Any:
    if isinstance(cond, m.FieldCondition):
        return _field(cond)
    if isinstance(cond, m.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, m.IsNullCondition):
        return qe.IsNullCondition(cond.is_null.key)
    if isinstance(cond, m.HasIdCondition):
        return qe.HasIdCondition({point_id(i) for i in cond.has_id})
    if isinstance(cond, m.HasVectorCondition):
        return qe.HasVectorCondition(cond.has_vector)
    if isinstance(cond, m.NestedCondition):
        return qe.NestedCondition(cond.nested.key, _filter(cond.nested.filter))
    if isinstance(cond, m.Filter):
        return _filter(cond)
    raise Unsupported(f"condition {type(cond).__name__}")


def filter_in(flt: m.Filter | None) -> qe.Filter | None:
    return None if flt is None else _filter(flt)


def _filter(flt: m.Filter) -> qe.Filter:
    min_should = None
    if flt.min_should is not None:
        min_should = qe.MinShould([_condition(c) for c in flt.min_should.conditions], flt.min_should.min_count)
    return qe.Filter(
        must=[_condition(c) for c in _listed(flt.must)] or None,
        should=[_condition(c) for c in _listed(flt.should)] or None,
        must_not=[_condition(c) for c in _listed(flt.must_not)] or None,
        min_should=min_should,
    )


# ---------------------------------------------------------------- queries


def search_params(params: m.SearchParams | None) -> qe.SearchParams | None:
    if params is None:
        return None
    q = params.quantization
    return qe.SearchParams(
        hnsw_ef=params.hnsw_ef,
        exact=bool(params.exact),
        quantization=qe.QuantizationSearchParams(ignore=bool(q.ignore), rescore=q.rescore, oversampling=q.oversampling)
        if q
        else None,
        indexed_only=bool(params.indexed_only),
    )


def scoring_query(query: Any, using: str | None) -> Any:
    """Map a REST `query` onto the engine: raw vectors, `nearest`, `fusion` and `order_by` are supported."""
    if query is None:
        return None
    if isinstance(query, m.NearestQuery):
        return qe.Query.Nearest(_vector_in(query.nearest), using=using)
    if isinstance(query, list | m.SparseVector):
        return qe.Query.Nearest(_vector_in(query), using=using)
    if isinstance(query, m.FusionQuery):
        return qe.Fusion.Rrf(k=2) if query.fusion == m.Fusion.RRF else qe.Fusion.Dbsf()
    if isinstance(query, m.OrderByQuery):
        return order_by(query.order_by)
    raise Unsupported(f"query {type(query).__name__} is not supported by the dev server")


def order_by(value: Any) -> qe.OrderBy:
    if isinstance(value, str):
        return qe.OrderBy(value)
    direction = qe.Direction.Desc if value.direction == m.Direction.DESC else qe.Direction.Asc
    start = value.start_from
    if hasattr(start, "isoformat"):
        start = start.isoformat()
    return qe.OrderBy(value.key, direction=direction, start_from=start)


def prefetch(value: m.Prefetch) -> qe.Prefetch:
    return qe.Prefetch(
        limit=value.limit if value.limit is not None else 10,
        query=scoring_query(value.query, value.using),
        prefetches=[prefetch(p) for p in _listed(value.prefetch)] or None,
        params=search_params(value.params),
        filter=filter_in(value.filter),
        score_threshold=value.score_threshold,
    )


def query_request(req: m.QueryRequest, limit: int) -> qe.QueryRequest:
    """An engine query for one shard: `limit` already includes the offset, which is applied after merging."""
    return qe.QueryRequest(
        limit=limit,
        query=scoring_query(req.query, req.using),
        prefetches=[prefetch(p) for p in _listed(req.prefetch)] or None,
        with_vector=req.with_vector,
        with_payload=with_payload(req.with_payload),
        filter=filter_in(req.filter),
        score_threshold=req.score_threshold,
        params=search_params(req.params),
    )
