"""The writer's side of the spool: what is pending for MLflow, marking it applied (and dropping
what MLflow now holds), and the counts ``/health`` shows.

A component the spool owns (``Spool.drain``), over the spool's database (``SpoolDb``) and its
ledger of failed items (``DeadLetterLedger``). An item held back by the ledger (a dead letter,
or waiting for its next try) is not pending; marking an item applied forgets its failures. A
dead letter never holds up what does not need it: a task is finalized without a dead trace or
result, and nothing of it counts as pending (``idle`` in ``/health``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._dead_letters import DeadLetterLedger, dead, held, result_key
from ._spool_db import SpoolDb, digest

# results.applied
RESULT_PENDING, RESULT_APPLIED, RESULT_EXPIRED = 0, 1, 2

# a span of the trace of result ``r`` reached this receiver: still in the spool, or forwarded
TRACE_HERE = ("SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id "
              "UNION ALL SELECT 1 FROM traces t WHERE t.trace_id = r.trace_id")
# result ``r``'s key in the failures ledger, in SQL (_dead_letters.result_key)
RESULT_KEY = "r.trace_id || '/' || r.span_id || '/' || r.name"


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


class SpoolDrain:
    """What the writer reads from the spool and marks in it."""

    def __init__(self, db: SpoolDb, ledger: DeadLetterLedger):
        self.db = db
        self.ledger = ledger

    # --- runs ----------------------------------------------------------------------------------
    def identities_without_run(self) -> list[dict[str, Any]]:
        """Inspect runs and tasks whose MLflow run is still to be claimed (not held back)."""
        rows = self.db.read(
            f"""SELECT key, role, run_id, eval_id, attrs, start_ns FROM identities i
               WHERE mlflow_run_id IS NULL AND NOT {held('identity', 'i.key')}
               ORDER BY role = 'task', start_ns, key""")
        return [dict(key=r[0], role=r[1], run_id=r[2], eval_id=r[3], attrs=json.loads(r[4]),
                     start_ns=r[5]) for r in rows]

    def mlflow_run_id(self, key: str) -> str | None:
        rows = self.db.read("SELECT mlflow_run_id FROM identities WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_mlflow_run_id(self, key: str, mlflow_run_id: str) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE identities SET mlflow_run_id = ? WHERE key = ?",
                       (mlflow_run_id, key))
            freed = self.ledger.clear(db, "identity", (key,))
        self.db.adjust(-freed)

    def identity_failed(self, key: str) -> bool:
        """MLflow refused this identity's run for good (a dead letter): nothing waits for it."""
        return self.ledger.is_dead("identity", key)

    def failed_identities(self, limit: int = 20) -> list[dict[str, str]]:
        return [dict(role=r[0], inspect_id=r[1], error=r[2]) for r in self.db.read(
            """SELECT i.role, COALESCE(i.eval_id, i.run_id), f.cause FROM failures f
               JOIN identities i ON i.key = f.key
               WHERE f.kind = 'identity' AND f.retry_at IS NULL ORDER BY f.key LIMIT ?""",
            (limit,))]

    def pending_tasks(self) -> list[dict[str, Any]]:
        rows = self.db.read(
            f"""SELECT t.eval_id, t.run_id, t.attrs, t.start_ns, t.end_ns, t.digest,
                      i.mlflow_run_id
               FROM tasks t JOIN identities i ON i.key = 'eval:' || t.eval_id
               WHERE t.applied = 0 AND i.mlflow_run_id IS NOT NULL
                 AND NOT {held('task', 't.eval_id', 't.digest')} ORDER BY t.end_ns""")
        return [dict(eval_id=r[0], run_id=r[1], attrs=json.loads(r[2]), start_ns=r[3],
                     end_ns=r[4], digest=r[5], mlflow_run_id=r[6], nbytes=len(r[2]))
                for r in rows]

    def mark_task_applied(self, eval_id: str, digest: str) -> None:
        with self.db.tx() as db:
            # applied: the attributes are in MLflow; the key and digest stay (redelivery)
            db.execute("UPDATE tasks SET applied = 1, attrs = '{}' WHERE eval_id = ? AND digest = ?",
                       (eval_id, digest))
            freed = self.ledger.clear(db, "task", (eval_id,))
        self.db.adjust(-freed)

    def pending_runs(self) -> list[dict[str, Any]]:
        rows = self.db.read(
            f"""SELECT r.run_id, r.attrs, r.start_ns, r.end_ns, r.digest, i.mlflow_run_id
               FROM runs r JOIN identities i ON i.key = 'run:' || r.run_id
               WHERE r.applied = 0 AND i.mlflow_run_id IS NOT NULL
                 AND NOT {held('run', 'r.run_id', 'r.digest')}""")
        return [dict(run_id=r[0], attrs=json.loads(r[1]), start_ns=r[2], end_ns=r[3],
                     digest=r[4], mlflow_run_id=r[5], nbytes=len(r[1])) for r in rows]

    def mark_run_applied(self, run_id: str, digest: str) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE runs SET applied = 1, attrs = '{}' WHERE run_id = ? AND digest = ?",
                       (run_id, digest))
            freed = self.ledger.clear(db, "run", (run_id,))
        self.db.adjust(-freed)

    # --- spans ---------------------------------------------------------------------------------
    def pending_spans(self, max_spans: int, max_bytes: int) -> list[PendingSpan]:
        not_held = f"AND NOT {held('trace', 's.trace_id')}" if self.ledger.has("trace") else ""
        rows = self.db.read(
            f"""SELECT s.trace_id, s.span_id, s.parent_id, r.payload, s.scope_name,
                      s.scope_version, s.payload, s.digest, s.link_key, s.enrich, s.nbytes
               FROM spans s JOIN resources r ON r.hash = s.resource
               WHERE s.pending = 1 {not_held}
               ORDER BY s.rowid LIMIT ?""", (max_spans,))
        # (s.resource is the hash: kept to delete a resource once no span uses it)
        out, total = [], 0
        for r in rows:
            if out and total + r[10] > max_bytes:
                break
            total += r[10]
            out.append(PendingSpan(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                                   json.loads(r[9]) if r[9] else {}, r[10]))
        return out

    def mark_spans_forwarded(self, spans: Iterable[PendingSpan]) -> None:
        """The spans are in MLflow: their rows go (what stays is one key per trace, that it was
        forwarded here, for its results), and so do resources no span uses any more. A trace
        that had failed before counts as new data of its task (finalized again with it)."""
        freed = 0
        resources, traces = set(), set()
        with self.db.tx() as db:
            for s in spans:
                cur = db.execute(
                    "DELETE FROM spans WHERE trace_id = ? AND span_id = ? AND digest = ? "
                    "AND pending = 1", (s.trace_id, s.span_id, s.digest))
                if cur.rowcount > 0:
                    freed += s.nbytes
                    resources.add(digest(s.resource))
                traces.add(s.trace_id)
                db.execute("INSERT OR IGNORE INTO traces(trace_id) VALUES(?)", (s.trace_id,))
            for rhash in sorted(resources):
                row = db.execute(
                    "SELECT LENGTH(payload) FROM resources WHERE hash = ? AND NOT EXISTS "
                    "(SELECT 1 FROM spans WHERE resource = ?)", (rhash, rhash)).fetchone()
                if row is not None:
                    db.execute("DELETE FROM resources WHERE hash = ?", (rhash,))
                    freed += int(row[0])
            for trace_id in sorted(traces) if self.ledger.has("trace", db) else ():
                cleared = self.ledger.clear(db, "trace", (trace_id,))
                if cleared:
                    freed += cleared
                    row = db.execute("SELECT eval_id FROM samples WHERE trace_id = ?",
                                     (trace_id,)).fetchone()
                    if row is not None:
                        self.db.bump(db, row[0])
        self.db.adjust(-freed)

    def latest_sample_end(self, eval_id: str) -> int | None:
        """When the last sample of a task held here ended (ns)."""
        row = self.db.read("SELECT MAX(end_ns) FROM samples WHERE eval_id = ?", (eval_id,))
        return int(row[0][0]) if row and row[0][0] is not None else None

    # --- running traces ------------------------------------------------------------------------
    def running_to_link(self, limit: int = 1000) -> list[tuple[str, str]]:
        """(trace id, MLflow run id) of running traces whose spans are in MLflow (some forwarded)
        and whose task run is known; traces whose root arrived link themselves."""
        return [(r[0], r[1]) for r in self.db.read(
            f"""SELECT g.trace_id, i.mlflow_run_id FROM running g
               JOIN identities i ON i.key = 'eval:' || g.eval_id
               WHERE i.mlflow_run_id IS NOT NULL AND EXISTS (
                   SELECT 1 FROM traces t WHERE t.trace_id = g.trace_id)
                 AND NOT {held('link', 'g.trace_id')}
               ORDER BY g.received LIMIT ?""", (limit,))]

    def forget_running(self, trace_ids: Iterable[str]) -> None:
        trace_ids = list(trace_ids)
        with self.db.tx() as db:
            db.executemany("DELETE FROM running WHERE trace_id = ?", [(t,) for t in trace_ids])
            freed = self.ledger.clear(db, "link", trace_ids)
        self.db.adjust(-freed)

    # --- assessments ---------------------------------------------------------------------------
    def pending_results(self, limit: int = 500) -> list[dict[str, Any]]:
        """Unapplied evaluation results whose trace this receiver already forwarded to MLflow."""
        rows = self.db.read(
            f"""SELECT r.trace_id, r.name, r.span_id, r.data, LENGTH(r.data), r.eval_id
               FROM results r
               WHERE r.applied = 0 AND EXISTS (
                   SELECT 1 FROM traces t WHERE t.trace_id = r.trace_id)
                 AND NOT {held('result', RESULT_KEY)}
               ORDER BY r.trace_id, r.name LIMIT ?""", (limit,))
        return [dict(trace_id=r[0], name=r[1], span_id=r[2], nbytes=r[4], eval_id=r[5],
                     **json.loads(r[3])) for r in rows]

    def results_awaiting_trace(self, limit: int = 2000) -> list[dict[str, Any]]:
        """Unapplied evaluation results none of whose trace's spans reached this receiver: with
        several receivers another one may have forwarded the trace to MLflow (not those whose
        log record said the trace was not sampled: it never comes). Newest first: the likeliest
        to have a trace in MLflow by now."""
        rows = self.db.read(
            f"""SELECT r.trace_id, r.name, r.span_id, r.data, LENGTH(r.data), r.eval_id,
                      r.received
               FROM results r
               WHERE r.applied = 0 AND NOT EXISTS (
                   {TRACE_HERE})
                 AND COALESCE(json_extract(r.data, '$.trace_sampled'), 1) != 0
                 AND NOT {held('result', RESULT_KEY)}
               ORDER BY r.received DESC, r.trace_id, r.name LIMIT ?""", (limit,))
        return [dict(trace_id=r[0], name=r[1], span_id=r[2], nbytes=r[4], eval_id=r[5],
                     received=r[6], **json.loads(r[3])) for r in rows]

    def mark_results_applied(self, rows: Iterable[dict[str, Any]]) -> None:
        """Applied results count as new data of their task: its finalization is checked again
        (a result applied late, once another receiver forwarded its trace, changes the scores)."""
        freed = 0
        with self.db.tx() as db:
            evals = set()
            failed = self.ledger.has("result", db)
            for r in rows:
                cur = db.execute(
                    """UPDATE results SET applied = 1, data = '{}'
                       WHERE trace_id = ? AND name = ? AND span_id = ? AND applied = 0""",
                    (r["trace_id"], r["name"], r["span_id"]))
                if cur.rowcount:
                    freed += int(r.get("nbytes") or 0)
                    if r.get("eval_id"):
                        evals.add(r["eval_id"])
                if failed:
                    freed += self.ledger.clear(
                        db, "result", (result_key(r["trace_id"], r["span_id"], r["name"]),))
            for eval_id in sorted(evals):
                self.db.bump(db, eval_id)
        self.db.adjust(-freed)

    # --- task finalization (aggregates and tables) ---------------------------------------------
    def evals_to_check(self, also: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Tasks whose finalization should be checked against MLflow: their local data changed
        since the last check (or they are in ``also``: polled), and all of it is in MLflow (no
        pending spans of their samples, task span, or results whose trace was forwarded here;
        dead letters excepted: they wait for a re-drive, the task does not). ``holder``: this
        receiver applied the task's task span."""
        also = sorted(set(also))
        rows = self.db.read(
            f"""SELECT e.eval_id, e.data_rev, i.mlflow_run_id,
                      t.eval_id IS NOT NULL AND t.applied = 1
               FROM evals e JOIN identities i ON i.key = 'eval:' || e.eval_id
               LEFT JOIN tasks t ON t.eval_id = e.eval_id
               WHERE i.mlflow_run_id IS NOT NULL
                 AND (e.final_rev < e.data_rev
                      OR e.eval_id IN ({",".join("?" * len(also))}))
                 AND (t.eval_id IS NULL OR t.applied = 1)
                 AND NOT {held('finalize', 'e.eval_id')}
                 AND NOT EXISTS (SELECT 1 FROM samples s JOIN spans sp ON sp.trace_id = s.trace_id
                                 WHERE s.eval_id = e.eval_id AND sp.pending = 1
                                   AND NOT {dead('trace', 'sp.trace_id')})
                 AND NOT EXISTS (SELECT 1 FROM results r
                                 WHERE r.eval_id = e.eval_id AND r.applied = 0 AND EXISTS (
                                     {TRACE_HERE}) AND NOT {dead('result', RESULT_KEY)}
                                   AND NOT {dead('trace', 'r.trace_id')})
               ORDER BY e.changed""", also)
        return [dict(eval_id=r[0], rev=r[1], mlflow_run_id=r[2], holder=bool(r[3]))
                for r in rows]

    def mark_finalized(self, eval_id: str, rev: int) -> None:
        with self.db.tx() as db:
            db.execute("UPDATE evals SET final_rev = MAX(final_rev, ?) WHERE eval_id = ?",
                       (rev, eval_id))
            freed = self.ledger.clear(db, "finalize", (eval_id,))
        self.db.adjust(-freed)

    # --- health --------------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        """Counts for /health. ``pending_*``: what the writer can still apply (items being
        retried included, dead letters and what waits only for one not)."""
        dead_run_of_eval = dead("identity", "'eval:' || {0}.eval_id")
        q = {
            "pending_spans": "SELECT COUNT(*) FROM spans sp WHERE sp.pending = 1 AND NOT "
                             f"{dead('trace', 'sp.trace_id')}",
            # results whose trace is in the spool: the writer applies them once it is forwarded
            "pending_results": "SELECT COUNT(*) FROM results r WHERE r.applied = 0 AND EXISTS "
                               f"({TRACE_HERE}) AND NOT {dead('result', RESULT_KEY)} "
                               f"AND NOT {dead('trace', 'r.trace_id')}",
            # results whose trace has not arrived (yet): nothing the writer can apply now
            "orphaned_results": "SELECT COUNT(*) FROM results r WHERE r.applied = 0 AND NOT "
                                f"EXISTS ({TRACE_HERE}) AND NOT {dead('result', RESULT_KEY)}",
            "expired_results": f"SELECT COUNT(*) FROM results WHERE applied = {RESULT_EXPIRED}",
            # (nothing counts as pending for an identity whose run MLflow refused: failed_runs)
            "pending_runs": "SELECT COUNT(*) FROM identities i WHERE i.mlflow_run_id IS NULL "
                            f"AND NOT {dead('identity', 'i.key')}",
            "pending_tasks": "SELECT COUNT(*) FROM tasks t WHERE applied = 0 AND NOT "
                             f"{dead_run_of_eval.format('t')} AND NOT "
                             f"{dead('task', 't.eval_id', 't.digest')}",
            # tasks whose finalization is still to be checked (those whose run is known here;
            # not those waiting for a dead task span)
            "pending_finalizations": "SELECT COUNT(*) FROM evals e JOIN identities i ON "
                                     "i.key = 'eval:' || e.eval_id WHERE e.final_rev < e.data_rev "
                                     f"AND NOT {dead('identity', 'i.key')} "
                                     f"AND NOT {dead('finalize', 'e.eval_id')} "
                                     "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.eval_id = "
                                     "e.eval_id AND t.applied = 0 AND "
                                     f"{dead('task', 't.eval_id', 't.digest')})",
            "failed_runs": "SELECT COUNT(*) FROM failures WHERE kind = 'identity' "
                           "AND retry_at IS NULL",
            "spans": "SELECT COUNT(*) FROM spans",  # not yet forwarded (forwarded ones go)
            "traces": "SELECT COUNT(*) FROM traces",  # forwarded from here
            "samples": "SELECT COUNT(*) FROM samples",
            "results": "SELECT COUNT(*) FROM results",
        }
        out = {k: int(self.db.read(sql)[0][0]) for k, sql in q.items()}
        out["dead_letters"], out["retrying"] = self.ledger.counts()
        return out
