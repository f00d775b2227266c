"""Each side of a comparison -> one table of sample x epoch records (the I/O edge).

A side is an Inspect log (a ``.eval``/``.json`` path or an ``EvalLog``) or an MLflow task run the
receiver wrote (a run id, ``runs:/<id>`` or the run's URL). Both readers convert score values with
the hook's own function (:func:`inspect_otel.mapping._score.numeric_score`, Inspect's
``value_to_float``) and split dict-valued scores the way the hook does (``scorer/key``), so a log
and the MLflow run made from it give the same records.

Logs are read lightly: the header and Inspect's sample summaries (scores, metadata, usage, time,
error), never the transcripts. An ``EvalLog`` passed in is used as it is.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import ids
from .. import semconv as sc
# The receiver's table and tag names (a pure module: importing it needs no receiver extra).
from ..receiver._mlflow_names import (
    ROLE_RUN,
    ROLE_TASK,
    SAMPLES_TABLE,
    SCORES_TABLE,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
)
from ..receiver._samples import METADATA_COLUMN_PREFIX
from ._types import CompareError, EpochRecord, EvalSource, EvalTable

LOG_SUFFIXES = (".eval", ".json")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")
_RUNS_URI = re.compile(r"^runs:/([0-9a-f]{32})(?:/.*)?$")
_RUN_URL_FRAGMENT = re.compile(r"/experiments/([^/?#]+)/runs/([0-9a-f]{32})")


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --- which kind of reference -------------------------------------------------------------------
def parse_run_reference(ref: str) -> tuple[str, str | None] | None:
    """(MLflow run id, tracking URI derived from a run URL) when ``ref`` names a run, else None.

    Accepts ``runs:/<id>``, ``http(s)://host/#/experiments/<e>/runs/<id>`` (also with a trailing
    tab or query) and a bare 32-hex run id (unless a file of that name exists)."""
    text = ref.strip()
    match = _RUNS_URI.match(text)
    if match:
        return match.group(1), None
    if text.startswith(("http://", "https://")):
        parts = urlsplit(text)
        match = _RUN_URL_FRAGMENT.search(parts.fragment) or _RUN_URL_FRAGMENT.search(parts.path)
        if not match:
            return None
        base_path = parts.path
        if not parts.fragment:  # a URL without the "#" router prefix: cut the route off
            base_path = base_path[: base_path.find("/experiments/")]
        return match.group(2), f"{parts.scheme}://{parts.netloc}{base_path.rstrip('/')}"
    if _RUN_ID.match(text) and not os.path.exists(text):
        return text, None
    return None


def check_reference(ref: Any) -> None:
    """Cheap checks of what the user passed, before anything heavy is imported or read."""
    if not isinstance(ref, (str, os.PathLike)):
        if type(ref).__name__ == "EvalLog":
            return
        raise CompareError(f"cannot compare a {type(ref).__name__}: pass a log path, an EvalLog "
                           "or an MLflow run")
    text = os.fspath(ref)
    if parse_run_reference(text) is not None or "://" in text:
        return
    if os.path.isdir(text):
        raise CompareError(f"{text} is a directory: pass one .eval or .json log")
    if not os.path.exists(text):
        if text.endswith(LOG_SUFFIXES):
            raise CompareError(f"no such log file: {text}")
        raise CompareError(f"{text!r} is not a log file (.eval/.json), an MLflow run id, "
                           "runs:/<id> or an MLflow run URL")
    if not text.endswith(LOG_SUFFIXES):
        raise CompareError(f"{text} is not an Inspect log (.eval or .json)")


def read_side(ref: Any, *, tracking_uri: str | None = None,
              metadata_keys: Iterable[str] = ()) -> EvalTable:
    """One side of a comparison, from whatever the user passed."""
    check_reference(ref)
    keys = tuple(metadata_keys)
    if not isinstance(ref, (str, os.PathLike)):
        return read_log_object(ref, keys)
    text = os.fspath(ref)
    run = parse_run_reference(text)
    if run is not None:
        run_id, url_base = run
        return read_mlflow_run(run_id, tracking_uri or url_base or os.environ.get(
            "MLFLOW_TRACKING_URI"), label=text, metadata_keys=keys)
    return read_log_path(text, keys)


# --- logs ----------------------------------------------------------------------------------------
def read_log_path(path: str, metadata_keys: tuple[str, ...] = ()) -> EvalTable:
    from inspect_ai.log import read_eval_log, read_eval_log_sample_summaries

    check_reference(path)
    if not path.endswith(LOG_SUFFIXES):
        raise CompareError(f"{path} is not an Inspect log (.eval or .json)")
    try:
        header = read_eval_log(path, header_only=True)
        summaries = read_eval_log_sample_summaries(path)
    except FileNotFoundError:
        raise CompareError(f"no such log file: {path}") from None
    except Exception as e:  # noqa: BLE001 - any reader failure is an unreadable file
        raise CompareError(f"cannot read log {path}: {_first_line(e)}") from None
    return _log_table(header, summaries, path, metadata_keys)


def read_log_object(log: Any, metadata_keys: tuple[str, ...] = ()) -> EvalTable:
    """An ``EvalLog`` as it is; a header-only one is completed from its file's sample summaries."""
    samples = log.samples
    label = log.location or f"EvalLog {log.eval.eval_id}"
    if samples is None:
        if not log.location:
            raise CompareError(f"{label} has no samples and no location to read them from")
        from inspect_ai.log import read_eval_log_sample_summaries

        try:
            samples = read_eval_log_sample_summaries(log.location)
        except Exception as e:  # noqa: BLE001
            raise CompareError(f"cannot read samples of {label}: {_first_line(e)}") from None
    return _log_table(log, samples, label, metadata_keys)


