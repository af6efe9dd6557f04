pytest_plugins = ["tests.fixtures.controlplane"]
