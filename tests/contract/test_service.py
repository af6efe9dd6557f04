"""Service endpoints and the route table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from devenv.qdrant_dev.app import DevState, QdrantDevApp

# The shared reference files sit next to the repository (../shared), as in TESTING.md.
OPENAPI = Path(__file__).resolve().parents[3] / "shared/qdrant-reference/openapi-1.19.json"


def test_version_and_health(client: QdrantClient, qdrant_server) -> None:  # type: ignore[no-untyped-def]
    info = client.info()
    assert info.title == "qdrant - vector search engine"
    assert tuple(int(x) for x in info.version.split(".")[:2]) >= (1, 16)
    with qdrant_server.http(timeout=10) as http:
        for path in ("/healthz", "/livez", "/readyz"):
            resp = http.get(path)
            assert resp.status_code == 200, path


def test_cluster_is_single_node(client: QdrantClient) -> None:
    status = client.http.distributed_api.cluster_status().result
    assert isinstance(status, m.ClusterStatusOneOf)
    assert status.status == "disabled"


def test_every_served_route_is_in_the_openapi_file(tmp_path: Path) -> None:
    if not OPENAPI.exists():
        pytest.skip(f"Qdrant's OpenAPI file is not at {OPENAPI}")
    paths = json.loads(OPENAPI.read_text())["paths"]
    app = QdrantDevApp(tmp_path, DevState())
    served = [(method, route.path) for route in app.routes for method in route.methods or () if method != "HEAD"]
    assert len(served) >= 30
    missing = [(meth, path) for meth, path in served if meth.lower() not in paths.get(path, {})]
    assert not missing, f"routes not in Qdrant's OpenAPI: {missing}"
