"""Every environment variable the hook reads, parsed in one place.

Standard ``OTEL_*`` variables come first; the few ``INSPECT_OTEL_*`` ones cover what the
OpenTelemetry specification has no variable for. The OTLP exporters and the SDK batch processors
read their own standard variables (endpoint, headers, timeout, compression, ``OTEL_BSP_*``)
themselves; they are listed here only where the hook must decide something from them.
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SERVICE_NAME = "inspect-ai"
# The MLflow experiment every part uses unless told otherwise (receiver, up, scout-import,
# compare): MLflow's own variable first.
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "inspect_ai"
DATA_DIR_ENV = "INSPECT_OTEL_DATA_DIR"
LOG_ARTIFACT_ROOTS_ENV = "INSPECT_OTEL_LOG_ARTIFACT_ROOTS"
DEFAULT_FLUSH_TIMEOUT_S = 5.0
DEFAULT_MAX_ATTRIBUTE_LENGTH = 16384

PROVIDER_CALL_ENV = "INSPECT_OTEL_CAPTURE_PROVIDER_CALL"
PROVIDER_CALL_WITHOUT_CONTENT = (
    f"{PROVIDER_CALL_ENV}=true does nothing without content capture on spans "
    "(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, SPAN_ONLY or SPAN_AND_EVENT): "
    "the raw provider request and response are not sent"
)

# Every variable the hook (and its receiver, stack and commands) honours: a name in the
# environment one typo away from one of these is said to be a typo (``misspelled_variables``).
_OTLP_SETTINGS = ("ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "PROTOCOL", "CERTIFICATE",
                  "CLIENT_KEY", "CLIENT_CERTIFICATE", "INSECURE")
_BATCH_SETTINGS = ("SCHEDULE_DELAY", "MAX_QUEUE_SIZE", "MAX_EXPORT_BATCH_SIZE", "EXPORT_TIMEOUT")
KNOWN_VARIABLES: frozenset[str] = frozenset({
    # OpenTelemetry's, read by the hook or by the SDK and its OTLP exporters on the hook's behalf
    "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER",
    "OTEL_METRICS_EXEMPLAR_FILTER", "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
    *(f"OTEL_EXPORTER_OTLP_{signal}{setting}" for signal in ("", "TRACES_", "METRICS_", "LOGS_")
      for setting in _OTLP_SETTINGS),
    *(f"OTEL_{processor}_{setting}" for processor in ("BSP", "BLRP") for setting in _BATCH_SETTINGS),
    # inspect-otel's own
    "INSPECT_OTEL_ENABLED", "INSPECT_OTEL_LIVE", "INSPECT_OTEL_FLUSH_TIMEOUT",
    "INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH", "INSPECT_OTEL_REDACT_PATTERNS",
    "INSPECT_OTEL_SAMPLE_METADATA_KEYS", PROVIDER_CALL_ENV, DATA_DIR_ENV, LOG_ARTIFACT_ROOTS_ENV,
    "INSPECT_OTEL_RECEIVER_TOKEN", "INSPECT_OTEL_LOG_LEVEL", "INSPECT_OTEL_MLFLOW_STARTUP_S",
    "INSPECT_OTEL_RECEIVER_STARTUP_S",
})

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ContentCapture(enum.Enum):
    """Where message content goes (the GenAI instrumentations' values)."""

    NO_CONTENT = "NO_CONTENT"
    SPAN_ONLY = "SPAN_ONLY"
    EVENT_ONLY = "EVENT_ONLY"
    SPAN_AND_EVENT = "SPAN_AND_EVENT"

    @property
    def on_spans(self) -> bool:
        return self in (ContentCapture.SPAN_ONLY, ContentCapture.SPAN_AND_EVENT)

    @property
    def on_events(self) -> bool:
        return self in (ContentCapture.EVENT_ONLY, ContentCapture.SPAN_AND_EVENT)


class Protocol(enum.Enum):
    HTTP_PROTOBUF = "http/protobuf"
    GRPC = "grpc"


@dataclass(frozen=True)
class Settings:
    enabled: bool
    content: ContentCapture
    traces_protocol: Protocol
    metrics_protocol: Protocol
    logs_protocol: Protocol
    traces_endpoint: str | None  # for messages only; the exporter resolves the real URL
    metrics_enabled: bool
    logs_enabled: bool
    flush_timeout_s: float
    max_attribute_length: int
    redact_patterns: tuple[str, ...]
    sample_metadata_keys: tuple[str, ...]  # sent even without content capture
    # INSPECT_OTEL_CAPTURE_PROVIDER_CALL: the provider's raw request/response on chat spans (only
    # with content capture on spans; otherwise a warning says it does nothing).
    capture_provider_call: bool
    service_name_default: str
    # INSPECT_OTEL_LIVE: spans leave as each completes (default); false: a sample at its end.
    live: bool
    warnings: tuple[str, ...]  # problems found while parsing, reported once by the hook


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def is_enabled(env: Mapping[str, str] | None = None) -> bool:
    """On with an OTLP endpoint or INSPECT_OTEL_ENABLED=true; off when explicitly disabled."""
    env = os.environ if env is None else env
    if _flag(env, "OTEL_SDK_DISABLED") is True:
        return False
    explicit = _flag(env, "INSPECT_OTEL_ENABLED")
    if explicit is not None:
        return explicit
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def parse_content_capture(raw: str | None) -> tuple[ContentCapture, str | None]:
    if raw is None or raw.strip() == "":
        return ContentCapture.NO_CONTENT, None
    value = raw.strip()
    flag = value.lower()
    if flag in _TRUE:
        return ContentCapture.SPAN_AND_EVENT, None
    if flag in _FALSE:
        return ContentCapture.NO_CONTENT, None
    try:
        return ContentCapture(value.upper()), None
    except ValueError:
        return (
            ContentCapture.NO_CONTENT,
            f"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT={value!r} is not one of "
            "true, false, NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT; content is off",
        )


def _protocol(env: Mapping[str, str], signal: str, warnings: list[str]) -> Protocol:
    raw = env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", ""
    )
    raw = raw.strip().lower()
    if raw in ("", "http/protobuf"):
        return Protocol.HTTP_PROTOBUF
    if raw == "grpc":
        return Protocol.GRPC
    warnings.append(
        f"OTLP protocol {raw!r} is not supported by the Python exporters; using http/protobuf"
    )
    return Protocol.HTTP_PROTOBUF


