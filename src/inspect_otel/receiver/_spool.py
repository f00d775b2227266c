"""The receiver's durable state: a sqlite database in the data directory.

Incoming OTLP data is normalised into tables keyed by the deterministic ids (trace id, span id,
Inspect run/eval ids, evaluation (trace, name, span)), committed with WAL + ``synchronous=FULL``
before the HTTP/gRPC answer. Redelivered data hits the same keys, so it is absorbed here; rows
whose content changed are marked pending again. This module is the ingest side. The writer
(``_writer.py``) applies pending rows to MLflow and marks them done through ``Spool.drain``
(``_spool_drain.py``: what MLflow holds leaves the spool, or keeps only its key); what it cannot
apply stays, with its cause, in ``Spool.dead_letters`` (``_dead_letters.py``). The three share
one database (``_spool_db.py``). Task aggregates are computed from what MLflow holds, so nothing
applied needs to stay here for them.

Each span or log record is validated before it writes anything, and stored on its own: one with
values that cannot be stored is rejected alone and reported in the OTLP partial success, the rest
of its request is kept (should storing one item still fail, the request is stored again with a
savepoint around each item). ``pending_bytes`` counts exactly what is not yet in MLflow (an
overwrite replaces the old size; dead letters are counted), and equals a recount from the
database at any time.

Evaluation results whose trace has not arrived are *orphaned*: they wait, and expire (``applied =
RESULT_EXPIRED``, no longer pending) after ``orphan_ttl_s`` from their first receipt, or earlier
when their log record said the trace was not sampled and their task has been finalized. An expired
result comes back to pending if its trace arrives after all.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspect_otel import semconv as sc

from . import _evaluations, _forward, _mlflow_names, _run_tags, _samples, _validation, _values
from ._dead_letters import DeadLetterLedger
from ._spool_db import SpoolDb
from ._spool_db import digest as _digest
from ._spool_db import dumps as _dumps
from ._spool_drain import RESULT_EXPIRED, RESULT_PENDING, TRACE_HERE, SpoolDrain

RUN_KEY = "run:"
EVAL_KEY = "eval:"

ORPHAN_TTL_S = 3600.0
MAX_RUNNING = 100_000  # running samples remembered for linking (rows of the `running` table)
ORPHAN_CHECK_INTERVAL_S = 1.0

log = logging.getLogger("inspect_otel.receiver")


def run_key(run_id: str) -> str:
    return RUN_KEY + run_id


# Attributes that hold captured content (opt-in): a span version without any of them never
# replaces one that had them (replay adds, never removes).
# (semconv's "opt-in content" attributes, on the span or its events, e.g. a score's explanation
# on the scorer span's evaluation result event).
CONTENT_ATTRIBUTES = frozenset({
    sc.GEN_AI_INPUT_MESSAGES, sc.GEN_AI_OUTPUT_MESSAGES, sc.GEN_AI_SYSTEM_INSTRUCTIONS,
    sc.GEN_AI_TOOL_CALL_ARGUMENTS, sc.GEN_AI_TOOL_CALL_RESULT, sc.GEN_AI_EVALUATION_EXPLANATION,
    sc.INSPECT_SAMPLE_INPUT, sc.INSPECT_SAMPLE_TARGET, sc.INSPECT_SAMPLE_OUTPUT,
    sc.INSPECT_SAMPLE_MESSAGES, sc.INSPECT_SANDBOX_CMD, sc.INSPECT_SANDBOX_OUTPUT,
    sc.INSPECT_SCORE_ANSWER, sc.INSPECT_APPROVAL_EXPLANATION,
})


def _carries_content(span: Any, attrs: dict[str, Any]) -> bool:
    if not CONTENT_ATTRIBUTES.isdisjoint(attrs):
        return True
    return any(kv.key in CONTENT_ATTRIBUTES for ev in span.events for kv in ev.attributes)


def eval_key(eval_id: str) -> str:
    return EVAL_KEY + eval_id


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
    """Durable receiver state: the ingest side, over one database (``db``), with the writer's
    side (``drain``) and the ledger of what the writer could not apply (``dead_letters``)."""

    def __init__(self, path: str | Path, max_bytes: int = 1 << 30,
                 orphan_ttl_s: float = ORPHAN_TTL_S):
        self.db = SpoolDb(path)
        self.path = self.db.path
        self.max_bytes = max_bytes
        self.orphan_ttl_s = orphan_ttl_s
        self.dead_letters = DeadLetterLedger(self.db)
        self.drain = SpoolDrain(self.db, self.dead_letters)
        self._last_orphan_check = float("-inf")
        # whether a new trace may revive expired results (saves a query per new span otherwise)
        self._maybe_expired = bool(self.db.read(
            "SELECT 1 FROM results WHERE applied = ? LIMIT 1", (RESULT_EXPIRED,)))

    def close(self) -> None:
        self.db.close()

    def add_listener(self, fn: Any) -> None:
        """``fn()`` is called after every commit of new data (wakes the writer)."""
        self.db.add_listener(fn)

    # --- size / backpressure -------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Exactly the data not yet in MLflow (dead letters included): see SpoolDb."""
        return self.db.pending_bytes

    def is_full(self) -> bool:
        return self.db.pending_bytes >= self.max_bytes

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
                with self.db.tx() as db:
                    added = store(db, req, res, isolate, now)
            except _ItemFault:
                continue
            self.db.adjust(added)
            if res.accepted:
                self.db.notify()
            return res
        raise AssertionError("an isolated ingest raised _ItemFault")  # pragma: no cover

    def _item(self, db: sqlite3.Connection, res: IngestResult, isolate: bool, what: str,
              ids: tuple[bytes, bytes], fn: Any, *args: Any) -> int | None:
        """Store one item; None when it was rejected (reason recorded in ``res``)."""
        try:
            if not isolate:
                return fn(db, *args)
            with self.db.savepoint(db):
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
            accepted = res.accepted
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
            if res.accepted > accepted:  # a resource is stored only with a span that uses it
                cur = db.execute("INSERT OR IGNORE INTO resources(hash, payload) VALUES(?, ?)",
                                 (rhash, rpayload))
                if cur.rowcount > 0:
                    added += len(rpayload)
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
        # Replay adds, never removes: a version of a span without captured content does not
        # replace one with content (a content-off replay after a content-on export). Spans with
        # content are remembered by id (the spool drops forwarded spans themselves).
        if _carries_content(span, attrs):
            db.execute("INSERT OR IGNORE INTO content_spans(trace_id, span_id) VALUES(?, ?)",
                       (trace_id, span_id))
            less = False
        else:
            less = db.execute("SELECT 1 FROM content_spans WHERE trace_id = ? AND span_id = ?",
                              (trace_id, span_id)).fetchone() is not None
        cur = db.execute(
            """INSERT INTO spans(parent_id, resource, scope_name, scope_version, payload, digest,
                   nbytes, link_key, enrich, received, trace_id, span_id, pending)
               SELECT ?,?,?,?,?,?,?,?,?,?,?,?,1 WHERE NOT ?
               ON CONFLICT(trace_id, span_id) DO NOTHING""", row + (trace_id, span_id, less))
        if less:
            changed, added = False, 0
        elif cur.rowcount > 0:  # a new span
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
        if kind == sc.SPAN_KIND_SAMPLE and is_root:  # links its trace itself when forwarded
            db.execute("DELETE FROM running WHERE trace_id = ?", (trace_id,))
        if kind == sc.SPAN_KIND_SAMPLE:
            summary = _samples.sample_summary(trace_id, start_ns, end_ns, attrs)
            if summary is not None:
                self._register_identity(db, summary.run_id, summary.eval_id, attrs, start_ns)
                # the values themselves go to MLflow on the root span (its summary tag), where
                # finalization reads them: the digest only tells a changed sample
                sdigest = _digest(_dumps(summary.values)
                                  + f"|{summary.ordinal}|{summary.status}|{end_ns}")
                cur = db.execute(
                    """INSERT INTO samples(trace_id, run_id, eval_id, task, sample_id, epoch,
                           ordinal, status, start_ns, end_ns, digest)
                       VALUES(?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT(trace_id) DO UPDATE SET run_id=excluded.run_id,
                           eval_id=excluded.eval_id, task=excluded.task,
                           sample_id=excluded.sample_id, epoch=excluded.epoch,
                           ordinal=excluded.ordinal, status=excluded.status,
                           start_ns=excluded.start_ns, end_ns=excluded.end_ns,
                           digest=excluded.digest
                       WHERE samples.digest != excluded.digest""",
                    (trace_id, summary.run_id, summary.eval_id, summary.task, summary.sample_id,
                     summary.epoch, summary.ordinal, summary.status, start_ns, end_ns, sdigest),
                )
                if cur.rowcount > 0:
                    self.db.bump(db, summary.eval_id)
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
                    self.db.bump(db, eval_id)
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
                self.db.bump(db, e.eval_id)
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
                    if name == sc.EVENT_SAMPLE_START:
                        n = self._item(db, res, isolate, "log record", (rec.trace_id, rec.span_id),
                                       self._ingest_sample_start, rec, attrs, now)
                        if n is not None:
                            res.accepted += 1
                        continue
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

    def _ingest_sample_start(self, db: sqlite3.Connection, rec: Any, attrs: dict[str, Any],
                             now: float) -> int:
        """A live sample started: its task's run is claimed now, and its trace is linked to that
        run as soon as its first spans are in MLflow (MLflow itself links a trace only with the
        request that carries its root)."""
        time_ns = rec.time_unix_nano or rec.observed_time_unix_nano
        problem = _validation.value_problem(attrs, (time_ns,))
        run_id, eval_id = attrs.get(sc.INSPECT_RUN_ID), attrs.get(sc.INSPECT_EVAL_ID)
        if problem or len(rec.trace_id) != 16 or not any(rec.trace_id) or not run_id or not eval_id:
            raise _Rejected(f"{sc.EVENT_SAMPLE_START} events need a trace id, "
                            f"{sc.INSPECT_RUN_ID} and {sc.INSPECT_EVAL_ID}"
                            + (f" ({problem})" if problem else ""))
        (running,) = db.execute("SELECT COUNT(*) FROM running").fetchone()
        if running >= MAX_RUNNING:
            raise _Rejected(f"more than {MAX_RUNNING} samples are running (bounded)")
        self._register_identity(db, str(run_id), str(eval_id), attrs, int(time_ns))
        trace_id = rec.trace_id.hex()
        if not db.execute("SELECT 1 FROM samples WHERE trace_id = ?", (trace_id,)).fetchone():
            db.execute("INSERT OR IGNORE INTO running(trace_id, eval_id, received) VALUES(?,?,?)",
                       (trace_id, str(eval_id), now))
        return 0

    # --- orphaned evaluation results -----------------------------------------------------------
    def expire_orphans(self, now: float | None = None) -> int:
        """Expire results whose trace never arrived: older than ``orphan_ttl_s``, or known
        sampled out (log record flags) once their task is finalized. They stop counting as
        pending (and toward ``max_bytes``). Without ``now``, runs at most once a second.
        Forgets the failures of items no longer waiting, too."""
        if now is None:
            mono = time.monotonic()
            if mono - self._last_orphan_check < ORPHAN_CHECK_INTERVAL_S:
                return 0
            self._last_orphan_check = mono
            now = time.time()
        with self.db.tx() as db:
            rows = db.execute(
                f"""SELECT r.rowid, LENGTH(r.data) FROM results r
                   WHERE r.applied = ? AND NOT EXISTS (
                       {TRACE_HERE})
                   AND (r.received <= ? OR (
                       json_extract(r.data, '$.trace_sampled') = 0 AND EXISTS (
                           SELECT 1 FROM evals e JOIN tasks t ON t.eval_id = e.eval_id
                           WHERE e.eval_id = r.eval_id AND e.final_rev > 0
                             AND e.final_rev >= e.data_rev)))""",
                (RESULT_PENDING, now - self.orphan_ttl_s)).fetchall()
            for rowid, _ in rows:
                db.execute("UPDATE results SET applied = ? WHERE rowid = ?",
                           (RESULT_EXPIRED, rowid))
            # running traces whose spans never came (bounded like the results)
            db.execute("DELETE FROM running WHERE received <= ?", (now - self.orphan_ttl_s,))
            if rows:
                self._maybe_expired = True
        if rows:
            self.db.adjust(-sum(int(n) for _, n in rows))
            log.info("%d evaluation result(s) expired: their trace did not arrive (sampled out, "
                     "or older than %.0fs)", len(rows), self.orphan_ttl_s)
        # failures of items that went meanwhile (expired, a running trace whose root came)
        self.dead_letters.forget_settled()
        return len(rows)

    # --- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        return self.db.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.db.set_meta(key, value)

    def delete_meta(self, key: str) -> None:
        self.db.delete_meta(key)

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        return self.db.meta_items(prefix)

    # --- health --------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        out = self.drain.stats()
        out["pending_bytes"] = self.db.pending_bytes
        out["max_bytes"] = self.max_bytes
        return out
