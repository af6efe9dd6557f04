"""The counting proxy names requests by the dev server's route templates, so counts compare across tiers."""

from __future__ import annotations

import pytest

from tests.fixtures.counting_proxy import template


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("/collections", "/collections"),
        ("/collections/aliases", "/collections/aliases"),
        ("/collections/docs", "/collections/{collection_name}"),
        ("/collections/docs/", "/collections/{collection_name}"),
        ("/collections/docs/index", "/collections/{collection_name}/index"),
        ("/collections/docs/index/tenant", "/collections/{collection_name}/index/{field_name}"),
        ("/collections/docs/points/7", "/collections/{collection_name}/points/{id}"),
        ("/collections/docs/points/payload/clear", "/collections/{collection_name}/points/payload/clear"),
        ("/collections/docs/snapshots/recover", "/collections/{collection_name}/snapshots/recover"),
        ("/collections/docs/snapshots/docs-1.snapshot", "/collections/{collection_name}/snapshots/{snapshot_name}"),
        ("/collections/docs/cluster", "/collections/{collection_name}/cluster"),
        ("/collections/docs/vectors/title", "/collections/{collection_name}/vectors/{vector_name}"),
        ("/collections/docs/points/vectors", "/collections/{collection_name}/points/vectors"),
        ("/collections/docs/points/vectors/delete", "/collections/{collection_name}/points/vectors/delete"),
    ],
)
def test_template(path: str, expected: str) -> None:
    assert template(path) == expected