def _log_table(header: Any, samples: Iterable[Any], label: str,
               metadata_keys: tuple[str, ...]) -> EvalTable:
    from ..mapping import task_context

    spec = header.eval
    ctx = task_context(spec)
    records = []
    names: dict[str, None] = {}
    for sample in samples:
        record = log_record(sample, ctx, metadata_keys)
        names.update(dict.fromkeys(record.scores))
        records.append(record)
    source = EvalSource(
        kind="log", label=label, task=spec.task, model=spec.model, eval_id=spec.eval_id,
        run_id=spec.run_id, status=str(header.status or ""),
        log_location=header.location or label,
    )
    return EvalTable(source, tuple(records), tuple(names))


def log_record(sample: Any, ctx: Any, metadata_keys: tuple[str, ...] = ()) -> EpochRecord:
    """An ``EvalSample`` or ``EvalSampleSummary`` as the hook would have described it."""
    from ..mapping._sample import _add_usage, sample_uuid
    from ..mapping._score import _flatten, numeric_score

    scores: dict[str, float | None] = {}
    for scorer, score in (sample.scores or {}).items():
        for name, value in _flatten(scorer, score.value):
            scores[name] = finite(numeric_score(value))
    usage: dict[str, Any] = {}
    _add_usage(usage, sample.model_usage or {})
    metadata = sample.metadata or {}
    status = "error" if sample.error is not None else (
        "limit" if sample.limit is not None else "success")
    trace = ids.trace_id_hex(ids.sample_trace_id(sample_uuid(sample, ctx)))
    return EpochRecord(
        sample_id=str(sample.id),
        epoch=int(sample.epoch),
        scores=scores,
        status=status,
        total_tokens=usage.get(sc.INSPECT_SAMPLE_TOTAL_TOKENS),
        cost=usage.get(sc.INSPECT_SAMPLE_COST),
        total_time=float(sample.total_time) if sample.total_time is not None else None,
        trace_id=trace,
        metadata={k: metadata[k] for k in metadata_keys if k in metadata},
    )


