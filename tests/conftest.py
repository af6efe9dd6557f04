pytest_plugins = ["tests.fixtures.controlplane", "tests.fixtures.qdrant", "tests.fixtures.operator"]
