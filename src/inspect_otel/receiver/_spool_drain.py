"""The writer's side of the spool: what is pending for MLflow, marking it applied (and dropping
what MLflow now holds), per-identity failures, and the counts ``/health`` shows.

``Spool`` (``_spool.py``) is the ingest side and the connection handling; it inherits these
methods, which use its ``_read``, ``_tx``, ``_adjust`` and ``_bump``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# results.applied
RESULT_PENDING, RESULT_APPLIED, RESULT_EXPIRED = 0, 1, 2

# an identity whose run MLflow refused, for the eval of the row aliased {0}
_FAILED_EVAL = ("SELECT 1 FROM identities fi WHERE fi.key = 'eval:' || {0}.eval_id "
                "AND fi.failed IS NOT NULL")

# a span of the trace of result ``r`` reached this receiver: still in the spool, or forwarded
TRACE_HERE = ("SELECT 1 FROM spans s WHERE s.trace_id = r.trace_id "
              "UNION ALL SELECT 1 FROM traces t WHERE t.trace_id = r.trace_id")


def _digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
    # --- writer side: runs ---------------------------------------------------------------------
    def identities_without_run(self) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT key, role, run_id, eval_id, attrs, start_ns FROM identities
               WHERE mlflow_run_id IS NULL AND failed IS NULL
               ORDER BY role = 'task', start_ns, key""")
        return [dict(key=r[0], role=r[1], run_id=r[2], eval_id=r[3], attrs=json.loads(r[4]),
                     start_ns=r[5]) for r in rows]

    def mlflow_run_id(self, key: str) -> str | None:
        rows = self._read("SELECT mlflow_run_id FROM identities WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_mlflow_run_id(self, key: str, mlflow_run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE identities SET mlflow_run_id = ? WHERE key = ?",
                       (mlflow_run_id, key))

    def fail_identity(self, key: str, reason: str) -> None:
        """MLflow refused this identity's run for good: nothing waits for it any more."""
        with self._tx() as db:
            db.execute("UPDATE identities SET failed = ? WHERE key = ?", (reason[:1000], key))

    def identity_failed(self, key: str) -> bool:
        return bool(self._read("SELECT 1 FROM identities WHERE key = ? AND failed IS NOT NULL",
                               (key,)))

    def failed_identities(self, limit: int = 20) -> list[dict[str, str]]:
        return [dict(role=r[0], inspect_id=r[1], error=r[2]) for r in self._read(
            """SELECT role, COALESCE(eval_id, run_id), failed FROM identities
               WHERE failed IS NOT NULL ORDER BY key LIMIT ?""", (limit,))]

    def pending_tasks(self) -> list[dict[str, Any]]:
        rows = self._read(
            """SELECT t.eval_id, t.run_id, t.attrs, t.start_ns, t.end_ns, t.digest, i.mlflow_run_id
               FROM tasks t JOIN identities i ON i.key = 'eval:' || t.eval_id
               WHERE t.applied = 0 AND i.mlflow_run_id IS NOT NULL ORDER BY t.end_ns""")
        return [dict(eval_id=r[0], run_id=r[1], attrs=json.loads(r[2]), start_ns=r[3],
                     end_ns=r[4], digest=r[5], mlflow_run_id=r[6]) for r in rows]

    def mark_task_applied(self, eval_id: str, digest: str) -> None:
        with self._tx() as db:
            # applied: the attributes are in MLflow; the key and digest stay (redelivery)
            db.execute("UPDATE tasks SET applied = 1, attrs = '{}' WHERE eval_id = ? AND digest = ?",
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
            db.execute("UPDATE runs SET applied = 1, attrs = '{}' WHERE run_id = ? AND digest = ?",
                       (run_id, digest))

    # --- writer side: spans --------------------------------------------------------------------
    def pending_spans(self, max_spans: int, max_bytes: int) -> list[PendingSpan]:
        rows = self._read(
            """SELECT s.trace_id, s.span_id, s.parent_id, r.payload, s.scope_name,
                      s.scope_version, s.payload, s.digest, s.link_key, s.enrich, s.nbytes
               FROM spans s JOIN resources r ON r.hash = s.resource
               WHERE s.pending = 1 ORDER BY s.rowid LIMIT ?""", (max_spans,))
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
        forwarded here, for its results), and so do resources no span uses any more."""
        freed = 0
        resources = set()
        with self._tx() as db:
            for s in spans:
                cur = db.execute(
                    "DELETE FROM spans WHERE trace_id = ? AND span_id = ? AND digest = ? "
                    "AND pending = 1", (s.trace_id, s.span_id, s.digest))
                if cur.rowcount > 0:
                    freed += s.nbytes
                    resources.add(_digest(s.resource))
                db.execute("INSERT OR IGNORE INTO traces(trace_id) VALUES(?)", (s.trace_id,))
            for rhash in sorted(resources):
                row = db.execute(
                    "SELECT LENGTH(payload) FROM resources WHERE hash = ? AND NOT EXISTS "
                    "(SELECT 1 FROM spans WHERE resource = ?)", (rhash, rhash)).fetchone()
                if row is not None:
                    db.execute("DELETE FROM resources WHERE hash = ?", (rhash,))
                    freed += int(row[0])
        self._adjust(-freed)

    def latest_sample_end(self, eval_id: str) -> int | None:
        """When the last sample of a task held here ended (ns)."""
        row = self._read("SELECT MAX(end_ns) FROM samples WHERE eval_id = ?", (eval_id,))
        return int(row[0][0]) if row and row[0][0] is not None else None

    # --- writer side: assessments --------------------------------------------------------------
    def pending_results(self, limit: int = 500) -> list[dict[str, Any]]:
        """Unapplied evaluation results whose trace this receiver already forwarded to MLflow."""
        rows = self._read(
            """SELECT r.trace_id, r.name, r.span_id, r.data, LENGTH(r.data), r.eval_id
               FROM results r
               WHERE r.applied = 0 AND EXISTS (
                   SELECT 1 FROM traces t WHERE t.trace_id = r.trace_id)
               ORDER BY r.trace_id, r.name LIMIT ?""", (limit,))
        return [dict(trace_id=r[0], name=r[1], span_id=r[2], nbytes=r[4], eval_id=r[5],
                     **json.loads(r[3])) for r in rows]

    def results_awaiting_trace(self, limit: int = 2000) -> list[dict[str, Any]]:
        """Unapplied evaluation results none of whose trace's spans reached this receiver: with
        several receivers another one may have forwarded the trace to MLflow (not those whose
        log record said the trace was not sampled: it never comes). Newest first: the likeliest
        to have a trace in MLflow by now."""
        rows = self._read(
            f"""SELECT r.trace_id, r.name, r.span_id, r.data, LENGTH(r.data), r.eval_id,
                      r.received
               FROM results r
               WHERE r.applied = 0 AND NOT EXISTS (
                   {TRACE_HERE})
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
                    """UPDATE results SET applied = 1, data = '{}'
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
        pending spans of their samples, task span, or results whose trace was
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
                 AND NOT EXISTS (SELECT 1 FROM samples s JOIN spans sp ON sp.trace_id = s.trace_id
                                 WHERE s.eval_id = e.eval_id AND sp.pending = 1)
                 AND NOT EXISTS (SELECT 1 FROM results r
                                 WHERE r.eval_id = e.eval_id AND r.applied = 0 AND EXISTS (
                                     {TRACE_HERE}))
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
                               f"({TRACE_HERE})",
            # results whose trace has not arrived (yet): nothing the writer can apply now
            "orphaned_results": "SELECT COUNT(*) FROM results r WHERE r.applied = 0 AND NOT "
                                f"EXISTS ({TRACE_HERE})",
            "expired_results": f"SELECT COUNT(*) FROM results WHERE applied = {RESULT_EXPIRED}",
            # (nothing counts as pending for an identity whose run MLflow refused: failed_runs)
            "pending_runs": "SELECT COUNT(*) FROM identities WHERE mlflow_run_id IS NULL "
                            "AND failed IS NULL",
            "pending_tasks": "SELECT COUNT(*) FROM tasks t WHERE applied = 0 AND NOT EXISTS "
                             f"({_FAILED_EVAL.format('t')})",
            # tasks whose finalization is still to be checked (those whose run is known here)
            "pending_finalizations": "SELECT COUNT(*) FROM evals e JOIN identities i ON "
                                     "i.key = 'eval:' || e.eval_id WHERE e.final_rev < e.data_rev "
                                     "AND i.failed IS NULL",
            "failed_runs": "SELECT COUNT(*) FROM identities WHERE failed IS NOT NULL",
            "spans": "SELECT COUNT(*) FROM spans",  # not yet forwarded (forwarded ones go)
            "traces": "SELECT COUNT(*) FROM traces",  # forwarded from here
            "samples": "SELECT COUNT(*) FROM samples",
            "results": "SELECT COUNT(*) FROM results",
        }
        out = {k: int(self._read(sql)[0][0]) for k, sql in q.items()}
        out["pending_bytes"] = self._pending_bytes
        out["max_bytes"] = self.max_bytes
        return out
