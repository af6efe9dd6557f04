"""The operator's process never loads qdrant-client: its own calls are REST in JSON over httpx, and qdrant-client
(with numpy, grpc and protobuf, most of an idle operator's memory) is for applications' calls only."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("qdrant_client", "numpy", "grpc", "google.protobuf")


def loaded_after(statement: str) -> list[str]:
    """The HEAVY modules in sys.modules of a fresh interpreter after `statement`."""
    code = f"import sys\n{statement}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


def test_the_operator_starts_without_qdrant_client_numpy_grpc_or_protobuf() -> None:
    # What `python -m collection_operator.cli run` imports before kopf runs the handlers.
    assert loaded_after("import collection_operator.cli, collection_operator.handlers.operator") == []


def test_an_application_call_loads_qdrant_client_on_first_use() -> None:
    statement = (
        "from collection_operator.api import QdrantConnectionSpec\n"
        "from collection_operator.config import resolve\n"
        "from collection_operator.qdrant.pinning import PinnedBackend\n"
        "from collection_operator.qdrant.session import new_session\n"
        "settings = resolve(QdrantConnectionSpec(url='http://127.0.0.1:9', environment='Testing'))\n"
        "backend = PinnedBackend(lambda: settings.address_policy)\n"
        "session = new_session('http://127.0.0.1:9', settings, 'key', None, True, backend)\n"
        "assert 'qdrant_client' not in sys.modules\n"
        "assert session.qdrant is session.qdrant"
    )
    assert "qdrant_client" in loaded_after(statement)
