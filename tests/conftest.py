import os
from pathlib import Path

from devenv import ports

# Under pytest-xdist (`make test` runs workers side by side: the suite mostly waits on the operator and servers,
# not on the 2 cores) each worker has a control plane of its own: its own state directory and ports, so a test
# that stops and restarts its API server, or counts writes in its audit log, sees no other worker. Set before
# the fixtures below import devenv.controlplane, which reads both at import.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and "DEVENV_STATE_DIR" not in os.environ:
    os.environ["DEVENV_STATE_DIR"] = str(Path(__file__).resolve().parent.parent / ".devenv" / "workers" / _worker)
    # Random free ports (not the defaults every worker would race for): API server, controller manager, etcd, peer.
    _api, _etcd = ports.free_ports(4)[::2]
    os.environ["DEVENV_API_PORT"], os.environ["DEVENV_ETCD_PORT"] = str(_api), str(_etcd)

pytest_plugins = [
    "tests.fixtures.controlplane",
    "tests.fixtures.qdrant",
    "tests.fixtures.operator",
    "tests.fixtures.s3",
]
