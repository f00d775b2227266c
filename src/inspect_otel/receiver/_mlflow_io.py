"""MLflow writes shared by the writer's stages: the error classes every stage sorts failures into,
batched ``log_batch`` within MLflow's limits, and artifact tables."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any

import requests

from . import _tables

MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100
MAX_BATCH_ENTITIES = 1000

# MLflow error codes that mean "this item is wrong", not "try again later".
PERMANENT_ERROR_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST", "INVALID_STATE",
    "RESOURCE_ALREADY_EXISTS", "PERMISSION_DENIED", "NOT_IMPLEMENTED",
})


class Transient(Exception):
    """MLflow unreachable or failing: retry the whole pass later."""


class Permanent(Exception):
    """This item can never be applied: log it, count it and move on."""


def classify(exc: BaseException) -> Exception:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, (Transient, Permanent)):
        return exc
    if isinstance(exc, MlflowException):
        code = getattr(exc, "error_code", "") or ""
        if code in PERMANENT_ERROR_CODES:
            return Permanent(f"{code}: {exc.message[:500]}")
        return Transient(f"{code}: {exc.message[:500]}")
    if isinstance(exc, (requests.RequestException, OSError, TimeoutError)):
        return Transient(f"{type(exc).__name__}: {exc}")
    return Permanent(f"{type(exc).__name__}: {exc}")


def permanent(exc: BaseException) -> Exception:
    """The permanent error ``exc`` stands for; a transient one is raised instead (the pass is
    retried). For the ``except`` of one item's write."""
    err = classify(exc)
    if isinstance(err, Transient):
        raise err from exc
    return err


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
