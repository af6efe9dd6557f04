"""The custom resources' pydantic models: the single source of truth for CRDs and the operator."""

from .accesskey import CollectionAccessKeySpec, CollectionAccessKeyStatus
from .base import API_VERSION, FINALIZER, GROUP, PREFIX, VERSION
from .collection import VectorCollectionSpec, VectorCollectionStatus
from .connection import QdrantConnectionSpec, QdrantConnectionStatus
from .kinds import KINDS, Kind
from .snapshot import CollectionSnapshotSpec, CollectionSnapshotStatus

__all__ = [
    "API_VERSION",
    "FINALIZER",
    "GROUP",
    "KINDS",
    "PREFIX",
    "VERSION",
    "CollectionAccessKeySpec",
    "CollectionAccessKeyStatus",
    "CollectionSnapshotSpec",
    "CollectionSnapshotStatus",
    "Kind",
    "QdrantConnectionSpec",
    "QdrantConnectionStatus",
    "VectorCollectionSpec",
    "VectorCollectionStatus",
]
