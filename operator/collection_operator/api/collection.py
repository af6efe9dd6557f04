"""VectorCollection: one Qdrant collection, declared. Field names follow Qdrant's, in camelCase."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field

from .base import DeletionPolicy, LocalObjectRef, StatusBase, StatusModel, WireModel, cel, immutable

# Qdrant accepts nearly any collection name but the ones below break URLs or file names.
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$"
VECTOR_NAME_PATTERN = r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)?$"
CollectionName = Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN)]


class Preset(StrEnum):
    EMBEDDINGS = "Embeddings"
    HIGH_RECALL = "HighRecall"
    LOW_MEMORY = "LowMemory"


class Distance(StrEnum):
    COSINE = "Cosine"
    DOT = "Dot"
    EUCLID = "Euclid"
    MANHATTAN = "Manhattan"


class Datatype(StrEnum):
    FLOAT32 = "Float32"
    FLOAT16 = "Float16"
    UINT8 = "Uint8"


class Hnsw(WireModel):
    """HNSW index parameters (Qdrant's hnsw_config)."""

    m: int | None = Field(None, ge=0, le=1024, description="Edges per node; 0 disables the HNSW graph.")
    ef_construct: int | None = Field(None, ge=4, le=65536)
    full_scan_threshold: int | None = Field(None, ge=0, description="KB of vectors below which search scans.")
    max_indexing_threads: int | None = Field(None, ge=0, le=1024)
    on_disk: bool | None = None
    payload_m: int | None = Field(None, ge=0, le=1024)


class ScalarType(StrEnum):
    INT8 = "Int8"


class Scalar(WireModel):
    type: ScalarType = ScalarType.INT8
    quantile: float | None = Field(None, ge=0.5, le=1.0)
    always_ram: bool | None = None


class Compression(StrEnum):
    X4 = "x4"
    X8 = "x8"
    X16 = "x16"
    X32 = "x32"
    X64 = "x64"


class Product(WireModel):
    compression: Compression
    always_ram: bool | None = None


class BinaryEncoding(StrEnum):
    ONE_BIT = "OneBit"
    TWO_BITS = "TwoBits"
    ONE_AND_HALF_BITS = "OneAndHalfBits"


class Binary(WireModel):
    always_ram: bool | None = None
    encoding: BinaryEncoding | None = None


class Quantization(WireModel):
    """Exactly one of scalar, product, binary or disabled."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.scalar), has(self.product), has(self.binary), has(self.disabled)]"
                    ".filter(x, x).size() == 1",
                    "quantization takes exactly one of scalar, product, binary or disabled",
                ),
                cel("!has(self.disabled) || self.disabled", "quantization.disabled, when given, must be true"),
            ]
        }
    )

    scalar: Scalar | None = None
    product: Product | None = None
    binary: Binary | None = None
    disabled: bool | None = Field(None, description="true: no quantization, even where a preset would add one.")


class Multivector(WireModel):
    comparator: str = Field("MaxSim", pattern="^MaxSim$")


class Vector(WireModel):
    """A dense vector. Name "" (the default) is Qdrant's single unnamed vector."""

    # A list-map keyed by name: the API server enforces unique names and correlates each vector with
    # its previous version, so immutability is a per-item transition rule.
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.size == oldSelf.size && self.distance == oldSelf.distance",
                    "a vector's size and distance are immutable: add a vector under a new name instead",
                    reason="FieldValueForbidden",
                ),
                immutable("datatype"),
                immutable("multivector"),
            ]
        }
    )

    name: str = Field("", pattern=VECTOR_NAME_PATTERN, max_length=64)
    size: int = Field(ge=1, le=65536, description="Dimensions. Immutable.")
    distance: Distance = Field(description="Immutable.")
    datatype: Datatype | None = Field(None, description="Immutable.")
    on_disk: bool | None = None
    multivector: Multivector | None = Field(None, description="Immutable.")
    hnsw: Hnsw | None = None
    quantization: Quantization | None = None


