"""qdrant-collection-operator: Qdrant collections managed declaratively from Kubernetes."""

from importlib.metadata import version

__version__ = version("qdrant-collection-operator")  # one source: pyproject.toml, through the installed metadata
