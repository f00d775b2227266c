"""Why an export failed, in words a user can act on, and what to do about it.

The OTLP exporters report a failure as a log message, not as a value: the messages of the
exporters' loggers are kept per signal (not shown: ``capture_export_logs``) and matched to a cause
with the URL the exporter posts to (``diagnose``), which comes with the fix (``advice``). An
OTLP/HTTP request to a gRPC port goes unanswered like a hung server: one bounded look at the
endpoint tells them apart (``what_listens_at``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import Protocol, Settings
from ..redaction import Redactor

# The signals, as messages name them.
SPANS = "spans"
RESULTS = "evaluation results"  # the log records
METRICS = "metrics"

# Loggers of the OTLP exporters and SDK processors: their per-batch retry noise is summarised by
# the hook instead of flooding the eval's console.
_EXPORT_LOGGERS = ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal")
# Which signal a complaint is about: by its logger's module, else by the words of the message
# (the gRPC exporters share one logger; the HTTP ones name the signal: "spans batch").
_SIGNAL_OF_LOGGER = (("trace_exporter", SPANS), ("_log_exporter", RESULTS),
                     ("metric_exporter", METRICS))
# (the batch processors say "Exception while exporting Span." / "... Log.", capitalised)
_SIGNAL_OF_MESSAGE = ((re.compile(r"\b(spans?|traces)\b", re.I), SPANS),
                      (re.compile(r"\blogs?\b", re.I), RESULTS),
                      (re.compile(r"\bmetrics\b", re.I), METRICS))


def _signal(record: logging.LogRecord, message: str) -> str | None:
    for part, signal in _SIGNAL_OF_LOGGER:
        if part in record.name:
            return signal
    for pattern, signal in _SIGNAL_OF_MESSAGE:
        if pattern.search(message):
            return signal
    return None


_HEARD = "_inspect_otel_heard"


class _ExportComplaints(logging.Handler):
    """The exporters' recent complaints, per signal (installed once, for good). A thread can
    listen for its own complaints instead (``listening``): the start check's exporter runs next
    to the pipeline's, and its failure is not theirs."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._recent: dict[str | None, deque[str]] = {}
        self._listeners: dict[int, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, _HEARD, False):  # the tap has it already
            return
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call must not break export
            message = str(record.msg)
        listener = self._listeners.get(record.thread or 0)
        if listener is not None:
            listener.append(message)
            return
        self._recent.setdefault(_signal(record, message), deque(maxlen=8)).append(message)

    def tap(self, record: logging.LogRecord) -> bool:
        """A logger filter placed ahead of the SDK's own (``_Tap``): every complaint is heard,
        including the ones its DuplicateFilter then keeps from the console."""
        if record.levelno >= self.level:
            self.emit(record)
            setattr(record, _HEARD, True)
        return True

    def recent(self, signal: str) -> list[str]:
        """The last complaints about ``signal``, with the processors' (no signal named)."""
        return [*self._recent.get(None, ()), *self._recent.get(signal, ())]

    def clear(self) -> None:
        self._recent.clear()

    @contextlib.contextmanager
    def listening(self) -> Iterator[list[str]]:
        """The complaints logged on this thread while in the block, and only there."""
        heard: list[str] = []
        self._listeners[threading.get_ident()] = heard
        try:
            yield heard
        finally:
            self._listeners.pop(threading.get_ident(), None)


EXPORT_ERRORS = _ExportComplaints()


