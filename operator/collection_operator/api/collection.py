"""VectorCollection: one Qdrant collection, declared. Field names follow Qdrant's, in camelCase."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from .base import DeletionPolicy, LocalObjectRef, StatusBase, StatusModel, WireModel, cel, immutable
from .objectstore import ObjectStoreSource

# Qdrant accepts nearly any collection name but the ones below break URLs or file names.
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$"
VECTOR_NAME_PATTERN = r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)?$"
# The key of the ownership marker in the collection's Qdrant metadata (spec.metadata may not use it).
OWNER_METADATA_KEY = "qdrant-collection-operator.dev/owner"
MAX_METADATA_KEYS = 64
MAX_METADATA_VALUE = 4096


def _no_double_dot(name: str) -> str:
    if ".." in name:
        raise ValueError("must not contain '..' (Qdrant refuses it)")
    return name


# RE2 patterns (the API server's) have no lookahead: '..' is refused by a CEL rule and by the model.
CollectionName = Annotated[
    str,
    Field(
        pattern=COLLECTION_NAME_PATTERN,
        max_length=255,
        json_schema_extra={
            "x-kubernetes-validations": [cel("!self.contains('..')", "must not contain '..' (Qdrant refuses it)")]
        },
    ),
    AfterValidator(_no_double_dot),
]


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
    ef_construct: int | None = Field(
        None,
        ge=4,
        le=65536,
        description="Neighbours considered while building the index: higher is more accurate and slower to build.",
    )
    full_scan_threshold: int | None = Field(
        None, ge=0, description="Segment size (KB of vectors) below which a search scans instead of using the index."
    )
    max_indexing_threads: int | None = Field(
        None, ge=0, le=1024, description="Threads for building the index; 0 lets Qdrant choose."
    )
    on_disk: bool | None = Field(None, description="Keep the index on disk (memory-mapped) instead of in RAM.")
    payload_m: int | None = Field(
        None, ge=0, le=1024, description="m of the per-tenant graphs built along payload indexes (isTenant)."
    )


ALWAYS_RAM = "Keep the quantized vectors in RAM even when the vectors are on disk."


class ScalarType(StrEnum):
    INT8 = "Int8"


class Scalar(WireModel):
    """Scalar quantization: each vector component stored as one byte."""

    type: ScalarType = Field(ScalarType.INT8, description="The quantized type; Int8 is the only one.")
    quantile: float | None = Field(
        None,
        ge=0.5,
        le=1.0,
        description="Share of values used to find the quantization bounds; outliers beyond it are clipped.",
    )
    always_ram: bool | None = Field(None, description=ALWAYS_RAM)


class Compression(StrEnum):
    X4 = "x4"
    X8 = "x8"
    X16 = "x16"
    X32 = "x32"
    X64 = "x64"


class Product(WireModel):
    """Product quantization: chunks of a vector stored as centroid ids."""

    compression: Compression = Field(description="How many times smaller the quantized vectors are.")
    always_ram: bool | None = Field(None, description=ALWAYS_RAM)


class BinaryEncoding(StrEnum):
    ONE_BIT = "OneBit"
    TWO_BITS = "TwoBits"
    ONE_AND_HALF_BITS = "OneAndHalfBits"


class Binary(WireModel):
    """Binary quantization: each vector component stored in one or two bits."""

    always_ram: bool | None = Field(None, description=ALWAYS_RAM)
    encoding: BinaryEncoding | None = Field(None, description="Bits per component; Qdrant's default is OneBit.")


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

    scalar: Scalar | None = Field(None, description="Scalar (int8) quantization.")
    product: Product | None = Field(None, description="Product quantization.")
    binary: Binary | None = Field(None, description="Binary quantization.")
    disabled: bool | None = Field(None, description="true: no quantization, even where a preset would add one.")


class Multivector(WireModel):
    """Each point holds a matrix of vectors of this size (late interaction, e.g. ColBERT)."""

    comparator: str = Field("MaxSim", pattern="^MaxSim$", description="How two matrices are scored; MaxSim only.")


class Vector(WireModel):
    """A dense vector. Name "" (the default) is Qdrant's single unnamed vector."""

    name: str = Field(
        "",
        pattern=VECTOR_NAME_PATTERN,
        max_length=64,
        description='Name of the vector, unique in the list; "" (the default) is the single unnamed vector.',
    )
    size: int = Field(ge=1, le=65536, description="Dimensions. Immutable unless changePolicy.immutable is BlueGreen.")
    distance: Distance = Field(description="Similarity function. Immutable unless changePolicy.immutable is BlueGreen.")
    datatype: Datatype | None = Field(
        None, description="Storage type of each component (Float32 when left out). Immutable (BlueGreen: migrated)."
    )
    on_disk: bool | None = Field(None, description="Store the vectors on disk (memory-mapped) instead of in RAM.")
    multivector: Multivector | None = Field(
        None, description="Make this a multivector. Immutable (BlueGreen: re-embedded)."
    )
    hnsw: Hnsw | None = Field(None, description="HNSW parameters for this vector; override spec.hnsw.")
    quantization: Quantization | None = Field(
        None, description="Quantization for this vector; overrides spec.quantization."
    )


