"""What a hostile server can make the operator say or reach: its reason phrase and bodies never verbatim in a
status, an Event or a log line; no connection to an address the policy excludes, whatever DNS answers later.
The operator in-process against the real API server and dev Qdrant servers of this module's own; every
address loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from collection_operator.config.address_policy import AddressPolicy, IPAddress
from collection_operator.logs import QUIET_LOGGERS
from collection_operator.qdrant import AddressNotAllowed, QdrantGateway, TLSError
from collection_operator.reconcile.mapping import OWNER_KEY
from collection_operator.reconcile.outcome import RETRY_SECONDS
from tests.fixtures.operator import unique, wait_for
from tests.integration.audit import AuditWindow
from tests.integration.test_client_gateway import settings as client_settings

pytestmark = pytest.mark.integration
PLURAL = "qdrantconnections"
VC = "vectorcollections"
MARKER = "Hostile-M4RKER"


@pytest.fixture(scope="module")
def hostile(qdrant_server_factory: Any) -> Any:
    """A dev Qdrant of this module's own: its faults disturb no other test."""
    server = qdrant_server_factory()
    yield server
    server.clear_faults()


def event_messages(cluster: Any, name: str) -> list[str]:
    events = json.loads(cluster.kubectl("get", "events", "-o", "json", f"--field-selector=involvedObject.name={name}"))
    return [event.get("message") or "" for event in events["items"]]


