"""Fixtures of the fault-injection tier and its results table (RESULTS.json, RESULTS.md, written at session end;
`make faults-table` copies the table into CONTRIBUTING.md)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults import harness, table
from tests.fixtures.controlplane import REPO, ControlPlane
from tests.fixtures.operator import wait_for
from tests.fixtures.qdrant import QdrantServer

OUTCOME = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        item.stash[OUTCOME] = "xfailed" if hasattr(report, "wasxfail") else report.outcome
    return report


@pytest.fixture(scope="session")
def faults_results() -> Iterator[dict[str, dict[str, Any]]]:
    rows: dict[str, dict[str, Any]] = {}
    yield rows
    if rows:
        table.save(rows)


@pytest.fixture(scope="session")
def faults_qdrant(qdrant_server_factory: Callable[..., QdrantServer]) -> QdrantServer:
    """A dev Qdrant of the tier's own (its knobs and kills disturb no other test) whose API key is the marker."""
    return qdrant_server_factory(api_key=harness.SECRET)


@pytest.fixture(scope="session")
def faults_logs() -> Path:
    """Every operator log of the tier (the secrets scenario reads them all), kept after the run in the
    git-ignored .devenv/ (pytest's own temporary directories are pruned by any later pytest run)."""
    path = REPO / ".devenv" / "faults-logs" / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def faults_operator(control_plane: ControlPlane, faults_logs: Path) -> Iterator[harness.OperatorProcess]:
    """The operator process (--verbose) of the whole tier, watching only its namespaces; scenarios kill it."""
    op = harness.OperatorProcess(control_plane, [harness.NAMESPACES], faults_logs / "operator.log")
    op.start()
    yield op
    op.stop()


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    faults_qdrant: QdrantServer,
    faults_operator: harness.OperatorProcess,
    faults_results: dict[str, dict[str, Any]],
) -> Iterator[harness.Scenario]:
    """A namespace with the connection "main". At the end Qdrant and the operator are running again and the
    namespace is deleted and waited for, so no finalizer is left behind."""
    namespace = harness.namespace_name()
    control_plane.admin("create", "namespace", namespace)
    sc = harness.Scenario(control_plane, faults_qdrant, namespace, faults_operator)
    sc.row["scenario"] = request.node.name.removeprefix("test_").replace("_", " ")
    started = dt.datetime.now(dt.UTC)
    try:
        sc.connect()
        yield sc
    finally:
        if not faults_qdrant.running:
            faults_qdrant.start()
        faults_qdrant.clear_faults()
        if not faults_operator.alive:
            faults_operator.start()
        # Waited for here: kopf does not serve a namespace that was already terminating when it started (glob
        # scopes), so a later scenario's operator restart would strand this one's finalizers.
        sc.row.update(outcome=request.node.stash.get(OUTCOME, "error"), date=started.strftime("%Y-%m-%d %H:%M"))
        faults_results[request.node.name] = sc.row
        control_plane.admin("delete", "namespace", namespace, "--wait=false", check=False)
        try:
            wait_for(
                lambda: "NotFound" in control_plane.admin("get", "namespace", namespace, check=False),
                120,
                f"namespace {namespace} to be deleted",
            )
        except AssertionError:
            sc.row["outcome"] += ", namespace not deleted in 120 s"
            raise