# --- MLflow runs -----------------------------------------------------------------------------------
def read_mlflow_run(run_id: str, tracking_uri: str | None, *, label: str | None = None,
                    metadata_keys: tuple[str, ...] = ()) -> EvalTable:
    """A task run the receiver wrote: its ``inspect/samples.json`` and ``inspect/scores.json``.

    A parent (Inspect run) with exactly one task run stands for that task run."""
    label = label or run_id
    if not tracking_uri:
        raise CompareError(f"{label}: no MLflow tracking URI (pass --tracking-uri, set "
                           "MLFLOW_TRACKING_URI, or give the run's URL)")
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise CompareError("reading MLflow runs needs the mlflow extra: "
                           "pip install 'inspect-otel[mlflow]'") from None
    _check_reachable(tracking_uri)
    client = MlflowClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        if getattr(e, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
            raise CompareError(f"unknown MLflow run {run_id} at {tracking_uri}") from None
        raise CompareError(f"cannot read MLflow run {run_id} at {tracking_uri}: "
                           f"{_first_line(e)}") from None
    run = _task_run(client, run)
    tags = run.data.tags
    run_id = run.info.run_id
    with tempfile.TemporaryDirectory(prefix="inspect-otel-compare-") as tmp:
        scores = _table(client, run_id, SCORES_TABLE, tmp, tags)
        samples = _table(client, run_id, SAMPLES_TABLE, tmp, tags)
    records, names, columns = mlflow_records(samples, scores, metadata_keys)
    source = EvalSource(
        kind="mlflow", label=label, task=tags.get(sc.INSPECT_TASK_NAME, ""),
        model=tags.get(sc.INSPECT_MODEL, ""), eval_id=tags.get(sc.INSPECT_EVAL_ID, ""),
        run_id=tags.get(sc.INSPECT_RUN_ID, ""), status=run.info.status,
        mlflow_run_id=run_id, experiment_id=run.info.experiment_id,
        tracking_uri=tracking_uri.rstrip("/"), metadata_keys=columns,
    )
    return EvalTable(source, records, names)


def _check_reachable(tracking_uri: str) -> None:
    """Fail fast with one line (MLflow's client would retry for minutes on a dead server)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(tracking_uri.rstrip("/") + "/health", timeout=10)
    except requests.RequestException as e:
        raise CompareError(f"cannot reach MLflow at {tracking_uri} ({type(e).__name__})") from None


def _task_run(client: Any, run: Any) -> Any:
    """The run itself, or the single task run of a parent (Inspect run) run."""
    if run.data.tags.get(TAG_ROLE) != ROLE_RUN:
        return run
    parent = run.info.run_id  # 32 hex: safe inside the filter string
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{TAG_PARENT_RUN_ID}` = '{parent}' and "
                      f"tags.`{TAG_ROLE}` = '{ROLE_TASK}'",
        max_results=100,
    )
    if len(children) == 1:
        return children[0]
    if not children:
        raise CompareError(f"MLflow run {parent} is an Inspect run with no task runs (yet)")
    names = ", ".join(f"{c.info.run_id} ({c.info.run_name})" for c in children)
    raise CompareError(f"MLflow run {parent} is an Inspect run with {len(children)} task runs; "
                       f"pass one of: {names}")


def _table(client: Any, run_id: str, path: str, tmp: str, tags: Mapping[str, str]) -> dict[str, list]:
    """A receiver table, parsed as written (pandas would turn sample ids "1", "2" into ints)."""
    try:
        local = client.download_artifacts(run_id, path, tmp)
        with open(local, encoding="utf-8") as f:
            data = json.load(f)
    except Exception as e:  # noqa: BLE001 - a missing artifact raises several types
        if tags.get(TAG_ROLE) != ROLE_TASK:
            raise CompareError(f"MLflow run {run_id} was not written by the inspect-otel receiver "
                               f"(no {path})") from None
        raise CompareError(f"MLflow run {run_id} has no {path} yet (the receiver writes it once "
                           f"the task has settled): {_first_line(e)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise CompareError(f"MLflow run {run_id}: {path} is not a table")
    columns = data["columns"]
    rows = data.get("data") or []
    return {c: [row[i] for row in rows] for i, c in enumerate(columns)}


def mlflow_records(samples: Mapping[str, list], scores: Mapping[str, list],
                   metadata_keys: tuple[str, ...] = ()
                   ) -> tuple[tuple[EpochRecord, ...], tuple[str, ...], tuple[str, ...]]:
    """Join the receiver's samples and scores tables into sample x epoch records; also the
    evaluation names and the metadata keys the table has columns for."""
    by_epoch: dict[tuple[str, int], dict[str, float | None]] = {}
    names: dict[str, None] = {}
    score_columns = [scores.get(c, []) for c in ("sample_id", "epoch", "name", "value")]
    for sample_id, epoch, name, value in zip(*score_columns):
        if sample_id is None or name is None:
            continue  # a result whose sample root never arrived
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        key = (str(sample_id), int(epoch or 1))
        by_epoch.setdefault(key, {})[str(name)] = finite(float(number)) if number is not None else None
        names[str(name)] = None
    columns = list(samples)
    metadata_columns = tuple(c[len(METADATA_COLUMN_PREFIX):] for c in columns
                             if c.startswith(METADATA_COLUMN_PREFIX))
    count = len(samples.get("sample_id", []))

    def col(name: str) -> list[Any]:
        return samples.get(name) or [None] * count

    records = []
    meta_columns = {k: col(METADATA_COLUMN_PREFIX + k) for k in metadata_keys}
    for i, (sample_id, epoch, status, tokens, cost, total_time, trace) in enumerate(zip(
            col("sample_id"), col("epoch"), col("status"), col("total_tokens"), col("cost"),
            col("total_time"), col("trace_id"))):
        key = (str(sample_id), int(epoch or 1))
        records.append(EpochRecord(
            sample_id=key[0], epoch=key[1], scores=by_epoch.get(key, {}),
            status=status or "success",
            total_tokens=int(tokens) if tokens is not None else None,
            cost=float(cost) if cost is not None else None,
            total_time=float(total_time) if total_time is not None else None,
            trace_id=trace[3:] if isinstance(trace, str) and trace.startswith("tr-") else trace,
            metadata={k: v[i] for k, v in meta_columns.items() if v[i] is not None},
        ))
    return tuple(records), tuple(names), metadata_columns


def _first_line(e: BaseException) -> str:
    text = str(getattr(e, "message", None) or e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__
