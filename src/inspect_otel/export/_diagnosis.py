"""Why an export failed, in words a user can act on.

The OTLP exporters report a failure as a log message, not as a value: the messages of the
exporters' loggers are kept (not shown, see ``capture_export_logs``) and matched to a cause, with
the URL the exporter posts to (``export_cause``, ``traces_url``). An OTLP/HTTP request to a gRPC
port goes unanswered like a hung server: one bounded look at the endpoint tells them apart
(``what_listens_at``).
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from collections.abc import Sequence

from ..config import Protocol, Settings

# Loggers of the OTLP exporters and SDK processors: their per-batch retry noise is summarised by
# the hook instead of flooding the eval's console.
_EXPORT_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal")


class _LastError(logging.Handler):
    """Keeps the exporters' last complaints for the run-end warning and the export's cause
    (installed once, for good)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.message: str | None = None
        self.recent: deque[str] = deque(maxlen=8)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = record.getMessage()
        except Exception:  # a malformed log call must not break export
            self.message = str(record.msg)
        self.recent.append(self.message)


EXPORT_ERRORS = _LastError()


# The exporters' complaints -> the cause a user can act on (first match wins).
_HTTP_STATUS = re.compile(r"code: (\d{3}), reason: ([^,]*)")
_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Failed parsing HTTP/2|http1\.x server", re.I),
     "protocol mismatch: gRPC sent to an endpoint that speaks HTTP/1 (OTLP/HTTP is port 4318: "
     "use --protocol http/protobuf, or the gRPC port 4317)"),
    (re.compile(r"RemoteDisconnected|BadStatusLine|Connection aborted|without response", re.I),
     "protocol mismatch: the endpoint closed the connection without an HTTP answer (a gRPC "
     "port? use --protocol grpc, or the OTLP/HTTP port 4318)"),
    (re.compile(r"Connection refused|ECONNREFUSED", re.I),
     "connection refused: nothing listens at {endpoint}"),
    (re.compile(r"Name or service not known|nodename nor servname|getaddrinfo", re.I),
     "the endpoint's host name does not resolve: {endpoint}"),
    (re.compile(r"timed? ?out|DEADLINE_EXCEEDED", re.I),
     "timeout: {endpoint} did not answer within OTEL_EXPORTER_OTLP_TIMEOUT"),
)


def export_cause(messages: Sequence[str], endpoint: str) -> str | None:
    """Why an export failed, in words a user can act on, from the exporters' log messages
    (refused, timeout, an HTTP status with the URL, a protocol mismatch); None if unknown."""
    # The SDK's summaries ("... due to timeout, max retries or shutdown", "already shutdown") name
    # no cause: whether a transient error was logged before them is a race with the flush.
    useful = [m for m in messages if not _NO_CAUSE.search(m)]
    for message in reversed(useful):
        status = _HTTP_STATUS.search(message)
        if status:
            return f"HTTP {status.group(1)} {status.group(2).strip()} from {endpoint}"
    text = "\n".join(useful)
    for pattern, cause in _CAUSES:
        if pattern.search(text):
            return cause.format(endpoint=endpoint)
    if useful:
        return useful[-1][:300]
    if any("due to timeout" in m for m in messages):  # no answer in time (or none at all: a
        return _CAUSES[-1][1].format(endpoint=endpoint)  # probe tells refused apart)
    return None


_NO_CAUSE = re.compile(r"due to timeout, max retries or shutdown|already shutdown", re.I)


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
NOTHING = "nothing"  # what_listens_at: the connection was refused
HTTP2_ONLY = "http/2 only"  # what_listens_at: the server answered an HTTP/2 preface (a gRPC port)


def what_listens_at(url: str, timeout_s: float = 1.0) -> str | None:
    """One bounded look at an ``http://`` endpoint: connect and send an HTTP/2 connection
    preface. NOTHING when the connection is refused, HTTP2_ONLY when the server answers with
    HTTP/2 frames (a gRPC port, which leaves an HTTP/1 request unanswered), else None."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout_s) as conn:
            conn.settimeout(timeout_s)
            conn.sendall(_HTTP2_PREFACE)
            head = conn.recv(9)
    except ConnectionRefusedError:
        return NOTHING
    except OSError:
        return None
    return HTTP2_ONLY if len(head) == 9 and head[3] == 4 else None  # 4: a SETTINGS frame


def traces_url(settings: Settings) -> str:
    """The traces URL the exporter posts to (for messages)."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").rstrip("/")
    if settings.traces_protocol is Protocol.GRPC:
        return base or "(the SDK's default gRPC endpoint)"
    return f"{base}/v1/traces" if base else "(the SDK's default endpoint)"


def capture_export_logs() -> None:
    """The OTLP exporters' and SDK processors' complaints go to EXPORT_ERRORS, not the console:
    per batch and per retry they would flood the eval's output; the hook summarises them."""
    for name in _EXPORT_LOGGERS:
        export_logger = logging.getLogger(name)
        if EXPORT_ERRORS not in export_logger.handlers:
            export_logger.addHandler(EXPORT_ERRORS)
            export_logger.propagate = False
