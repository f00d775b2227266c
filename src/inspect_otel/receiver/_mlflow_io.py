"""MLflow writes shared by the writer's stages: how a failure is sorted (``classify``) and told
(``describe``), batched ``log_batch`` within MLflow's limits, and artifact tables.

Every failure of a write falls in one of three classes:

- **transient**: MLflow does not answer, or answers that it cannot serve now (its internal
  errors, unavailable, rate limits, refused credentials), or the spool's own disk fails. Not the
  item's fault: the writer's whole pass is retried with backoff and no item is charged;
- **permanent**: MLflow refused the item with one of its own error codes for a request that is
  wrong (``PERMANENT_ERROR_CODES``), MLflow's REST API answered 4xx for it, or stored bytes can
  never be parsed. Retrying the same item cannot help: it becomes a dead letter at once (kept);
- **retry**: anything else (a ``TypeError`` from a changed MLflow signature, a ``KeyError`` of
  ours, an answer the client could not read). Retried with a growing delay, and a dead letter
  (kept) after a bounded number of attempts (``_dead_letters.RetryPolicy``).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from inspect_otel.redaction import DEFAULT as REDACTOR

from . import _tables

MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_ENTITIES = 1000
MAX_TRACE_LINKS = 100  # trace ids per link_traces_to_run call

# MLflow's error codes (mlflow/protos/databricks.proto, MLflow 3.17) that refuse the request itself
# for good: it is invalid, or names an entity that is gone or in a state that refuses it (a
# deleted run), or asks what this MLflow cannot do at all (fixed by an upgrade, then a re-drive).
# Every other code MLflow answers with (INTERNAL_ERROR, TEMPORARILY_UNAVAILABLE,
# REQUEST_LIMIT_EXCEEDED, PERMISSION_DENIED, UNAUTHENTICATED, ...) describes MLflow's state or the
# receiver's credentials, not the item: transient.
PERMANENT_ERROR_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "BAD_REQUEST", "MALFORMED_REQUEST",
    "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE",
    "NOT_IMPLEMENTED", "ENDPOINT_NOT_FOUND", "FEATURE_DISABLED",
})
# HTTP answers of MLflow's REST endpoints the writer calls itself (/v1/traces, assessments) that
# are about MLflow or the receiver's credentials, not the request's content
TRANSIENT_HTTP = frozenset({401, 403, 408, 429})

TRANSIENT, PERMANENT, RETRY = "transient", "permanent", "retry"
# MLflow or the spool's disk not there: the network, the OS, sqlite's own state
_UNREACHABLE = (requests.RequestException, OSError, sqlite3.OperationalError, MemoryError)
MAX_CAUSE_CHARS = 300


class Transient(Exception):
    """MLflow unreachable or failing: retry the whole pass later."""


class Permanent(Exception):
    """MLflow refused this item for good: a dead letter at once."""


@dataclass(frozen=True)
class Failure:
    kind: str  # TRANSIENT | PERMANENT | RETRY
    cause: str  # ``describe(exc)``


def http_failure(status: int, body: str) -> Exception:
    """The exception for a non-2xx answer of an MLflow REST endpoint to one item's request."""
    text = f"HTTP {status} {body[:300]}"
    if status in TRANSIENT_HTTP or status >= 500:
        return Transient(text)
    return Permanent(text)


def classify(exc: BaseException, scrub: Callable[[str], str] | None = None) -> Failure:
    """Which of the three classes (module docstring) ``exc`` falls in, and its cause."""
    from google.protobuf.message import DecodeError
    from mlflow.exceptions import MlflowException, RestException

    cause = describe(exc, scrub)
    if isinstance(exc, Transient):
        return Failure(TRANSIENT, cause)
    if isinstance(exc, Permanent):
        return Failure(PERMANENT, cause)
    if isinstance(exc, MlflowException):
        if (getattr(exc, "error_code", "") or "") in PERMANENT_ERROR_CODES:
            return Failure(PERMANENT, cause)
        # MLflow's answer (a JSON error, or an HTTP status the client classed as the server's,
        # error_class CP_*): its state. The client's wrapping of a network failure (raised while
        # handling it): MLflow unreachable. Raised by the client otherwise: not understood.
        if isinstance(exc, RestException) or str(getattr(exc, "error_class", "") or "").startswith("CP_"):
            return Failure(TRANSIENT, cause)
        if any(isinstance(e, _UNREACHABLE) for e in (exc.__cause__, exc.__context__)):
            return Failure(TRANSIENT, cause)
        return Failure(RETRY, cause)
    if isinstance(exc, _UNREACHABLE):
        return Failure(TRANSIENT, cause)
    if isinstance(exc, DecodeError):  # stored bytes that do not parse: they never will
        return Failure(PERMANENT, cause)
    return Failure(RETRY, cause)


