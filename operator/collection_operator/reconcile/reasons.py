"""The condition reasons of the four kinds (Ready's reason, and Stalled's or Reconciling's when they hold),
one name each. docs/troubleshooting.md explains every one (tests/unit/test_docs.py checks). A QdrantConnection
that fails its health probes reports the client layer's own error reason (Unreachable, Unauthorized ...,
qdrant/errors.py) instead."""

from __future__ import annotations

# Any kind
INVALID_SPEC = "InvalidSpec"  # the spec (or Qdrant, for the request made of it) says no: a person must act
SECRET_NOT_FOUND = "SecretNotFound"
CONNECTION_NOT_ALLOWED = "ConnectionNotAllowed"
CONNECTION_NOT_READY = "ConnectionNotReady"
QDRANT_UNAVAILABLE = "QdrantUnavailable"
PAUSED = "Paused"
UNMANAGED = "Unmanaged"

# QdrantConnection
CONNECTED = "Connected"
CONNECTING = "Connecting"
RECOVERING = "Recovering"
CIRCUIT_OPEN = "CircuitOpen"
READ_ONLY_KEY = "ReadOnlyKey"
DEGRADED = "Degraded"  # some probes (connection) or replicas (collection) fail; still Ready
WAITING_FOR_DEPENDENTS = "WaitingForDependents"

# VectorCollection
IN_SYNC = "InSync"
DRIFT_DETECTED = "DriftDetected"
OPTIMIZING = "Optimizing"
REPLICATING = "Replicating"
SHARD_UNAVAILABLE = "ShardUnavailable"
COLLECTION_MISSING = "CollectionMissing"
RESOURCE_CONFLICT = "ResourceConflict"
ALREADY_EXISTS = "AlreadyExists"
ADOPTION_NOT_ALLOWED = "AdoptionNotAllowed"  # onExisting Adopt, from a namespace the connection does not let adopt
COLLECTION_NAME_CHANGED = "CollectionNameChanged"  # the connection's name prefix is not the one applied
ALIAS_CONFLICT = "AliasConflict"
OWNED_BY_ANOTHER_RESOURCE = "OwnedByAnotherResource"  # a BlueGreen migration's source bears another's marker
IMMUTABLE_FIELD_CHANGED = "ImmutableFieldChanged"
AWAITING_APPROVAL = "AwaitingApproval"  # Reconciling, but nothing moves until a person approves the plan
MIGRATING = "Migrating"
SWITCHED = "Switched"
AWAITING_REEMBEDDING = "AwaitingReembedding"
RESTORING = "Restoring"
RESTORE_FAILED = "RestoreFailed"
RESTORE_VERIFICATION_FAILED = "RestoreVerificationFailed"
SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
SNAPSHOT_NOT_READY = "SnapshotNotReady"

# CollectionSnapshot (and a restore's source)
COMPLETED = "Completed"
SCHEDULED = "Scheduled"
SNAPSHOT_IN_PROGRESS = "SnapshotInProgress"
COLLECTION_NOT_FOUND = "CollectionNotFound"
COLLECTION_NOT_READY = "CollectionNotReady"
DISTRIBUTED_UNSUPPORTED = "DistributedSnapshotUnsupported"
# Object storage (spec.objectStore, spec.source.objectStore): the objectstore package's reasons
OBJECT_STORE_CREDENTIALS_REJECTED = "ObjectStoreCredentialsRejected"
OBJECT_STORE_BUCKET_NOT_FOUND = "ObjectStoreBucketNotFound"
OBJECT_STORE_OBJECT_NOT_FOUND = "ObjectStoreObjectNotFound"
OBJECT_STORE_ENDPOINT_REFUSED = "ObjectStoreEndpointRefused"
OBJECT_STORE_UNAVAILABLE = "ObjectStoreUnavailable"
SNAPSHOT_CHECKSUM_MISMATCH = "SnapshotChecksumMismatch"  # the file streamed off the node is not the one Qdrant wrote
# Restore drills (spec.verify): the BackupVerified condition's reasons
VERIFIED = "Verified"
SNAPSHOT_UNRESTORABLE = "SnapshotUnrestorable"  # Qdrant could not recover the file (missing, damaged, unreachable)
SAMPLE_MISMATCH = "SampleMismatch"  # restored points differ from those recorded when the snapshot was taken
SCRATCH_NAME_TAKEN = "ScratchCollectionTaken"  # a collection not this drill's holds the scratch name

# CollectionAccessKey
KEY_ISSUED = "KeyIssued"  # Ready: the Secret holds a valid token; also the Event of each new token
JWT_RBAC_DISABLED = "JwtRbacDisabled"
MIXED_CONNECTIONS = "MixedConnections"
SECRET_CONFLICT = "SecretConflict"
