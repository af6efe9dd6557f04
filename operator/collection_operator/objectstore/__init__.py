"""Object storage (S3 and S3-compatible servers) for snapshots kept off the node, on obstore: the Python
binding of the Rust object_store crate Qdrant itself uses. Knows nothing of Kubernetes or of Qdrant."""

from .store import ObjectStoreError, Store, StoreConfig, Uploaded, parse_location

__all__ = ["ObjectStoreError", "Store", "StoreConfig", "Uploaded", "parse_location"]