# --- causes: bounded, one line, without secrets or deployment details -------------------------
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]*")
_HOST_ARG = re.compile(r"\b(host|port)=(?:'[^']*'|\"[^\"]*\"|[^\s,)]+)")
_IP = re.compile(r"\[[0-9A-Fa-f:.]+\](?::\d+)?|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_HOST_PORT = re.compile(r"\b(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+):\d{1,5}\b|\blocalhost\b")
# absolute file paths (two segments or more); MLflow's own REST paths say what was called
_PATH = re.compile(r"(?<![\w.:/-])(?:~|/(?!api/|ajax-api/|v1/))[^\s'\":,;()\[\]]*/[^\s'\":,;()\[\]]*"
                   r"|\b[A-Za-z]:\\[^\s'\"]*")


def scrub_text(text: str, hosts: Iterable[str] = ()) -> str:
    """``text`` on one line, at most MAX_CAUSE_CHARS, with secrets (the shared redaction policy),
    URLs, host names and addresses (and ``hosts`` wherever they appear) and file paths replaced."""
    text = " ".join(text.split())
    text = _URL.sub("<url>", text)
    text = REDACTOR.text(text)
    for host in hosts:
        if host:
            text = text.replace(host, "<host>")
    text = _HOST_ARG.sub(lambda m: f"{m.group(1)}=<{m.group(1)}>", text)
    text = _IP.sub("<host>", text)
    text = _HOST_PORT.sub("<host>", text)
    text = _PATH.sub("<path>", text)
    return text if len(text) <= MAX_CAUSE_CHARS else text[: MAX_CAUSE_CHARS - 3] + "..."


def describe(exc: BaseException, scrub: Callable[[str], str] | None = None) -> str:
    """The cause ``exc`` stands for: its type and message, scrubbed (``scrub_text`` unless
    ``scrub`` is given)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (Transient, Permanent)):
        text = str(exc)
    elif isinstance(exc, MlflowException):
        code, message = getattr(exc, "error_code", "") or "", exc.message
        body = message if message.startswith(code) else f"{code}: {message}"
        text = f"{type(exc).__name__}: {body}"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return (scrub or scrub_text)(text)


def chunks(items: list[Any], n: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), n):
        yield items[i: i + n]


def log_batch(client: Any, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
              tags: Iterable[Any] = ()) -> None:
    """As few log_batch calls as MLflow's limits allow (one for a typical task), in the order
    given: MLflow's run page lists a run's metrics in the order they were first logged (sqlite)."""
    metrics, params, tags = list(metrics), list(params), list(tags)
    while metrics or params or tags:
        p, params = params[:MAX_BATCH_PARAMS], params[MAX_BATCH_PARAMS:]
        t, tags = tags[:MAX_BATCH_TAGS], tags[MAX_BATCH_TAGS:]
        room = MAX_BATCH_ENTITIES - len(p) - len(t)
        m, metrics = metrics[:min(room, MAX_BATCH_METRICS)], metrics[min(room, MAX_BATCH_METRICS):]
        client.log_batch(run_id, metrics=m, params=p, tags=t)


def write_tables(client: Any, run_id: str, tables: dict[str, dict[str, list[Any]]]) -> None:
    """Artifact tables in the layout ``mlflow.load_table`` reads (``_tables.split_table``)."""
    with tempfile.TemporaryDirectory(prefix="inspect-otel-") as tmp:
        for path, data in tables.items():
            local = os.path.join(tmp, path)
            os.makedirs(os.path.dirname(local), exist_ok=True)
            with open(local, "w", encoding="utf-8") as f:
                json.dump(_tables.split_table(data), f, ensure_ascii=False, allow_nan=False)
        client.log_artifacts(run_id, tmp)
