"""Secret material out of every text the operator emits: URLs with credentials, API-key-like query
parameters and headers, JSON Web Tokens (the tokens CollectionAccessKeys mint, by their shape, so a key that
rotates every few minutes adds nothing to remember), and the values of the Secrets the operator has read
(and their base64 form).

Pure standard library and importable from every layer. One `SecretValues` per operator run: the k8s layer
adds each Secret value it reads, `logs.install()` scrubs every log record with it, and the handlers scrub
status messages and Events with it.

A server's words, too, reach a status, an Event or a log line only through this module: an HTTP status is
named by its standard phrase (`http_phrase`), never by the reason phrase the server sent, and the few texts
a configured Qdrant may contribute (its JSON error text, its version) pass `foreign_text`: one line, no
control or format characters, bounded.
"""

from __future__ import annotations

import base64
import http
import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters and headers whose value is a credential.
SENSITIVE = (
    r"(?:api[-_]?key|apikey|access[-_]?token|token|secret|password|passwd|pwd|auth|authorization|"
    r"signature|sig|credentials?|x-amz-security-token|x-amz-signature)"
)
_SENSITIVE_NAME = re.compile(rf"^{SENSITIVE}$", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s?#@]*@")
_QUERY_VALUE = re.compile(rf"(?P<name>[?&;]{SENSITIVE}=)[^&\s#'\"]*", re.IGNORECASE)
_HEADER_VALUE = re.compile(
    rf"(?P<name>['\"]?{SENSITIVE}['\"]?\s*[:=]\s*['\"]?)(?:bearer\s+|basic\s+)?[^'\"\s,}}]+", re.IGNORECASE
)
# A JWT: base64url JSON header and payload (both start `{"`, i.e. eyJ) and a signature.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words; no real API key is that short


def redact_url(url: str) -> str:
    """`url` with `user:password@` turned into `***@` and credential-like query values into `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SENSITIVE_NAME.match(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Credentials in URLs, credential-like query parameters and headers, and JWTs masked; no Secret lookup."""
    text = _JWT.sub(MASK, text)
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    text = _QUERY_VALUE.sub(rf"\g<name>{MASK}", text)
    return _HEADER_VALUE.sub(rf"\g<name>{MASK}", text)


def http_phrase(status: int) -> str:
    """The standard reason phrase of an HTTP status ("Service Unavailable"), or "HTTP <status>" when unknown."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


FOREIGN_TEXT_LIMIT = 300  # characters of a server's text in one message


def foreign_text(text: str, limit: int = FOREIGN_TEXT_LIMIT) -> str:
    """A server's text made fit for a status message: control and format characters (line breaks, escape
    sequences, bidirectional overrides) turned into spaces, runs of spaces into one, cut to `limit`."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SecretValues:
    """The Secret values the operator has read, in clear and base64: masked wherever `scrub` sees them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # log records are scrubbed from any thread
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: bytes | str) -> None:
        """Mask `value` (and its base64 form) from now on."""
        raw = value.encode() if isinstance(value, str) else value
        forms = set()
        for candidate in (raw, raw.strip()):
            try:
                text = candidate.decode()
            except UnicodeDecodeError:
                text = ""
            if len(text) >= MIN_SECRET_LENGTH:
                forms.add(text)
            if len(candidate) >= MIN_SECRET_LENGTH:
                forms.add(base64.b64encode(candidate).decode())
        with self._lock:
            if forms <= self._values:
                return
            self._values.update(forms)
            # Longest first, so a value inside another's base64 never leaves half of it behind.
            self._pattern = re.compile("|".join(re.escape(v) for v in sorted(self._values, key=len, reverse=True)))

    def scrub(self, text: str) -> str:
        """redact_text, and every value added masked."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return redact_text(text)