class SparseModifier(StrEnum):
    NONE = "None"
    IDF = "Idf"


class SparseIndex(WireModel):
    on_disk: bool | None = None
    full_scan_threshold: int | None = Field(None, ge=0)


class SparseVector(WireModel):
    name: str = Field(pattern=VECTOR_NAME_PATTERN, min_length=1, max_length=64)
    modifier: SparseModifier | None = None
    index: SparseIndex | None = None


# Qdrant's OpenAPI (1.19) gives shard_number only a minimum (1, uint32). Each shard is a complete storage
# engine with its own WAL, segments and optimizer on every replica, and Qdrant's guidance is a small multiple
# of the node count; 256 allows two shards per node on a 128-node cluster. 1024 froze the dev server.
MAX_SHARD_NUMBER = 256


class ShardingMethod(StrEnum):
    AUTO = "Auto"
    CUSTOM = "Custom"


class Optimizers(WireModel):
    """Qdrant's optimizers_config. Sizes are in kilobytes, as in Qdrant."""

    deleted_threshold: float | None = Field(None, ge=0, le=1)
    vacuum_min_vector_number: int | None = Field(None, ge=100)
    default_segment_number: int | None = Field(None, ge=0)
    max_segment_size: int | None = Field(None, ge=1)
    memmap_threshold: int | None = Field(None, ge=0)
    indexing_threshold: int | None = Field(None, ge=0)
    flush_interval_sec: int | None = Field(None, ge=0)
    max_optimization_threads: int | None = Field(None, ge=0)


class Wal(WireModel):
    capacity_mb: int | None = Field(None, ge=1)
    segments_ahead: int | None = Field(None, ge=0)


class PayloadSchemaType(StrEnum):
    KEYWORD = "Keyword"
    INTEGER = "Integer"
    FLOAT = "Float"
    GEO = "Geo"
    TEXT = "Text"
    BOOL = "Bool"
    DATETIME = "Datetime"
    UUID = "Uuid"


class Tokenizer(StrEnum):
    PREFIX = "Prefix"
    WHITESPACE = "Whitespace"
    WORD = "Word"
    MULTILINGUAL = "Multilingual"


class PayloadIndexParams(WireModel):
    """Index parameters; which apply depends on the type (Qdrant rejects the others)."""

    is_tenant: bool | None = Field(None, description="Keyword, Integer, Uuid: co-locate a tenant's points.")
    is_principal: bool | None = Field(None, description="Integer, Float, Datetime: the main filter field.")
    on_disk: bool | None = None
    lookup: bool | None = Field(None, description="Integer: match lookups.")
    range: bool | None = Field(None, description="Integer: range lookups.")
    tokenizer: Tokenizer | None = Field(None, description="Text.")
    min_token_len: int | None = Field(None, ge=0)
    max_token_len: int | None = Field(None, ge=0)
    lowercase: bool | None = None


class PayloadIndex(WireModel):
    field: str = Field(min_length=1, max_length=1024, description="Payload key, dotted paths allowed.")
    type: PayloadSchemaType
    params: PayloadIndexParams | None = None


class SnapshotSourceRef(WireModel):
    snapshot_ref: LocalObjectRef = Field(description="A CollectionSnapshot in the same namespace.")
    snapshot_name: str | None = Field(None, description="Which of its snapshots; the newest when left out.")


class Source(WireModel):
    snapshot: SnapshotSourceRef


class ConnectionRef(WireModel):
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(None, max_length=63, description="Defaults to the collection's namespace.")


class DriftPolicy(StrEnum):
    ENFORCE = "Enforce"
    REPORT = "Report"


class OnExisting(StrEnum):
    FAIL = "Fail"
    ADOPT = "Adopt"