def _exporter_on(env: Mapping[str, str], name: str) -> bool:
    # OTEL_{TRACES,METRICS,LOGS}_EXPORTER=none switches a signal off; anything else means OTLP.
    return env.get(name, "otlp").strip().lower() != "none"


def _float(env: Mapping[str, str], name: str, default: float, warnings: list[str]) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        warnings.append(f"{name}={raw!r} is not a non-negative number; using {default}")
        return default


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value > 0 else None


def _redact_patterns(env: Mapping[str, str], warnings: list[str]) -> tuple[str, ...]:
    raw = env.get("INSPECT_OTEL_REDACT_PATTERNS", "").strip()
    if not raw:
        return ()
    patterns: list[str]
    if raw.startswith("["):
        try:
            loaded = json.loads(raw)
            patterns = [str(p) for p in loaded]
        except (ValueError, TypeError):
            warnings.append("INSPECT_OTEL_REDACT_PATTERNS is not a JSON list of regexes; ignored")
            return ()
    else:
        patterns = [raw]
    valid = []
    for pattern in patterns:
        try:
            re.compile(pattern)
            valid.append(pattern)
        except re.error as ex:
            warnings.append(f"INSPECT_OTEL_REDACT_PATTERNS: invalid regex {pattern!r} ({ex})")
    return tuple(valid)