class SparseModifier(StrEnum):
    NONE = "None"
    IDF = "Idf"


class Memory(StrEnum):
    COLD = "Cold"
    CACHED = "Cached"
    PINNED = "Pinned"


class SparseIndex(WireModel):
    """The inverted index of a sparse vector. Every field is changed in place."""

    on_disk: bool | None = Field(None, description="Keep the index on disk (memory-mapped) instead of in RAM.")
    full_scan_threshold: int | None = Field(
        None, ge=0, description="Points below which a search scans instead of using the index."
    )
    datatype: Datatype | None = Field(
        None,
        description="Storage type of the index's weights (Float32 when left out). Qdrant uses a change for the "
        "segments it builds afterwards and keeps existing ones as they are.",
    )
    memory: Memory | None = Field(
        None,
        description="How Qdrant holds the index in RAM: Pinned (loaded, never evicted), Cached (pre-loaded into "
        "the page cache) or Cold (read on demand). Wins over onDisk; left out: Pinned, or Cold with onDisk.",
    )


class SparseVector(WireModel):
    """A sparse vector (e.g. BM25 or SPLADE term weights)."""

    name: str = Field(pattern=VECTOR_NAME_PATTERN, min_length=1, max_length=64, description="Name of the vector.")
    modifier: SparseModifier | None = Field(
        None, description="Idf weighs terms by inverse document frequency at query time (for BM25); None does not."
    )
    index: SparseIndex | None = Field(None, description="Index parameters.")


# Qdrant's OpenAPI (1.19) gives shard_number only a minimum (1, uint32). Each shard is a complete storage
# engine with its own WAL, segments and optimizer on every replica, and Qdrant's guidance is a small multiple
# of the node count; 256 allows two shards per node on a 128-node cluster. 1024 froze the dev server.
MAX_SHARD_NUMBER = 256


class ShardingMethod(StrEnum):
    AUTO = "Auto"
    CUSTOM = "Custom"


class Optimizers(WireModel):
    """Qdrant's optimizers_config. Sizes are in kilobytes, as in Qdrant."""

    deleted_threshold: float | None = Field(
        None, ge=0, le=1, description="Share of deleted points in a segment above which it is vacuumed."
    )
    vacuum_min_vector_number: int | None = Field(
        None, ge=100, description="Vectors a segment must hold before it is vacuumed."
    )
    default_segment_number: int | None = Field(
        None, ge=0, description="Segments the optimizer aims for; 0 lets Qdrant choose from the CPU count."
    )
    max_segment_size: int | None = Field(None, ge=1, description="Largest segment the optimizer builds, in KB.")
    memmap_threshold: int | None = Field(
        None, ge=0, description="Segment size (KB) above which vectors are memory-mapped from disk."
    )
    indexing_threshold: int | None = Field(
        None, ge=0, description="Segment size (KB) above which vectors are indexed; 0 disables indexing."
    )
    flush_interval_sec: int | None = Field(None, ge=0, description="Seconds between flushes to disk.")
    max_optimization_threads: int | None = Field(
        None, ge=0, description="Threads per optimization job; 0 pauses optimization, left out: Qdrant chooses."
    )