class VectorCollectionSpec(WireModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                immutable("collectionName"),
                immutable("shardNumber"),
                immutable("shardingMethod"),
                immutable("wal"),
                cel(
                    "!has(self.vectors) || size(self.vectors) == 1 || self.vectors.all(v, v.name != '')",
                    'an unnamed vector (name "") must be the only dense vector',
                    fieldPath=".vectors",
                ),
                cel(
                    "!has(self.writeConsistencyFactor) || self.writeConsistencyFactor <= "
                    "(has(self.replicationFactor) ? self.replicationFactor : 1)",
                    "writeConsistencyFactor must not exceed replicationFactor",
                    fieldPath=".writeConsistencyFactor",
                ),
                cel(
                    "!has(self.shardKeys) || size(self.shardKeys) == 0 || "
                    "(has(self.shardingMethod) && self.shardingMethod == 'Custom')",
                    "shardKeys need shardingMethod: Custom",
                    fieldPath=".shardKeys",
                ),
            ]
        }
    )

    connection_ref: ConnectionRef = Field(
        description="The QdrantConnection to use. Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self == oldSelf", "connectionRef is immutable: create a new VectorCollection to move it")
            ]
        },
    )
    collection_name: CollectionName | None = Field(None, description="Defaults to metadata.name. Immutable.")
    preset: Preset | None = Field(None, description="Defaults for embedding workloads; explicit fields win.")
    vectors: list[Vector] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    sparse_vectors: list[SparseVector] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    shard_number: int | None = Field(
        None,
        ge=1,
        le=MAX_SHARD_NUMBER,
        description=f"Immutable. At most {MAX_SHARD_NUMBER}: Qdrant documents no maximum (uint32), and every shard "
        "is a full engine (WAL, segments, optimizer) on each replica.",
    )
    sharding_method: ShardingMethod | None = Field(None, description="Immutable.")
    shard_keys: list[str] = Field(
        default_factory=list, max_length=256, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    replication_factor: int | None = Field(None, ge=1, le=64)
    write_consistency_factor: int | None = Field(None, ge=1, le=64)
    on_disk_payload: bool | None = None
    hnsw: Hnsw | None = None
    quantization: Quantization | None = None
    optimizers: Optimizers | None = None
    wal: Wal | None = Field(None, description="Immutable.")
    payload_indexes: list[PayloadIndex] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["field"]},
    )
    aliases: list[CollectionName] = Field(
        default_factory=list, max_length=32, json_schema_extra={"x-kubernetes-list-type": "set"}
    )
    deletion_policy: DeletionPolicy = Field(DeletionPolicy.RETAIN, description="Retain keeps the data in Qdrant.")
    drift_policy: DriftPolicy = Field(DriftPolicy.ENFORCE, description="What to do with changes made in Qdrant.")
    on_existing: OnExisting = Field(OnExisting.FAIL, description="What to do if the collection already exists.")
    source: Source | None = Field(
        None,
        description="Create the collection from a snapshot instead of empty. Immutable.",
        json_schema_extra={"x-kubernetes-validations": [cel("self == oldSelf", "source is immutable")]},
    )


class QdrantStatus(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    GREY = "grey"
    RED = "red"


class Drift(StatusModel):
    field: str
    desired: str
    actual: str


class VectorCollectionStatus(StatusBase):
    collection_name: str | None = None
    connection: str | None = Field(None, description="namespace/name of the QdrantConnection.")
    qdrant_status: QdrantStatus | None = None
    points_count: int | None = None
    indexed_vectors_count: int | None = None
    segments_count: int | None = None
    shard_number: int | None = None
    replication_factor: int | None = None
    aliases: list[str] = Field(default_factory=list)
    payload_indexes: list[str] = Field(default_factory=list)
    drift: list[Drift] = Field(default_factory=list)
    restored_from: str | None = Field(None, description="The restore-from annotation value last carried out.")
    applied_generation: int | None = Field(
        None, description="The generation last applied to Qdrant in full (observedGeneration also advances "
        "when a generation is refused, e.g. Stalled).")
