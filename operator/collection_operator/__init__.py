"""qdrant-collection-operator: Qdrant collections managed declaratively from Kubernetes."""

__version__ = "0.1.0"