def _keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of names (blanks and duplicates dropped, order kept)."""
    names = (part.strip() for part in env.get(name, "").split(","))
    return tuple(dict.fromkeys(n for n in names if n))


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where the receiver's spool and the embedded stack's MLflow live (one place for both).

    Under the home directory, not the working directory: a durable spool must be found again by
    the next receiver started from anywhere."""
    env = os.environ if env is None else env
    return Path(env.get(DATA_DIR_ENV) or Path.home() / ".inspect-otel").expanduser()


def default_experiment(env: Mapping[str, str] | None = None) -> str:
    """MLFLOW_EXPERIMENT_NAME, else ``inspect_ai``: one default for every part."""
    env = os.environ if env is None else env
    return (env.get(EXPERIMENT_ENV) or "").strip() or DEFAULT_EXPERIMENT


def log_artifact_roots(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The receiver's eval-log roots from ``INSPECT_OTEL_LOG_ARTIFACT_ROOTS`` (comma-separated
    directories or object-store prefixes; the receiver checks them)."""
    env = os.environ if env is None else env
    return _keys(env, LOG_ARTIFACT_ROOTS_ENV)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    warnings: list[str] = []
    content, content_warning = parse_content_capture(
        env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    )
    if content_warning:
        warnings.append(content_warning)
    provider_call = _flag(env, PROVIDER_CALL_ENV) is True
    if provider_call and not content.on_spans:
        warnings.append(PROVIDER_CALL_WITHOUT_CONTENT)

    # Our own truncation adds a visible marker; honour a stricter standard SDK limit with it.
    max_len = _int(env, "INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH") or DEFAULT_MAX_ATTRIBUTE_LENGTH
    for name in ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"):
        sdk_limit = _int(env, name)
        if sdk_limit is not None:
            max_len = min(max_len, sdk_limit)
            break

    return Settings(
        enabled=is_enabled(env),
        content=content,
        traces_protocol=_protocol(env, "TRACES", warnings),
        metrics_protocol=_protocol(env, "METRICS", warnings),
        logs_protocol=_protocol(env, "LOGS", warnings),
        traces_endpoint=env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        metrics_enabled=_exporter_on(env, "OTEL_METRICS_EXPORTER"),
        logs_enabled=_exporter_on(env, "OTEL_LOGS_EXPORTER"),
        flush_timeout_s=_float(env, "INSPECT_OTEL_FLUSH_TIMEOUT", DEFAULT_FLUSH_TIMEOUT_S, warnings),
        max_attribute_length=max_len,
        redact_patterns=_redact_patterns(env, warnings),
        sample_metadata_keys=_keys(env, "INSPECT_OTEL_SAMPLE_METADATA_KEYS"),
        capture_provider_call=provider_call and content.on_spans,
        service_name_default=DEFAULT_SERVICE_NAME,
        live=_flag(env, "INSPECT_OTEL_LIVE") is not False,
        warnings=tuple(warnings),
    )


def _one_edit_apart(a: str, b: str) -> bool:
    """One character inserted, deleted, replaced, or two neighbours swapped (``a != b``)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i]
        return a[i + 1:] == b[i + 1:] or (swapped and a[i + 2:] == b[i + 2:])
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return longer[i + 1:] == shorter[i:]


def misspelled_variables(env: Mapping[str, str] | None = None,
                         also_known: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(name, the known name it likely means) for each variable in ``env`` that is not known
    (``KNOWN_VARIABLES``, ``also_known``: e.g. the SDK's whole list) but one typo away from a
    known one, or a known one in other letter case (names are case-sensitive)."""
    env = os.environ if env is None else env
    known = KNOWN_VARIABLES | also_known
    by_length: dict[int, list[str]] = {}
    for name in KNOWN_VARIABLES:
        by_length.setdefault(len(name), []).append(name)
    found = []
    for name in env:
        if name in known:
            continue
        if name.upper() in KNOWN_VARIABLES:
            found.append((name, name.upper()))
            continue
        for length in (len(name) - 1, len(name), len(name) + 1):
            match = next((k for k in by_length.get(length, ()) if _one_edit_apart(name, k)), None)
            if match is not None:
                found.append((name, match))
                break
    return sorted(found)