class Wal(WireModel):
    """Write-ahead log of each shard."""

    capacity_mb: int | None = Field(None, ge=1, description="Size of one WAL segment in MB.")
    segments_ahead: int | None = Field(None, ge=0, description="WAL segments created in advance.")


class StrictMode(WireModel):
    """Qdrant's strict_mode_config: limits Qdrant enforces on requests to this collection while enabled.
    A limit left out is not enforced by the operator; removing one from the spec leaves it in Qdrant."""

    enabled: bool | None = Field(None, description="Enforce the limits below (false: stored but not enforced).")
    max_query_limit: int | None = Field(
        None, ge=1, description="Largest `limit` a request may ask for, where the API has no maximum of its own."
    )
    max_timeout: int | None = Field(None, ge=1, description="Largest `timeout` (seconds) a request may ask for.")
    unindexed_filtering_retrieve: bool | None = Field(
        None, description="false: refuse searches and other reads that filter on a field without a payload index."
    )
    unindexed_filtering_update: bool | None = Field(
        None, description="false: refuse filtered updates (e.g. delete by filter) on a field without a payload index."
    )
    search_max_hnsw_ef: int | None = Field(None, ge=0, description="Largest hnsw_ef a search may ask for.")
    search_allow_exact: bool | None = Field(None, description="false: refuse exact (full scan) searches.")
    search_max_oversampling: float | None = Field(
        None, ge=1, description="Largest quantization oversampling a search may ask for."
    )
    upsert_max_batchsize: int | None = Field(None, ge=0, description="Most points one upsert may carry.")
    search_max_batchsize: int | None = Field(None, ge=0, description="Most searches one batch request may carry.")
    max_collection_vector_size_bytes: int | None = Field(
        None, ge=0, description="Refuse upserts once the vectors take this many bytes (one replica)."
    )
    max_collection_payload_size_bytes: int | None = Field(
        None, ge=0, description="Refuse upserts once the payloads take this many bytes."
    )
    max_points_count: int | None = Field(
        None, ge=1, description="Refuse upserts once the collection holds about this many points."
    )
    read_rate_limit: int | None = Field(None, ge=1, description="Read requests per minute, per replica.")
    write_rate_limit: int | None = Field(None, ge=1, description="Write requests per minute, per replica.")
    filter_max_conditions: int | None = Field(None, ge=0, description="Most conditions one filter may have.")
    condition_max_size: int | None = Field(
        None, ge=0, description="Most values in one condition (e.g. the items of a match any)."
    )
    max_payload_index_count: int | None = Field(None, ge=0, description="Most payload indexes the collection may have.")


def _without_owner_key(metadata: dict[str, str]) -> dict[str, str]:
    if OWNER_METADATA_KEY in metadata:
        raise ValueError(f"{OWNER_METADATA_KEY} is the operator's ownership marker: choose another key")
    return metadata


