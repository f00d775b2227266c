"""The receiver's durable state: a sqlite database in the data directory.

Incoming OTLP data is normalised into tables keyed by the deterministic ids (trace id, span id,
Inspect run/eval ids, evaluation (trace, name, span)), committed with WAL + ``synchronous=FULL``
before the HTTP/gRPC answer. Redelivered data hits the same keys, so it is absorbed here; rows
whose content changed are marked pending again. The writer (``_writer.py``) applies pending rows
to MLflow and marks them done. Everything the task aggregates need (per-sample summaries, span
categories) stays in this database, so a restart or a replay gives the same result.

Each span or log record is validated before it writes anything, and stored on its own: one with
values that cannot be stored is rejected alone and reported in the OTLP partial success, the rest
of its request is kept (should storing one item still fail, the request is stored again with a
savepoint around each item). ``pending_bytes`` counts exactly what is not yet in MLflow (an overwrite replaces
the old size), and equals a recount from the database at any time.

Evaluation results whose trace has not arrived are *orphaned*: they wait, and expire (``applied =
RESULT_EXPIRED``, no longer pending) after ``orphan_ttl_s`` from their first receipt, or earlier
when their log record said the trace was not sampled and their task has been finalized. An expired
result comes back to pending if its trace arrives after all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from inspect_otel import semconv as sc

from . import _evaluations, _forward, _mlflow_names, _run_tags, _samples, _validation, _values

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS resources(hash TEXT PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS spans(
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT NOT NULL,
    resource TEXT NOT NULL, scope_name TEXT NOT NULL, scope_version TEXT NOT NULL,
    payload BLOB, digest TEXT NOT NULL, pending INTEGER NOT NULL, nbytes INTEGER NOT NULL,
    link_key TEXT, enrich TEXT,
    received REAL NOT NULL,
    PRIMARY KEY(trace_id, span_id));
CREATE INDEX IF NOT EXISTS spans_pending ON spans(pending) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS identities(
    key TEXT PRIMARY KEY, role TEXT NOT NULL, run_id TEXT NOT NULL, eval_id TEXT,
    attrs TEXT NOT NULL, start_ns INTEGER NOT NULL, mlflow_run_id TEXT);
CREATE TABLE IF NOT EXISTS samples(
    trace_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, eval_id TEXT NOT NULL, task TEXT,
    sample_id TEXT, epoch INTEGER, ordinal INTEGER, status TEXT, start_ns INTEGER,
    end_ns INTEGER, vals TEXT NOT NULL, digest TEXT NOT NULL, metrics_applied INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS samples_eval ON samples(eval_id);
CREATE TABLE IF NOT EXISTS tasks(
    eval_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, attrs TEXT NOT NULL, start_ns INTEGER,
    end_ns INTEGER, digest TEXT NOT NULL, applied INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
    run_id TEXT PRIMARY KEY, attrs TEXT NOT NULL, start_ns INTEGER, end_ns INTEGER,
    digest TEXT NOT NULL, applied INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results(
    trace_id TEXT NOT NULL, name TEXT NOT NULL, span_id TEXT NOT NULL, eval_id TEXT,
    data TEXT NOT NULL, applied INTEGER NOT NULL, received REAL NOT NULL,
    PRIMARY KEY(trace_id, name, span_id));
CREATE INDEX IF NOT EXISTS results_pending ON results(applied) WHERE applied = 0;
CREATE TABLE IF NOT EXISTS evals(
    eval_id TEXT PRIMARY KEY, data_rev INTEGER NOT NULL, final_rev INTEGER NOT NULL,
    changed REAL NOT NULL);
"""

RUN_KEY = "run:"
EVAL_KEY = "eval:"

# results.applied
RESULT_PENDING, RESULT_APPLIED, RESULT_EXPIRED = 0, 1, 2
ORPHAN_TTL_S = 3600.0
ORPHAN_CHECK_INTERVAL_S = 1.0

log = logging.getLogger("inspect_otel.receiver")


def run_key(run_id: str) -> str:
    return RUN_KEY + run_id


def eval_key(eval_id: str) -> str:
    return EVAL_KEY + eval_id


def _digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)


