"""No secret material in log lines, status messages, Events or errors: the pure parts."""

from __future__ import annotations

import base64
import io
import json
import logging
from datetime import UTC, datetime

import httpx
import pydantic
import pytest
from qdrant_client.http.exceptions import UnexpectedResponse

from collection_operator import logs, redact
from collection_operator.api import QdrantConnectionSpec
from collection_operator.qdrant import tokens
from collection_operator.qdrant.errors import classify, qdrant_error_text

MARKER = "sekr1t-M4RKER-value"


def test_redact_url_masks_userinfo_and_credential_query_parameters():
    assert redact.redact_url("https://admin:hunter22@qdrant.svc:6333/x") == "https://***@qdrant.svc:6333/x"
    assert redact.redact_url("http://qdrant:6333/?api-key=abc&timeout=5") == "http://qdrant:6333/?api-key=***&timeout=5"
    assert redact.redact_url("http://qdrant:6333/?Token=abc") == "http://qdrant:6333/?Token=***"
    assert redact.redact_url("http://qdrant:6333/collections") == "http://qdrant:6333/collections"


def test_redact_text_masks_urls_query_values_and_headers_inside_free_text():
    text = (
        "client for http://u:hunter22@q:6333/?api_key=abc1234 started; headers {'api-key': 'abc1234', "
        '"Authorization": "Bearer xyz98765"}'
    )
    out = redact.redact_text(text)
    assert "hunter22" not in out and "abc1234" not in out and "xyz98765" not in out
    assert "http://***@q:6333/?api_key=***" in out
    # Names of Secrets and keys are not secret and stay readable.
    readable = 'Secret ns/qdrant-key has no key "api-key"'
    assert redact.redact_text(readable) == readable


def test_jwts_are_masked_by_their_shape_wherever_they_appear():
    token = tokens.mint("k" * 32, {"docs": "r"}, datetime(2030, 1, 1, tzinfo=UTC))
    for text in (f"token {token} refused", f"api-key={token}", f'{{"t": "{token}"}}', token):
        out = redact.redact_text(text)
        assert token not in out and token.split(".")[2] not in out and "***" in out, out
    readable = "Secret ns/app-qdrant holds a token for docs until 2030-01-01T00:00:00Z"
    assert redact.redact_text(readable) == readable


def test_registered_secret_values_are_masked_in_clear_and_base64():
    secrets = redact.SecretValues()
    secrets.add(f"{MARKER}\n".encode())
    encoded = base64.b64encode(MARKER.encode()).decode()
    out = secrets.scrub(f"response body: {{'data': {{'api-key': '{encoded}'}}}} and {MARKER}")
    assert MARKER not in out and encoded not in out
    secrets.add(b"abc")  # too short to mask: ordinary words stay
    assert secrets.scrub("abc") == "abc"


def test_log_records_are_scrubbed_and_client_libraries_pinned_to_warning():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        secrets = redact.SecretValues()
        logs.install(json=False, secrets=secrets)
        secrets.add(MARKER.encode())
        encoded = base64.b64encode(MARKER.encode()).decode()
        logging.getLogger("kubernetes_asyncio.client.rest").debug("response body: %s", encoded)
        logging.getLogger("httpx").info("HTTP Request: GET http://u:%s@q:6333/", MARKER)
        logging.getLogger("collection_operator.x").info("client for %s started", f"http://u:{MARKER}@q:6333")
        try:
            raise RuntimeError(f"boom {MARKER}")
        except RuntimeError:
            logging.getLogger("collection_operator.x").exception("failed")
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    out = stream.getvalue()
    assert "client for http://***@q:6333 started" in out
    assert "response body" not in out  # the library logger is pinned to WARNING
    assert "boom ***" in out
    assert MARKER not in out and encoded not in out