# String values, like labels: the API server's CEL cannot see into untyped (any JSON) values, so a map of any
# JSON could not refuse the owner key at admission; strings also compare without 1-versus-1.0 questions.
UserMetadata = Annotated[
    dict[str, Annotated[str, Field(max_length=MAX_METADATA_VALUE, description="The value, a string.")]],
    Field(
        max_length=MAX_METADATA_KEYS,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"!('{OWNER_METADATA_KEY}' in self)",
                    f"{OWNER_METADATA_KEY} is the operator's ownership marker: choose another key",
                )
            ],
        },
    ),
    AfterValidator(_without_owner_key),
]


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
    on_disk: bool | None = Field(None, description="Keep the index on disk (memory-mapped) instead of in RAM.")
    lookup: bool | None = Field(None, description="Integer: match lookups.")
    range: bool | None = Field(None, description="Integer: range lookups.")
    tokenizer: Tokenizer | None = Field(None, description="Text: how text is split into tokens.")
    min_token_len: int | None = Field(None, ge=0, description="Text: shorter tokens are not indexed.")
    max_token_len: int | None = Field(None, ge=0, description="Text: longer tokens are not indexed.")
    lowercase: bool | None = Field(None, description="Text: index tokens in lower case.")


class PayloadIndex(WireModel):
    """An index on one payload field, for filtering."""

    field: str = Field(min_length=1, max_length=1024, description="Payload key, dotted paths allowed.")
    type: PayloadSchemaType = Field(description="Type of the values indexed.")
    params: PayloadIndexParams | None = Field(None, description="Type-specific index parameters.")


class SnapshotSourceRef(WireModel):
    """A snapshot taken by a CollectionSnapshot."""

    snapshot_ref: LocalObjectRef = Field(description="A CollectionSnapshot in the same namespace.")
    snapshot_name: str | None = Field(None, description="Which of its snapshots; the newest when left out.")


class Source(WireModel):
    """Where the collection's initial data comes from: exactly one of snapshot and objectStore."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.snapshot) != has(self.objectStore)", "source needs exactly one of snapshot, objectStore"),
                # here, not on the field: a field's own rules would replace the model's in the schema
                cel("self == oldSelf", "source is immutable"),
            ]
        }
    )

    snapshot: SnapshotSourceRef | None = Field(None, description="Recover the collection from this snapshot.")
    object_store: ObjectStoreSource | None = Field(
        None, description="Recover the collection from this file in object storage (disaster recovery)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.snapshot is None) == (self.object_store is None):
            raise ValueError("source needs exactly one of snapshot, objectStore")
        return self


class ConnectionRef(WireModel):
    """A QdrantConnection, in this namespace or one that allows it (allowedNamespaces)."""

    name: str = Field(min_length=1, max_length=253, description="Name of the QdrantConnection.")
    namespace: str | None = Field(None, max_length=63, description="Defaults to the collection's namespace.")


class DriftPolicy(StrEnum):
    ENFORCE = "Enforce"
    REPORT = "Report"


class OnExisting(StrEnum):
    FAIL = "Fail"
    ADOPT = "Adopt"


class Approval(StrEnum):
    AUTOMATIC = "Automatic"
    MANUAL = "Manual"


class ImmutableChanges(StrEnum):
    REJECT = "Reject"
    BLUE_GREEN = "BlueGreen"


DURATION_PATTERN = r"^([0-9]+(s|m|h))+$"


class ChangePolicy(WireModel):
    """How changes reach Qdrant: whether heavy plans wait for approval, and what happens to changes Qdrant cannot
    make in place."""

    approval: Approval = Field(
        Approval.AUTOMATIC,
        description="Manual: a plan that re-indexes, migrates or removes a vector waits until the annotation "
        "qdrant.collection-operator.dev/approve-plan carries its hash (status.plan.hash). Automatic applies it.",
    )
    immutable: ImmutableChanges = Field(
        ImmutableChanges.REJECT,
        description="Reject: a change Qdrant cannot make in place (vector size or distance, shard number, ...) is "
        "Stalled. BlueGreen: collectionName is an alias to a collection the operator versions "
        "(<collectionName>-<hash>); such a change builds a new collection, copies the points (or waits for "
        "re-embedding when the vector size changes) and switches the alias atomically.",
    )
    rollback_window: str = Field(
        "1h",
        pattern=DURATION_PATTERN,
        max_length=32,
        description="BlueGreen: how long the previous collection is kept after a switch (e.g. 30m, 24h, 1h30m). "
        "Reverting the spec within it switches back without copying; after it the previous collection is "
        "deleted (only if the operator created it).",
    )


def duration_seconds(text: str) -> float:
    """A rollbackWindow ("1h30m") in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([smh])", text)))