class _Tap(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return EXPORT_ERRORS.tap(record)


_TAP = _Tap()


def capture_export_logs() -> None:
    """The OTLP exporters' and SDK processors' complaints go to EXPORT_ERRORS, not the console:
    per batch and per retry they would flood the eval's output; the hook summarises them.

    Call it again once an exporter is built: the SDK gives some of its loggers a DuplicateFilter
    (the same message template is passed once per 20 s, whatever its arguments), which would
    keep a second complaint from the handler, e.g. the start check's UNAUTHENTICATED after the
    pipeline's UNAVAILABLE, or the pipeline's 401 after the check's. Those loggers get a tap
    placed before their own filters (a filter that never vetoes, first in the list)."""
    for name in _EXPORT_LOGGERS:
        export_logger = logging.getLogger(name)
        if EXPORT_ERRORS not in export_logger.handlers:
            export_logger.addHandler(EXPORT_ERRORS)
            export_logger.propagate = False
    for name, child in list(logging.Logger.manager.loggerDict.items()):
        if (isinstance(child, logging.Logger) and child.filters and _TAP not in child.filters
                and name.startswith(_EXPORT_LOGGERS)):
            child.filters.insert(0, _TAP)


# --- causes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cause:
    kind: str  # one of the kinds below, "status" (an HTTP or gRPC status), or "other"
    text: str  # what happened, with the URL
    status: int | None = None  # the HTTP status (a gRPC status as its HTTP equivalent)


GRPC_TO_HTTP1 = "grpc-to-http1"
HTTP1_TO_GRPC = "http1-to-grpc"
TLS = "tls"
REFUSED = "refused"
UNRESOLVED = "unresolved"
TIMEOUT = "timeout"

# The exporters' complaints -> the cause (first match wins).
_CAUSES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"Failed parsing HTTP/2|http1\.x server", re.I), GRPC_TO_HTTP1,
     "protocol mismatch: gRPC sent to an endpoint that speaks HTTP/1"),
    (re.compile(r"SSLError|SSL routines|CERTIFICATE_VERIFY|handshake fail|wrong version number",
                re.I), TLS, "TLS failed with {endpoint}"),
    (re.compile(r"RemoteDisconnected|BadStatusLine|Connection aborted|without response", re.I),
     HTTP1_TO_GRPC,
     "protocol mismatch: the endpoint closed the connection without an HTTP answer (a gRPC "
     "port?)"),
    (re.compile(r"Connection refused|ECONNREFUSED", re.I), REFUSED,
     "connection refused: nothing listens at {endpoint}"),
    (re.compile(r"Name or service not known|nodename nor servname|getaddrinfo|DNS resolution",
                re.I), UNRESOLVED, "the endpoint's host name does not resolve: {endpoint}"),
    (re.compile(r"timed? ?out|DEADLINE_EXCEEDED", re.I), TIMEOUT,
     "timeout: {endpoint} did not answer within OTEL_EXPORTER_OTLP_TIMEOUT"),
)
_HTTP_STATUS = re.compile(r"code: (\d{3}), reason: ([^,]*)")
_GRPC_STATUS = re.compile(r"error code: StatusCode\.([A-Z_]+)")
# gRPC statuses a server answers with (not transport failures, which the patterns above name),
# as their HTTP equivalents.
_GRPC_AS_HTTP = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "UNIMPLEMENTED": 404,
                 "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413, "INVALID_ARGUMENT": 400,
                 "INTERNAL": 500}
# The SDK's summaries ("... due to timeout, max retries or shutdown", "already shutdown") name no
# cause: whether a transient error was logged before them is a race with the flush.
_NO_CAUSE = re.compile(r"due to timeout, max retries or shutdown|already shutdown", re.I)
_REDACT = Redactor()
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def _printable(text: str, limit: int) -> str:
    """Words from the endpoint (an HTTP reason phrase, an error) as they may go to a console:
    printable ASCII (no escape sequences), cut at ``limit``, secrets redacted."""
    return _REDACT.text(_UNPRINTABLE.sub("?", text)[:limit])


def diagnose(messages: Sequence[str], endpoint: str) -> Cause | None:
    """Why an export failed, from the exporters' log messages: an HTTP or gRPC status with the
    URL, refused, unresolved, TLS, a protocol mismatch, a timeout; None if they name nothing."""
    endpoint = _REDACT.text(endpoint)
    useful = [m for m in messages if not _NO_CAUSE.search(m)]
    for message in reversed(useful):
        status = _HTTP_STATUS.search(message)
        if status:
            return Cause("status", f"HTTP {status.group(1)} "
                         f"{_printable(status.group(2).strip(), 80)} from {endpoint}",
                         int(status.group(1)))
        grpc = _GRPC_STATUS.search(message)
        if grpc and grpc.group(1) in _GRPC_AS_HTTP:
            return Cause("status", f"gRPC {grpc.group(1)} from {endpoint}",
                         _GRPC_AS_HTTP[grpc.group(1)])
    text = "\n".join(useful)
    for pattern, kind, cause in _CAUSES:
        if pattern.search(text):
            return Cause(kind, cause.format(endpoint=endpoint))
    if useful:
        return Cause("other", _printable(useful[-1], 300))
    if any("due to timeout" in m for m in messages):  # no answer in time (or none at all: a
        return Cause(TIMEOUT, _CAUSES[-1][2].format(endpoint=endpoint))  # look tells refused)
    return None


def export_cause(messages: Sequence[str], endpoint: str) -> str | None:
    """``diagnose``'s words alone."""
    cause = diagnose(messages, endpoint)
    return cause.text if cause is not None else None