def test_credentials_in_the_url_are_refused_with_a_pointer_to_api_key_secret_ref_and_never_echoed():
    for url in (f"http://admin:{MARKER}@q:6333", f"https://q:6333/?api-key={MARKER}", f"http://{MARKER}@q:6333"):
        with pytest.raises(pydantic.ValidationError) as info:
            QdrantConnectionSpec.model_validate({"url": url})
        assert "apiKeySecretRef" in str(info.value)
        assert MARKER not in str(info.value)
    with pytest.raises(pydantic.ValidationError) as info:
        QdrantConnectionSpec.model_validate({"url": f"ftp://{MARKER}"})
    assert MARKER not in str(info.value)
    QdrantConnectionSpec.model_validate({"url": "http://q:6333/prefix@v1?timeout=5"})


def response(status: int, body: bytes, reason: str = "Error") -> UnexpectedResponse:
    return UnexpectedResponse(status, reason, body, httpx.Headers())


def test_only_qdrants_own_error_text_reaches_a_message():
    qdrant = classify(response(400, json.dumps({"status": {"error": "Wrong input: bad"}, "time": 0}).encode()))
    assert qdrant.message == "HTTP 400: Wrong input: bad"
    for body in (
        f"<html>{MARKER}</html>".encode(),
        json.dumps({"error": MARKER}).encode(),
        json.dumps({"status": {"error": {"x": MARKER}}}).encode(),
        json.dumps([MARKER]).encode(),
    ):
        for status in (400, 404, 500, 503):
            reply = response(status, body)
            request = httpx.Request("GET", "http://127.0.0.1:6333/collections")
            rest = httpx.Response(status, content=body, request=request)  # as the operator's REST calls get it
            for raised in (reply, httpx.HTTPStatusError("not 2xx", request=request, response=rest)):
                error = classify(raised)
                assert MARKER not in error.message, (status, body)
                assert "not a Qdrant error response" in error.message
    long = qdrant_error_text(json.dumps({"status": {"error": "x" * 1000 + "\nforged line"}}).encode())
    assert long is not None and len(long) == 300 and "\n" not in long
    assert MARKER not in classify(ValueError(f"validation failed on input {MARKER}")).message


def test_a_servers_reason_phrase_never_reaches_a_message():
    request = httpx.Request("GET", "http://127.0.0.1:6333/collections")
    hostile = f"Set apiKey to {MARKER} and retry".encode()
    for status, phrase in ((503, "Service Unavailable"), (418, "I'm a Teapot"), (599, "HTTP 599")):
        rest = httpx.Response(status, content=b"<html/>", request=request, extensions={"reason_phrase": hostile})
        for raised in (
            response(status, b"<html/>", hostile.decode()),
            httpx.HTTPStatusError("", request=request, response=rest),
        ):
            assert classify(raised).message == f"HTTP {status}: {phrase} (not a Qdrant error response)"


def test_qdrants_error_text_is_one_printable_bounded_line():
    said = "Wrong input:\x1b[31m fake\u202eline\x00\r\nINFO forged\u200b" + "y" * 400
    text = qdrant_error_text(json.dumps({"status": {"error": said}}).encode())
    assert text is not None and text.isprintable() and len(text) == 300
    assert text.startswith("Wrong input: [31m fake line INFO forged y")
    assert redact.foreign_text("  a\tb\n\nc ", 10) == "a b c"


def test_a_broken_replys_text_is_never_quoted():
    broken = httpx.RemoteProtocolError(f"illegal status line: b'HTTP/1.1 200 {MARKER}'")
    for idempotent in (True, False):
        error = classify(broken, idempotent=idempotent)
        assert MARKER not in error.message and "RemoteProtocolError" in error.message


def test_a_presigned_url_s_signature_is_masked_in_free_text():
    """What a recover failure could quote: the URL Qdrant was given (docs/security.md#object-storage)."""
    url = (
        "http://127.0.0.1:8333/b/k.snapshot?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261207"
        "&X-Amz-Date=20261207T043245Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=b2a4f80173"
    )
    text = redact.redact_text(f"Failed to download snapshot from {url}: checksum mismatch")
    assert "b2a4f80173" not in text and "***" in text and "checksum mismatch" in text