def unless_blue_green(rule: dict[str, Any]) -> dict[str, Any]:
    """An immutability rule that changePolicy.immutable BlueGreen lifts: the operator then migrates instead."""
    return {
        **rule,
        "rule": f"(has(self.changePolicy) && self.changePolicy.immutable == 'BlueGreen') || ({rule['rule']})",
    }


class VectorCollectionSpec(WireModel):
    """The collection as it should be in Qdrant. A field left out is Qdrant's default and not enforced."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                immutable("collectionName"),
                *(unless_blue_green(immutable(f)) for f in ("shardNumber", "shardingMethod", "wal")),
                unless_blue_green(
                    cel(
                        "!has(self.vectors) || !has(oldSelf.vectors) || self.vectors.all(v, oldSelf.vectors.all(o, "
                        "o.name != v.name || (o.size == v.size && o.distance == v.distance "
                        "&& has(o.datatype) == has(v.datatype) && (!has(v.datatype) || o.datatype == v.datatype) "
                        "&& has(o.multivector) == has(v.multivector))))",
                        "a vector's size, distance, datatype and multivector are immutable: add a vector under a new "
                        "name, or set changePolicy.immutable: BlueGreen",
                        fieldPath=".vectors",
                        reason="FieldValueForbidden",
                    )
                ),
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
        description="Dense vectors, keyed by name. On Qdrant 1.18+ a named one is added to or removed from an "
        "existing collection in place (removing deletes its data; changePolicy.immutable BlueGreen migrates instead); "
        "on older Qdrant that, and changing between one unnamed vector and named ones, is Stalled (Reject).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    sparse_vectors: list[SparseVector] = Field(
        default_factory=list,
        max_length=16,
        description="Sparse vectors, keyed by name. Added and removed in place as vectors are; an empty list "
        "leaves the collection's sparse vectors alone.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    shard_number: int | None = Field(
        None,
        ge=1,
        le=MAX_SHARD_NUMBER,
        description=f"Immutable (BlueGreen: migrated). At most {MAX_SHARD_NUMBER}: Qdrant documents no maximum "
        "(uint32), and every shard is a full engine (WAL, segments, optimizer) on each replica.",
    )
    sharding_method: ShardingMethod | None = Field(
        None, description="Auto places points by id; Custom places them by shard key. Immutable (BlueGreen: migrated)."
    )
    shard_keys: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="Shard keys, with shardingMethod Custom.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    replication_factor: int | None = Field(None, ge=1, le=64, description="Copies of each shard (distributed Qdrant).")
    write_consistency_factor: int | None = Field(
        None, ge=1, le=64, description="Replicas that must confirm a write; at most replicationFactor."
    )
    on_disk_payload: bool | None = Field(None, description="Keep payloads on disk instead of in RAM.")
    hnsw: Hnsw | None = Field(None, description="HNSW index parameters of every vector (per-vector hnsw wins).")
    quantization: Quantization | None = Field(
        None, description="Quantization of every vector (per-vector quantization wins)."
    )
    optimizers: Optimizers | None = Field(None, description="Segment optimizer settings.")
    wal: Wal | None = Field(None, description="Write-ahead log settings. Immutable (BlueGreen: migrated).")
    strict_mode: StrictMode | None = Field(None, description="Limits Qdrant enforces on requests (strict mode).")
    metadata: UserMetadata = Field(
        default_factory=dict,
        description="Keys of the collection's metadata in Qdrant, with string values. A key dropped from the spec is "
        "removed from Qdrant if this resource declared it (status.metadataKeys); other keys are left alone.",
    )
    payload_indexes: list[PayloadIndex] = Field(
        default_factory=list,
        max_length=64,
        description="Payload indexes, keyed by field. Indexes the operator created are dropped with their entry.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["field"]},
    )
    aliases: list[CollectionName] = Field(
        default_factory=list,
        max_length=32,
        description="Aliases pointing at the collection. One held by another collection is never taken.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    deletion_policy: DeletionPolicy = Field(DeletionPolicy.RETAIN, description="Retain keeps the data in Qdrant.")
    drift_policy: DriftPolicy = Field(DriftPolicy.ENFORCE, description="What to do with changes made in Qdrant.")
    on_existing: OnExisting = Field(OnExisting.FAIL, description="What to do if the collection already exists.")
    change_policy: ChangePolicy = Field(
        default_factory=ChangePolicy, description="Approval of heavy plans, and blue/green for immutable changes."
    )
    source: Source | None = Field(
        None,
        description="Create the collection from a snapshot instead of empty. Immutable.",
    )


class QdrantStatus(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    GREY = "grey"
    RED = "red"


class Drift(StatusModel):
    """A setting changed in Qdrant behind the operator's back."""

    field: str = Field(description="The spec field, as a dotted path.")
    desired: str = Field(description="The value the spec asks for.")
    actual: str = Field(description="The value found in Qdrant.")