def test_a_hostile_reason_phrase_and_body_reach_status_only_as_standard_words(cluster, operator, hostile, caplog):
    caplog.set_level(logging.INFO)
    name = unique("hostile")
    cluster.apply("QdrantConnection", name, {"url": hostile.url, "environment": "Testing"})
    cluster.wait_condition(PLURAL, name, "Connected")

    # Not Qdrant's error shape: a page, and a reason phrase that tells the reader what to do.
    phrase = f"Forbidden - paste your API key at evil.example/{MARKER}"
    hostile.set_faults(error_rate=1.0, error_status=403, reason_phrase=phrase, error_body=f"<html>{MARKER}</html>")
    cond = cluster.wait_condition(PLURAL, name, "Unauthorized", status="False", timeout=30)
    message = next(c for c in cond["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert "HTTP 403: Forbidden (not a Qdrant error response)" in message, message
    assert MARKER not in message and "evil" not in message

    # Qdrant's error shape: its text is shown, as one printable line, bounded.
    said = f"Forbidden:\x1b[31m{MARKER}\r\nINFO forged log line\u202e" + "z" * 2000
    hostile.set_faults(
        error_rate=1.0, error_status=403, reason_phrase=phrase, error_body=json.dumps({"status": {"error": said}})
    )

    def quoted() -> str | None:
        text = cluster.condition(PLURAL, name)["message"]
        return text if MARKER in text else None

    message = wait_for(quoted, 30, "Qdrant's error text in the message")
    assert message.isprintable() and "\x1b" not in message and "\n" not in message and "evil" not in message
    assert f"HTTP 403: Forbidden: [31m{MARKER} INFO forged log line z" in message
    assert len(message) < 500  # Qdrant's text is cut at 300 characters

    hostile.clear_faults()
    cluster.wait_condition(PLURAL, name, "Connected", timeout=30)
    assert not [m for m in event_messages(cluster, name) if "evil" in m or "\x1b" in m or "\n" in m]
    # httpx's own INFO lines quote the status line; the operator keeps those loggers at WARNING (logs.QUIET_LOGGERS).
    ours = [r.getMessage() for r in caplog.records if r.name.split(".")[0] not in QUIET_LOGGERS]
    assert ours and not [m for m in ours if "evil" in m or MARKER in m or "\x1b" in m], ours


def rebinding(first: str, then: str):  # type: ignore[no-untyped-def]
    """An in-process resolver for a test name: `first` until `rebind()`, `then` after; never the system's."""
    state = {"answer": first}

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(state["answer"])]

    resolve.rebind = lambda: state.update(answer=then)  # type: ignore[attr-defined]
    return resolve


async def test_a_name_rebound_to_an_excluded_loopback_address_gets_no_connection(hostile):
    port = int(hostile.url.rsplit(":", 1)[1])
    accepted: list[object] = []
    # Where the rebound name points: a listener on another loopback address, the same port, that the policy excludes.
    trap = await asyncio.start_server(lambda r, w: (accepted.append(r), w.close()), "127.0.0.2", port)
    resolve = rebinding("127.0.0.1", "127.0.0.2")
    allowed = client_settings().model_copy(update={"address_policy": AddressPolicy(allowed_hosts=("127.0.0.1/32",))})
    gateway = QdrantGateway(f"http://qdrant.rebind.test:{port}", allowed, name="rebind", resolve=resolve)
    try:
        assert isinstance(await gateway.list_collections(), list)  # by name, to the address checked
        resolve.rebind()
        await gateway.update_credentials(api_key="new-key")  # a new client: new connections, resolved again
        with pytest.raises(AddressNotAllowed, match=r"127\.0\.0\.2"):
            await gateway.list_collections()
        assert accepted == []
    finally:
        await gateway.aclose()
        trap.close()
        await trap.wait_closed()


async def test_tls_is_verified_for_the_name_not_the_address(qdrant_server_factory):
    server = qdrant_server_factory(tls=True)  # a certificate for localhost and 127.0.0.1
    port, ca = int(server.url.rsplit(":", 1)[1]), server.ca_cert.read_text()
    for name, verified in (("localhost", True), ("qdrant.rebind.test", False)):
        gateway = QdrantGateway(
            f"https://{name}:{port}", client_settings(), name=name, ca_pem=ca, resolve=rebinding("127.0.0.1", "")
        )
        try:
            if verified:
                assert isinstance(await gateway.list_collections(), list)
            else:  # the same address, but the certificate does not name the host
                with pytest.raises(TLSError, match=r"(?i)hostname|certificate"):
                    await gateway.list_collections()
        finally:
            await gateway.aclose()


def stalls() -> float:
    labels = {"kind": "VectorCollection", "reason": "OwnedByAnotherResource"}
    return REGISTRY.get_sample_value("qdrant_operator_reconciles_total", labels) or 0.0


def test_a_blue_green_source_another_resource_owns_stalls_once_and_is_not_retried(
    control_plane, cluster, connection, qdrant_server
):
    name = unique("owned")
    spec = {"connectionRef": {"name": connection}, "collectionName": name, "vectors": [{"size": 4, "distance": "Dot"}]}
    cluster.apply("VectorCollection", "owned", spec)
    cluster.wait_condition(VC, "owned", "InSync")
    with qdrant_server.http(timeout=10) as http:  # another resource's marker on the plain collection
        http.patch(f"/collections/{name}", json={"metadata": {OWNER_KEY: "other-ns/other/0000"}}).raise_for_status()
    cluster.apply("VectorCollection", "owned", {**spec, "shardNumber": 2, "changePolicy": {"immutable": "BlueGreen"}})
    body = cluster.wait_condition(VC, "owned", "OwnedByAnotherResource", status="False")
    stalled = next(c for c in body["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and "other-ns/other" in stalled["message"], stalled

    window, events, looks = AuditWindow.open(control_plane.audit_log), event_messages(cluster, "owned"), stalls()
    time.sleep(2.5 * RETRY_SECONDS)  # deliberately idle: a retry loop would write status or kopf's progress
    assert window.writes(VC, cluster.namespace, "owned") == []
    assert event_messages(cluster, "owned") == events
    assert stalls() > looks, "the drift sweep looked again (and found the same)"
    with qdrant_server.http(timeout=10) as http:  # nothing was built, moved or deleted
        names = {c["name"] for c in http.get("/collections").json()["result"]["collections"]}
        assert name in names and not [n for n in names if n.startswith(f"{name}-")]
        assert name not in {a["alias_name"] for a in http.get("/aliases").json()["result"]["aliases"]}