def _has_authorization(env: Mapping[str, str]) -> bool:
    headers = ",".join(env.get(name, "") for name in (
        "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"))
    return any(part.split("=", 1)[0].strip().lower() == "authorization"
               for part in headers.split(","))


def advice(cause: Cause, settings: Settings, *, cli: bool = False,
           env: Mapping[str, str] | None = None) -> str | None:
    """What to do about ``cause``, in the terms of the hook's variables (or, ``cli``, of
    ``inspect-otel export``'s options); None when there is nothing specific to say."""
    env = os.environ if env is None else env
    endpoint_setting = "--endpoint" if cli else "OTEL_EXPORTER_OTLP_ENDPOINT"
    if cause.kind == GRPC_TO_HTTP1:
        return ("use --protocol http/protobuf" if cli else
                "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf") + \
            ", or the endpoint's OTLP/gRPC port (4317 by default)"
    if cause.kind == HTTP1_TO_GRPC:
        return ("use --protocol grpc" if cli else "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc") + \
            ", or the endpoint's OTLP/HTTP port (4318 by default)"
    if cause.kind == REFUSED:
        return (f"start the collector or receiver there (`inspect-otel up` runs one on 4318), "
                f"or fix {endpoint_setting}")
    if cause.kind == UNRESOLVED:
        return f"check the host name in {endpoint_setting}"
    if cause.kind == TLS:
        return ("an https:// URL to a plain-HTTP port, or a server certificate this process does "
                "not trust (OTEL_EXPORTER_OTLP_CERTIFICATE names the CA file)")
    if cause.status in (401, 403):
        # The token itself never goes into a message.
        if _has_authorization(env):
            return ("the bearer token in OTEL_EXPORTER_OTLP_HEADERS was refused: check it "
                    "(`inspect-otel up` prints the line that sets it)")
        return ("the endpoint wants a token: set OTEL_EXPORTER_OTLP_HEADERS="
                "authorization=Bearer%20<token> (`inspect-otel up` prints the line that sets it)")
    if cause.status in (404, 405):
        return _wrong_path_advice(settings, endpoint_setting, env)
    if cause.status == 413:
        return "the endpoint refused the request's size: raise its request limit"
    return None


def _wrong_path_advice(settings: Settings, endpoint_setting: str, env: Mapping[str, str]) -> str:
    if settings.traces_protocol is Protocol.GRPC:
        return ("the endpoint serves no OTLP trace service over gRPC: is it an OTLP/gRPC port "
                "(4317)?")
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the whole URL of the traces path: it "
                "ends with /v1/traces")
    base = urlsplit(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "")
    words = [f"{endpoint_setting} must be the base URL (e.g. http://localhost:4318): the SDK "
             "appends /v1/traces"]
    if base.path.strip("/"):
        words.append(f"this one already has the path {base.path}")
    if base.port == 5000:
        words.append("port 5000 is MLflow's own server; the inspect-otel receiver listens on 4318")
    return "; ".join(words)


# --- a look at the endpoint -----------------------------------------------------------------------
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
NOTHING = "nothing"  # what_listens_at: the connection was refused
HTTP2_ONLY = "http/2 only"  # what_listens_at: the server answered an HTTP/2 preface (a gRPC port)


def what_listens_at(url: str, timeout_s: float = 1.0) -> str | None:
    """One bounded look at an ``http://`` endpoint: connect and send an HTTP/2 connection
    preface. NOTHING when the connection is refused, HTTP2_ONLY when the server answers with
    HTTP/2 frames (a gRPC port, which leaves an HTTP/1 request unanswered), else None."""
    import socket

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


def cause_of_silence(url: str, settings: Settings) -> Cause | None:
    """An OTLP/HTTP endpoint that did not answer: refused, or a gRPC port (HTTP/2 only) that
    leaves HTTP/1 unanswered; None when neither (a slow or hung server)."""
    if settings.traces_protocol is not Protocol.HTTP_PROTOBUF:
        return None
    listener = what_listens_at(url)
    if listener == NOTHING:
        return diagnose(["Connection refused"], url)
    if listener == HTTP2_ONLY:
        return Cause(HTTP1_TO_GRPC, "protocol mismatch: the endpoint speaks HTTP/2 only, as a "
                     "gRPC port does")
    return None


def traces_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The traces URL the exporter posts to, for messages: credentials in it redacted."""
    env = os.environ if env is None else env
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return _REDACT.text(env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
    base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").rstrip("/")
    if settings.traces_protocol is Protocol.GRPC:
        return _REDACT.text(base) or "(the SDK's default gRPC endpoint)"
    return _REDACT.text(f"{base}/v1/traces") if base else "(the SDK's default endpoint)"