class ReplicaStatus(StatusModel):
    peer: str = Field(description="The Qdrant peer id holding this replica.")
    state: str = Field(description="Qdrant's replica state: Active, Partial, Recovery, Dead, ...")


class ShardStatus(StatusModel):
    id: int = Field(description="Shard id.")
    key: str | None = Field(None, description="Shard key (shardingMethod Custom).")
    replicas: list[ReplicaStatus] = Field(default_factory=list, description="Where the shard's replicas are.")


class PlanPhase(StrEnum):
    AWAITING_APPROVAL = "AwaitingApproval"
    APPLYING = "Applying"
    APPLIED = "Applied"


class PlanStatus(StatusModel):
    """What the operator does (or did last) to bring Qdrant to the spec, for a reviewer to read before it happens."""

    hash: str = Field(
        description="Identifies this plan (its spec and the live state it meets, see planBase); approve it with "
        "the annotation approve-plan=<hash>."
    )
    generation: int | None = Field(None, description="The metadata.generation the plan is for.")
    phase: PlanPhase = Field(description="AwaitingApproval, Applying (a migration in progress) or Applied.")
    summary: str = Field(description="The plan in one line.")
    actions: list[str] = Field(default_factory=list, description="Each step, in order.")
    reindex: bool = Field(False, description="Qdrant rebuilds indexes or segments of the collection.")
    migration: str | None = Field(None, description="Copy or Reembed when a new collection is built (BlueGreen).")
    estimated_vectors: int | None = Field(
        None, description="Cost estimate: points x vectors touched (re-indexed or copied)."
    )


class MigrationStatus(StatusModel):
    """A blue/green migration in progress (BlueGreen)."""

    source: str = Field(description="The collection the name resolves to until the switch.")
    target: str = Field(description="The new collection, built with the new settings.")
    mode: str = Field(description="Copy (points are copied) or Reembed (the application fills the new collection).")
    phase: str = Field(description="Copying, CatchingUp, AwaitingReembedding or Switched.")
    passes: int = Field(1, description="Copy passes begun: 1 is the full copy, later ones catch up with writes.")
    pruning: bool = Field(False, description="Within a catch-up pass: removing points deleted from the source.")
    resume_from: str | None = Field(None, description="The point id (JSON) the current pass resumes from.")
    copied_points: int = Field(0, description="Points written to the target so far.")
    pass_changes: int = Field(0, description="Points written or removed in the current catch-up pass.")
    source_points: int | None = Field(None, description="Points in the source when last counted.")
    target_points: int | None = Field(None, description="Points in the target when last counted.")
    started_at: str | None = Field(None, description="When the migration began.")