@dataclass
class IngestResult:
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, n: int, reason: str) -> None:
        self.rejected += n
        if reason not in self.reasons:
            self.reasons.append(reason)

    @property
    def message(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class PendingSpan:
    trace_id: str
    span_id: str
    parent_id: str
    resource: bytes
    scope_name: str
    scope_version: str
    payload: bytes
    digest: str
    link_key: str | None
    enrich: dict[str, str]
    nbytes: int


class SpoolFull(Exception):
    pass


class _Rejected(ValueError):
    """One span or record that cannot be stored; the message says why (for partial success).
    Raised only before the item has written anything."""


class _ItemFault(Exception):
    """Storing one item failed unexpectedly on the fast path: redo the request isolated."""


def _storage_error(e: BaseException) -> bool:
    """Failures of the database itself (disk full, I/O, locked): the whole request is retryable.
    Anything else raised while storing one item is that item's fault."""
    return (isinstance(e, (sqlite3.OperationalError, sqlite3.InternalError, OSError, MemoryError))
            or type(e) is sqlite3.DatabaseError)


def _trace_flags_sampled(flags: int) -> bool:
    # LogRecord.flags: the low 8 bits are the W3C trace flags; bit 0 is "sampled".
    return bool(flags & 0x01)


class Spool:
    """Durable receiver state. Thread-safe: one sqlite connection per thread, one writer lock."""

    def __init__(self, path: str | Path, max_bytes: int = 1 << 30,
                 orphan_ttl_s: float = ORPHAN_TTL_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.orphan_ttl_s = orphan_ttl_s
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._bytes_lock = threading.Lock()
        self._last_orphan_check = float("-inf")
        self._listeners: list[Any] = []
        with self._write_lock:
            db = self._conn()
            db.executescript(SCHEMA)
            # Spools written before task aggregates came from MLflow kept per-span counters
            # (category, is_error) that nothing reads any more; is_error is NOT NULL.
            columns = {r[1] for r in db.execute("PRAGMA table_info(spans)")}
            for column in ("category", "is_error"):
                if column in columns:
                    db.execute(f"ALTER TABLE spans DROP COLUMN {column}")
        self._pending_bytes = self._count_pending_bytes()
        # whether a new trace may revive expired results (saves a query per new span otherwise)
        self._maybe_expired = bool(self._read(
            "SELECT 1 FROM results WHERE applied = ? LIMIT 1", (RESULT_EXPIRED,)))

    # --- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _savepoint(self, db: sqlite3.Connection) -> Iterator[None]:
        """One item inside a transaction: its writes are undone alone if it fails."""
        db.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK TO item")
            db.execute("RELEASE item")
            raise
        db.execute("RELEASE item")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        return self._conn().execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def add_listener(self, fn: Any) -> None:
        """``fn()`` is called after every commit of new data (wakes the writer)."""
        self._listeners.append(fn)

    def _notify(self) -> None:
        for fn in self._listeners:
            fn()

    # --- size / backpressure -------------------------------------------------------------------
    def _count_pending_bytes(self) -> int:
        (n,) = self._read("SELECT COALESCE(SUM(nbytes), 0) FROM spans WHERE pending = 1")[0]
        (r,) = self._read("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM results WHERE applied = 0")[0]
        return int(n) + int(r)

    def _adjust(self, delta: int) -> None:
        if delta:
            with self._bytes_lock:
                self._pending_bytes += delta

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def is_full(self) -> bool:
        return self._pending_bytes >= self.max_bytes

    # --- ingestion -----------------------------------------------------------------------------
    def ingest_traces(self, req: Any) -> IngestResult:
        """Store an ExportTraceServiceRequest durably. Raises SpoolFull when over the bound."""
        if self.is_full():
            raise SpoolFull()
        return self._ingest(self._store_traces, req)

    def _ingest(self, store: Any, req: Any) -> IngestResult:
        """Run ``store(db, req, res, isolate)`` in one transaction. Items are validated before
        they write, so the fast path needs no savepoints; if storing one item still fails
        unexpectedly, the transaction is undone and the request stored again with a savepoint
        around each item, so that item alone is rejected."""
        now = time.time()
        for isolate in (False, True):
            res = IngestResult()
            try:
                with self._tx() as db:
                    added = store(db, req, res, isolate, now)
            except _ItemFault:
                continue
            self._adjust(added)
            if res.accepted:
                self._notify()
            return res
        raise AssertionError("an isolated ingest raised _ItemFault")  # pragma: no cover

    def _item(self, db: sqlite3.Connection, res: IngestResult, isolate: bool, what: str,
              ids: tuple[bytes, bytes], fn: Any, *args: Any) -> int | None:
        """Store one item; None when it was rejected (reason recorded in ``res``)."""
        try:
            if not isolate:
                return fn(db, *args)
            with self._savepoint(db):
                return fn(db, *args)
        except _Rejected as e:  # raised before the item wrote anything
            res.reject(1, f"{what}s were rejected: {e}")
        except Exception as e:  # noqa: BLE001 - one item never sinks its batch
            if _storage_error(e):
                raise
            if not isolate:
                raise _ItemFault() from e
            log.warning("%s %s/%s could not be stored, rejected: %s: %s", what, ids[0].hex(),
                        ids[1].hex(), type(e).__name__, e)
            res.reject(1, f"{what}s the receiver could not store were rejected (details in "
                       "its log)")
        return None

    def _store_traces(self, db: sqlite3.Connection, req: Any, res: IngestResult, isolate: bool,
                      now: float) -> int:
        added = 0
        for rs in req.resource_spans:
            rpayload = rs.resource.SerializeToString()
            rhash = _digest(rpayload)
            db.execute("INSERT OR IGNORE INTO resources(hash, payload) VALUES(?, ?)",
                       (rhash, rpayload))
            for ss in rs.scope_spans:
                scope_name, scope_version = ss.scope.name, ss.scope.version
                for span in ss.spans:
                    if len(span.trace_id) != 16 or len(span.span_id) != 8 or not any(
                        span.trace_id
                    ) or not any(span.span_id):
                        res.reject(1, "spans with invalid trace_id/span_id were rejected")
                        continue
                    try:
                        attrs = _values.attributes(span.attributes)
                    except _values.ValueTooDeep as e:
                        res.reject(1, f"spans with {e} were rejected")
                        continue
                    if not _values.is_inspect(scope_name, attrs):
                        res.reject(
                            1,
                            "spans without Inspect attributes (scope "
                            f"{_values.INSPECT_SCOPE!r} or inspect.*) were ignored: this receiver "
                            "maps Inspect AI evaluations only",
                        )
                        continue
                    problem = _validation.value_problem(
                        attrs, (span.start_time_unix_nano, span.end_time_unix_nano))
                    if problem:
                        res.reject(1, f"spans were rejected: {problem}")
                        continue
                    n = self._item(db, res, isolate, "span", (span.trace_id, span.span_id),
                                   self._ingest_span, span, attrs, rhash, scope_name,
                                   scope_version, now)
                    if n is not None:
                        added += n
                        res.accepted += 1
        return added

    def _ingest_span(self, db: sqlite3.Connection, span: Any, attrs: dict[str, Any], rhash: str,
                     scope_name: str, scope_version: str, now: float) -> int:
        """Store one validated span; returns the change in pending bytes."""
        trace_id, span_id = span.trace_id.hex(), span.span_id.hex()
        parent_id = span.parent_span_id.hex() if span.parent_span_id else ""
        payload = span.SerializeToString()
        digest = _digest(payload)
        evaluations = []
        for ev in span.events:
            if ev.name == sc.EVENT_EVALUATION_RESULT:
                try:
                    eattrs = _values.attributes(ev.attributes)
                except _values.ValueTooDeep as e:
                    raise _Rejected(f"evaluation result event with {e}") from None
                problem = _validation.value_problem(eattrs, (ev.time_unix_nano,))
                if problem:
                    raise _Rejected(f"evaluation result event: {problem}")
                evaluations.append((ev.time_unix_nano, eattrs))
        kind = attrs.get(sc.INSPECT_SPAN_KIND)
        is_root = not parent_id
        link_key = None
        if is_root and kind == sc.SPAN_KIND_SAMPLE and attrs.get(sc.INSPECT_EVAL_ID):
            link_key = eval_key(str(attrs[sc.INSPECT_EVAL_ID]))
        elif is_root and kind == sc.SPAN_KIND_RUN and attrs.get(sc.INSPECT_RUN_ID):
            link_key = run_key(str(attrs[sc.INSPECT_RUN_ID]))
        enrich = _forward.span_enrichment(attrs, is_root)
        row = (parent_id, rhash, scope_name, scope_version, payload, digest, len(payload),
               link_key, _dumps(enrich) if enrich else None, now)
        cur = db.execute(
            """INSERT INTO spans(parent_id, resource, scope_name, scope_version, payload, digest,
                   nbytes, link_key, enrich, received, trace_id, span_id, pending)
               VALUES(?,?,?,?,?,?,?,?,?,?,?,?,1)
               ON CONFLICT(trace_id, span_id) DO NOTHING""", row + (trace_id, span_id))
        if cur.rowcount > 0:  # a new span
            changed, added = True, len(payload)
            if self._maybe_expired:
                added += self._revive_orphans(db, trace_id)
        else:
            pending, nbytes, old_digest = db.execute(
                "SELECT pending, nbytes, digest FROM spans WHERE trace_id = ? AND span_id = ?",
                (trace_id, span_id)).fetchone()
            changed = old_digest != digest
            added = 0
            if changed:
                # an overwrite: the new content replaces the size of a still pending older one
                db.execute(
                    """UPDATE spans SET parent_id=?, resource=?, scope_name=?, scope_version=?,
                           payload=?, digest=?, nbytes=?, link_key=?, enrich=?, received=?,
                           pending=1
                       WHERE trace_id = ? AND span_id = ?""", row + (trace_id, span_id))
                added = len(payload) - (nbytes if pending else 0)

        start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
        if kind == sc.SPAN_KIND_SAMPLE:
            summary = _samples.sample_summary(trace_id, start_ns, end_ns, attrs)
            if summary is not None:
                self._register_identity(db, summary.run_id, summary.eval_id, attrs, start_ns)
                vals = _dumps(summary.values)
                sdigest = _digest(vals + f"|{summary.ordinal}|{summary.status}|{end_ns}")
                cur = db.execute(
                    """INSERT INTO samples(trace_id, run_id, eval_id, task, sample_id, epoch,
                           ordinal, status, start_ns, end_ns, vals, digest, metrics_applied)
                       VALUES(?,?,?,?,?,?,?,?,?,?,?,?,0)
                       ON CONFLICT(trace_id) DO UPDATE SET run_id=excluded.run_id,
                           eval_id=excluded.eval_id, task=excluded.task,
                           sample_id=excluded.sample_id, epoch=excluded.epoch,
                           ordinal=excluded.ordinal, status=excluded.status,
                           start_ns=excluded.start_ns, end_ns=excluded.end_ns, vals=excluded.vals,
                           digest=excluded.digest, metrics_applied=0
                       WHERE samples.digest != excluded.digest""",
                    (trace_id, summary.run_id, summary.eval_id, summary.task, summary.sample_id,
                     summary.epoch, summary.ordinal, summary.status, start_ns, end_ns, vals,
                     sdigest),
                )
                if cur.rowcount > 0:
                    self._bump(db, summary.eval_id)
        elif kind == sc.SPAN_KIND_TASK:
            run_id, eval_id = attrs.get(sc.INSPECT_RUN_ID), attrs.get(sc.INSPECT_EVAL_ID)
            if run_id and eval_id:
                run_id, eval_id = str(run_id), str(eval_id)
                self._register_identity(db, run_id, eval_id, attrs, start_ns)
                adump = _dumps(attrs)
                cur = db.execute(
                    """INSERT INTO tasks(eval_id, run_id, attrs, start_ns, end_ns, digest, applied)
                       VALUES(?,?,?,?,?,?,0)
                       ON CONFLICT(eval_id) DO UPDATE SET run_id=excluded.run_id,
                           attrs=excluded.attrs, start_ns=excluded.start_ns,
                           end_ns=excluded.end_ns, digest=excluded.digest, applied=0
                       WHERE tasks.digest != excluded.digest""",
                    (eval_id, run_id, adump, start_ns, end_ns, _digest(adump + str(end_ns))),
                )
                if cur.rowcount > 0:
                    self._bump(db, eval_id)
        elif kind == sc.SPAN_KIND_RUN:
            run_id = attrs.get(sc.INSPECT_RUN_ID)
            if run_id:
                run_id = str(run_id)
                self._register_identity(db, run_id, None, attrs, start_ns)
                adump = _dumps(attrs)
                db.execute(
                    """INSERT INTO runs(run_id, attrs, start_ns, end_ns, digest, applied)
                       VALUES(?,?,?,?,?,0)
                       ON CONFLICT(run_id) DO UPDATE SET attrs=excluded.attrs,
                           start_ns=excluded.start_ns, end_ns=excluded.end_ns,
                           digest=excluded.digest, applied=0
                       WHERE runs.digest != excluded.digest""",
                    (run_id, adump, start_ns, end_ns, _digest(adump + str(end_ns))),
                )

        for time_ns, eattrs in evaluations:
            e = _evaluations.evaluation(trace_id, span_id, time_ns, eattrs)
            if e is not None:
                added += self._ingest_evaluation(db, e)
        return added

    def _revive_orphans(self, db: sqlite3.Connection, trace_id: str) -> int:
        """The first span of a trace arrived: its expired results are pending again."""
        (n, size) = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM results "
            "WHERE trace_id = ? AND applied = ?", (trace_id, RESULT_EXPIRED)).fetchone()
        if n:
            db.execute("UPDATE results SET applied = ? WHERE trace_id = ? AND applied = ?",
                       (RESULT_PENDING, trace_id, RESULT_EXPIRED))
            log.info("trace %s arrived: %d expired evaluation result(s) pending again", trace_id, n)
        return int(size)

    def _register_identity(self, db: sqlite3.Connection, run_id: str, eval_id: str | None,
                           attrs: dict[str, Any], start_ns: int) -> None:
        ident = _dumps(_run_tags.identity(attrs))
        db.execute(
            """INSERT INTO identities(key, role, run_id, eval_id, attrs, start_ns)
               VALUES(?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET
               start_ns=MIN(identities.start_ns, excluded.start_ns)
               WHERE identities.mlflow_run_id IS NULL""",
            (run_key(run_id), _mlflow_names.ROLE_RUN, run_id, None, ident, start_ns),
        )
        if eval_id:
            db.execute(
                """INSERT INTO identities(key, role, run_id, eval_id, attrs, start_ns)
                   VALUES(?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET
                   start_ns=MIN(identities.start_ns, excluded.start_ns),
                   attrs=CASE WHEN LENGTH(excluded.attrs) > LENGTH(identities.attrs)
                              THEN excluded.attrs ELSE identities.attrs END
                   WHERE identities.mlflow_run_id IS NULL""",
                (eval_key(eval_id), _mlflow_names.ROLE_TASK, run_id, eval_id, ident, start_ns),
            )

    def _bump(self, db: sqlite3.Connection, eval_id: str) -> None:
        db.execute(
            """INSERT INTO evals(eval_id, data_rev, final_rev, changed) VALUES(?, 1, 0, ?)
               ON CONFLICT(eval_id) DO UPDATE SET data_rev = evals.data_rev + 1,
               changed = excluded.changed""",
            (eval_id, time.time()),
        )

    def _ingest_evaluation(self, db: sqlite3.Connection, e: _evaluations.Evaluation) -> int:
        fields = {
            "value": e.value, "label": e.label, "rationale": e.rationale,
            "model_graded": e.model_graded, "scorer": e.scorer, "time_ns": e.time_ns,
            "metadata": dict(e.metadata),
        }
        if e.trace_sampled is not None:
            fields["trace_sampled"] = e.trace_sampled
        data = _dumps(fields)
        cur = db.execute(
            """INSERT OR IGNORE INTO results(trace_id, name, span_id, eval_id, data, applied,
                   received) VALUES(?,?,?,?,?,0,?)""",
            (e.trace_id, e.name, e.span_id, e.eval_id or None, data, time.time()),
        )
        if cur.rowcount > 0:
            if e.eval_id:
                self._bump(db, e.eval_id)
            return len(data)
        return 0

    def ingest_logs(self, req: Any) -> IngestResult:
        """Store the ``gen_ai.evaluation.result`` records of an ExportLogsServiceRequest."""
        if self.is_full():
            raise SpoolFull()
        return self._ingest(self._store_logs, req)

    def _store_logs(self, db: sqlite3.Connection, req: Any, res: IngestResult, isolate: bool,
                    now: float) -> int:
        added = 0
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for rec in sl.log_records:
                    try:
                        attrs = _values.attributes(rec.attributes)
                    except _values.ValueTooDeep as e:
                        res.reject(1, f"log records with {e} were rejected")
                        continue
                    name = rec.event_name or attrs.get("event.name")
                    if name != sc.EVENT_EVALUATION_RESULT:
                        res.reject(1, "log records other than "
                                   f"{sc.EVENT_EVALUATION_RESULT!r} events were ignored")
                        continue
                    time_ns = rec.time_unix_nano or rec.observed_time_unix_nano
                    problem = _validation.value_problem(attrs, (time_ns,))
                    if problem:
                        res.reject(1, f"log records were rejected: {problem}")
                        continue
                    valid_trace = len(rec.trace_id) == 16 and any(rec.trace_id)
                    trace_id = rec.trace_id.hex() if valid_trace else ""
                    span_id = rec.span_id.hex() if len(rec.span_id) == 8 else ""
                    e = _evaluations.evaluation(trace_id, span_id, time_ns, attrs,
                                      trace_sampled=_trace_flags_sampled(rec.flags))
                    if e is None:
                        res.reject(1, "evaluation results without a trace id or "
                                   f"{sc.GEN_AI_EVALUATION_NAME} (or intermediate) were ignored")
                        continue
                    n = self._item(db, res, isolate, "log record", (rec.trace_id, rec.span_id),
                                   self._ingest_evaluation, e)
                    if n is not None:
                        added += n
                        res.accepted += 1
        return added

    # --- orphaned evaluation results -----------------------------------------------------------
    def expire_orphans(self, now: float | None = None) -> int:
        """Expire results whose trace never arrived: older than ``orphan_ttl_s``, or known
        sampled out (log record flags) once their task is finalized. They stop counting as
        pending (and toward ``max_bytes``). Without ``now``, runs at most once a second."""
        if now is None:
            mono = time.monotonic()
            if mono - self._last_orphan_check < ORPHAN_CHECK_INTERVAL_S:
                return 0
            self._last_orphan_check = mono
            now = time.time()
        with self._tx() as db:
            rows = db.execute(
                """SELECT r.rowid, LENGTH(r.data) FROM results r
                   WHERE r.applied = ? AND NOT EXISTS (
                       SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id)
                   AND (r.received <= ? OR (
                       json_extract(r.data, '$.trace_sampled') = 0 AND EXISTS (
                           SELECT 1 FROM evals e JOIN tasks t ON t.eval_id = e.eval_id
                           WHERE e.eval_id = r.eval_id AND e.final_rev > 0
                             AND e.final_rev >= e.data_rev)))""",
                (RESULT_PENDING, now - self.orphan_ttl_s)).fetchall()
            for rowid, _ in rows:
                db.execute("UPDATE results SET applied = ? WHERE rowid = ?",
                           (RESULT_EXPIRED, rowid))
            if rows:
                self._maybe_expired = True
        if rows:
            self._adjust(-sum(int(n) for _, n in rows))
            log.info("%d evaluation result(s) expired: their trace did not arrive (sampled out, "
                     "or older than %.0fs)", len(rows), self.orphan_ttl_s)
        return len(rows)

    # --- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self._read(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\uffff"))]

    # --- writer side: runs ---------------------------------------------------------------------
    def identities_without_run(self) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT key, role, run_id, eval_id, attrs, start_ns FROM identities
               WHERE mlflow_run_id IS NULL ORDER BY role = 'task', start_ns, key""")
        return [dict(key=r[0], role=r[1], run_id=r[2], eval_id=r[3], attrs=json.loads(r[4]),
                     start_ns=r[5]) for r in rows]

    def mlflow_run_id(self, key: str) -> str | None:
        rows = self._read("SELECT mlflow_run_id FROM identities WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_mlflow_run_id(self, key: str, mlflow_run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE identities SET mlflow_run_id = ? WHERE key = ?",
                       (mlflow_run_id, key))

    def pending_tasks(self) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT t.eval_id, t.run_id, t.attrs, t.start_ns, t.end_ns, t.digest, i.mlflow_run_id
               FROM tasks t JOIN identities i ON i.key = 'eval:' || t.eval_id
               WHERE t.applied = 0 AND i.mlflow_run_id IS NOT NULL ORDER BY t.end_ns""")
        return [dict(eval_id=r[0], run_id=r[1], attrs=json.loads(r[2]), start_ns=r[3],
                     end_ns=r[4], digest=r[5], mlflow_run_id=r[6]) for r in rows]

    def mark_task_applied(self, eval_id: str, digest: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE tasks SET applied = 1 WHERE eval_id = ? AND digest = ?",
                       (eval_id, digest))

    def pending_runs(self) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT r.run_id, r.attrs, r.start_ns, r.end_ns, r.digest, i.mlflow_run_id
               FROM runs r JOIN identities i ON i.key = 'run:' || r.run_id
               WHERE r.applied = 0 AND i.mlflow_run_id IS NOT NULL""")
        return [dict(run_id=r[0], attrs=json.loads(r[1]), start_ns=r[2], end_ns=r[3],
                     digest=r[4], mlflow_run_id=r[5]) for r in rows]

    def mark_run_applied(self, run_id: str, digest: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET applied = 1 WHERE run_id = ? AND digest = ?",
                       (run_id, digest))

    # --- writer side: spans --------------------------------------------------------------------
    def pending_spans(self, max_spans: int, max_bytes: int) -> list[PendingSpan]:
        rows = self._read(
            """SELECT s.trace_id, s.span_id, s.parent_id, r.payload, s.scope_name,
                      s.scope_version, s.payload, s.digest, s.link_key, s.enrich, s.nbytes
               FROM spans s JOIN resources r ON r.hash = s.resource
               WHERE s.pending = 1 ORDER BY s.rowid LIMIT ?""", (max_spans,))
        out, total = [], 0
        for r in rows:
            if out and total + r[10] > max_bytes:
                break
            total += r[10]
            out.append(PendingSpan(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                                   json.loads(r[9]) if r[9] else {}, r[10]))
        return out

    def mark_spans_forwarded(self, spans: Iterable[PendingSpan]) -> None:
        freed = 0
        with self._tx() as db:
            for s in spans:
                cur = db.execute(
                    """UPDATE spans SET pending = 0, payload = NULL
                       WHERE trace_id = ? AND span_id = ? AND digest = ? AND pending = 1""",
                    (s.trace_id, s.span_id, s.digest))
                if cur.rowcount > 0:
                    freed += s.nbytes
        self._adjust(-freed)

    # --- writer side: per-sample step metrics ------------------------------------------------
    def pending_sample_metrics(self, limit: int = 500) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT s.trace_id, s.eval_id, s.ordinal, s.end_ns, s.vals, s.digest, i.mlflow_run_id
               FROM samples s JOIN identities i ON i.key = 'eval:' || s.eval_id
               WHERE s.metrics_applied = 0 AND i.mlflow_run_id IS NOT NULL
               ORDER BY s.eval_id, s.ordinal LIMIT ?""", (limit,))
        return [dict(trace_id=r[0], eval_id=r[1], ordinal=r[2], end_ns=r[3],
                     values=json.loads(r[4]), digest=r[5], mlflow_run_id=r[6]) for r in rows]

    def mark_sample_metrics_applied(self, rows: Iterable[dict[str, Any]]) -> None:
        with self._tx() as db:
            for r in rows:
                db.execute("UPDATE samples SET metrics_applied = 1 WHERE trace_id = ? AND digest = ?",
                           (r["trace_id"], r["digest"]))

    # --- writer side: assessments --------------------------------------------------------------
    def pending_results(self, limit: int = 500) -> list[dict[str, Any]]:
        """Unapplied evaluation results whose trace this receiver already forwarded to MLflow."""
        rows = self._read(
            """SELECT r.trace_id, r.name, r.span_id, r.data, LENGTH(r.data), r.eval_id
               FROM results r
               WHERE r.applied = 0 AND EXISTS (
                   SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id AND s.pending = 0)
               ORDER BY r.trace_id, r.name LIMIT ?""", (limit,))
        return [dict(trace_id=r[0], name=r[1], span_id=r[2], nbytes=r[4], eval_id=r[5],
                     **json.loads(r[3])) for r in rows]

    def results_awaiting_trace(self, limit: int = 2000) -> list[dict[str, Any]]:
        """Unapplied evaluation results none of whose trace's spans reached this receiver: with
        several receivers another one may have forwarded the trace to MLflow (not those whose
        log record said the trace was not sampled: it never comes). Newest first: the likeliest
        to have a trace in MLflow by now."""
        rows = self._read(
            """SELECT r.trace_id, r.name, r.span_id, r.data, LENGTH(r.data), r.eval_id,
                      r.received
               FROM results r
               WHERE r.applied = 0 AND NOT EXISTS (
                   SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id)
                 AND COALESCE(json_extract(r.data, '$.trace_sampled'), 1) != 0
               ORDER BY r.received DESC, r.trace_id, r.name LIMIT ?""", (limit,))
        return [dict(trace_id=r[0], name=r[1], span_id=r[2], nbytes=r[4], eval_id=r[5],
                     received=r[6], **json.loads(r[3])) for r in rows]

    def mark_results_applied(self, rows: Iterable[dict[str, Any]]) -> None:
        """Applied results count as new data of their task: its finalization is checked again
        (a result applied late, once another receiver forwarded its trace, changes the scores)."""
        freed = 0
        with self._tx() as db:
            evals = set()
            for r in rows:
                cur = db.execute(
                    """UPDATE results SET applied = 1
                       WHERE trace_id = ? AND name = ? AND span_id = ? AND applied = 0""",
                    (r["trace_id"], r["name"], r["span_id"]))
                if cur.rowcount:
                    freed += int(r.get("nbytes") or 0)
                    if r.get("eval_id"):
                        evals.add(r["eval_id"])
            for eval_id in sorted(evals):
                self._bump(db, eval_id)
        self._adjust(-freed)

    # --- writer side: task finalization (aggregates and tables) --------------------------------
    def evals_to_check(self, also: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Tasks whose finalization should be checked against MLflow: their local data changed
        since the last check (or they are in ``also``: polled), and all of it is in MLflow (no
        pending spans of their samples, sample metrics, task span, or results whose trace was
        forwarded here). ``holder``: this receiver applied the task's task span."""
        also = sorted(set(also))
        rows = self._read(
            f"""SELECT e.eval_id, e.data_rev, i.mlflow_run_id,
                      t.eval_id IS NOT NULL AND t.applied = 1
               FROM evals e JOIN identities i ON i.key = 'eval:' || e.eval_id
               LEFT JOIN tasks t ON t.eval_id = e.eval_id
               WHERE i.mlflow_run_id IS NOT NULL
                 AND (e.final_rev < e.data_rev
                      OR e.eval_id IN ({",".join("?" * len(also))}))
                 AND (t.eval_id IS NULL OR t.applied = 1)
                 AND NOT EXISTS (SELECT 1 FROM samples s
                                 WHERE s.eval_id = e.eval_id AND s.metrics_applied = 0)
                 AND NOT EXISTS (SELECT 1 FROM samples s JOIN spans sp ON sp.trace_id = s.trace_id
                                 WHERE s.eval_id = e.eval_id AND sp.pending = 1)
                 AND NOT EXISTS (SELECT 1 FROM results r
                                 WHERE r.eval_id = e.eval_id AND r.applied = 0 AND EXISTS (
                                     SELECT 1 FROM spans sp WHERE sp.trace_id = r.trace_id))
               ORDER BY e.changed""", also)
        return [dict(eval_id=r[0], rev=r[1], mlflow_run_id=r[2], holder=bool(r[3]))
                for r in rows]

    def mark_finalized(self, eval_id: str, rev: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE evals SET final_rev = MAX(final_rev, ?) WHERE eval_id = ?",
                       (rev, eval_id))

    # --- health --------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        q = {
            "pending_spans": "SELECT COUNT(*) FROM spans WHERE pending = 1",
            # results whose trace is in the spool: the writer applies them once it is forwarded
            "pending_results": "SELECT COUNT(*) FROM results r WHERE r.applied = 0 AND EXISTS "
                               "(SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id)",
            # results whose trace has not arrived (yet): nothing the writer can apply now
            "orphaned_results": "SELECT COUNT(*) FROM results r WHERE r.applied = 0 AND NOT "
                                "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id)",
            "expired_results": f"SELECT COUNT(*) FROM results WHERE applied = {RESULT_EXPIRED}",
            "pending_runs": "SELECT COUNT(*) FROM identities WHERE mlflow_run_id IS NULL",
            "pending_tasks": "SELECT COUNT(*) FROM tasks WHERE applied = 0",
            "pending_sample_metrics": "SELECT COUNT(*) FROM samples WHERE metrics_applied = 0",
            # tasks whose finalization is still to be checked (those whose run is known here)
            "pending_finalizations": "SELECT COUNT(*) FROM evals e JOIN identities i ON "
                                     "i.key = 'eval:' || e.eval_id WHERE e.final_rev < e.data_rev",
            "spans": "SELECT COUNT(*) FROM spans",
            "samples": "SELECT COUNT(*) FROM samples",
            "results": "SELECT COUNT(*) FROM results",
        }
        out = {k: int(self._read(sql)[0][0]) for k, sql in q.items()}
        out["pending_bytes"] = self._pending_bytes
        out["max_bytes"] = self.max_bytes
        return out