class VectorCollectionStatus(StatusBase):
    collection_name: str | None = Field(None, description="The collection's name in Qdrant.")
    connection: str | None = Field(None, description="namespace/name of the QdrantConnection.")
    qdrant_status: QdrantStatus | None = Field(
        None,
        description="Qdrant's own status: green (ready), yellow (optimizing), grey (optimization pending), "
        "red (failed).",
    )
    points_count: int | None = Field(None, description="Points in the collection (Qdrant's approximate count).")
    indexed_vectors_count: int | None = Field(None, description="Vectors already in a vector index.")
    segments_count: int | None = Field(None, description="Segments over all shards.")
    shard_number: int | None = Field(None, description="Shards, as Qdrant reports them.")
    replication_factor: int | None = Field(None, description="Replicas of each shard, as Qdrant reports them.")
    shards: list[ShardStatus] | None = Field(
        None,
        description="Distributed Qdrant: each shard's replicas and their states (the operator keeps every shard at "
        "replicationFactor Active replicas on distinct peers).",
    )
    aliases: list[str] = Field(default_factory=list, description="The collection's aliases in Qdrant.")
    payload_indexes: list[str] = Field(default_factory=list, description="Fields with a payload index in Qdrant.")
    metadata_keys: list[str] = Field(
        default_factory=list,
        description="Keys of spec.metadata found in the collection's Qdrant metadata: removed from Qdrant when "
        "dropped from the spec.",
    )
    vector_names: list[str] = Field(
        default_factory=list,
        description="Named vectors of the spec (dense and sparse) found in Qdrant: the only ones removed from Qdrant, "
        "with their data, when dropped from the spec. A vector in Qdrant the spec never listed is left alone.",
    )
    drift: list[Drift] = Field(
        default_factory=list, description="Changes found in Qdrant that differ from the spec (driftPolicy Report)."
    )
    restored_from: str | None = Field(None, description="The restore-from annotation value last carried out.")
    plan: PlanStatus | None = Field(None, description="The current or last plan (see changePolicy).")
    plan_base: str | None = Field(
        None,
        description="The live state the next plan meets (the collection's configuration in Qdrant and the generation "
        "last applied), as a digest: `kubectl qdrant plan -f FILE` combines it with a spec to compute, before the "
        "change is applied, the hash its plan will have. It changes when the live state moves.",
    )
    pending_plan: PlanPhase | None = Field(
        None,
        description="status.plan.phase while that plan is not applied yet (AwaitingApproval, Applying); absent once "
        "it is, so the Plan column shows only a plan that needs a look.",
    )
    physical_collection: str | None = Field(
        None, description="BlueGreen: the collection collectionName is an alias of."
    )
    migration: MigrationStatus | None = Field(None, description="BlueGreen: the migration in progress.")
    previous_collection: str | None = Field(
        None, description="BlueGreen: the collection before the last switch, kept until rollbackUntil."
    )
    rollback_until: str | None = Field(
        None,
        description="BlueGreen: reverting the spec before this time switches back without copying.",
        json_schema_extra={"format": "date-time"},
    )
    applied_generation: int | None = Field(
        None,
        description="The generation last applied to Qdrant in full (observedGeneration also advances "
        "when a generation is refused, e.g. Stalled).",
    )

    @model_validator(mode="after")
    def _pending_plan_follows_plan(self) -> VectorCollectionStatus:
        """pendingPlan is derived from plan wherever a status sets plan, so no step keeps it by hand."""
        if "plan" in self.model_fields_set:
            phase = self.plan.phase if self.plan is not None else None
            self.pending_plan = None if phase in (None, PlanPhase.APPLIED) else phase
        return self
