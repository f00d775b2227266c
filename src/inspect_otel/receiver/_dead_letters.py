"""Items the writer could not apply: kept in the spool with their cause, retried, never dropped.

An *item* is the unit the writer applies and can fail on alone (``KINDS``): a run claim, a
trace's spans, an evaluation result, a task's or run's span data, a task's finalization, the
link of a running trace, an eval log. When writing one fails (``_mlflow_io.classify``):

- *transient* (MLflow down or failing, credentials refused): nothing is recorded; the writer's
  pass is retried with backoff;
- *retry* (an unexpected exception: ``TypeError``, ``KeyError``, an unreadable answer): the item
  is held back for ``RetryPolicy.delay(attempt)`` (1 s doubling to 2 min) while everything else
  goes on, then tried again; after ``RetryPolicy.attempts`` (8, about two minutes) it becomes a
  dead letter;
- *permanent* (MLflow refused it with a definite client error code): a dead letter at once.

A dead letter stays in the spool, its data included, with its cause, and counts toward the
spool's bound. Nothing retries it until it is *re-driven* (``inspect-otel receiver
--retry-dead-letters``, or the first start of another receiver version): then it is tried again,
once, as new, and applied exactly once (every MLflow write of the receiver is idempotent). A new
version of an item (a task span sent again with other content) is tried afresh.

Each failure is logged once per cause and state (WARNING when a cause first holds an item back,
ERROR when it first makes a dead letter; DEBUG with the traceback otherwise), and ``/health``
lists the causes. Causes are one line, bounded, without secrets, URLs, host names or paths
(``_mlflow_io.describe``).
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ._mlflow_io import PERMANENT, TRANSIENT, Transient, classify
from ._spool_db import NOW_SQL, SpoolDb

log = logging.getLogger("inspect_otel.receiver")

# kind -> (what it is, in messages; SQL: the item (``f.key``) still waits for the writer).
# A row whose item no longer waits (applied by other means, expired, its running trace
# complete) is forgotten (``DeadLetterLedger.forget_settled``).
KINDS: dict[str, tuple[str, str]] = {
    "identity": ("the MLflow run of", "EXISTS (SELECT 1 FROM identities i WHERE i.key = f.key "
                                      "AND i.mlflow_run_id IS NULL)"),
    "trace": ("the spans of trace", "EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = f.key "
                                    "AND s.pending = 1)"),
    "result": ("evaluation result", "EXISTS (SELECT 1 FROM results r WHERE r.trace_id = "
                                    "substr(f.key, 1, 32) AND r.trace_id || '/' || r.span_id || "
                                    "'/' || r.name = f.key AND r.applied = 0)"),
    "link": ("the link to its task run of running trace",
             "EXISTS (SELECT 1 FROM running g WHERE g.trace_id = f.key)"),
    "task": ("the task span data of eval", "EXISTS (SELECT 1 FROM tasks t WHERE t.eval_id = f.key "
                                           "AND t.applied = 0)"),
    "run": ("the run span data of Inspect run", "EXISTS (SELECT 1 FROM runs r WHERE "
                                                "r.run_id = f.key AND r.applied = 0)"),
    "finalize": ("the finalization of eval", "EXISTS (SELECT 1 FROM evals e WHERE "
                                             "e.eval_id = f.key AND e.final_rev < e.data_rev)"),
    "eval_log": ("the eval log of eval", "EXISTS (SELECT 1 FROM meta m WHERE "
                                         "m.key = 'log_artifact:' || f.key)"),
}

MAX_CAUSES_SHOWN = 10
EXAMPLES_PER_CAUSE = 3
MAX_KEY_SHOWN = 200
_LOGGED_CAUSES_MAX = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(key: str) -> str:
    """An item key as the log and /health show it: one line (a scorer name in a result's key is
    the sender's text), at most MAX_KEY_SHOWN characters."""
    key = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", key)
    return key if len(key) <= MAX_KEY_SHOWN else key[: MAX_KEY_SHOWN - 3] + "..."


def result_key(trace_id: str, span_id: str, name: str) -> str:
    """An evaluation result's key (its trace id, 32 hex digits, first: see KINDS)."""
    return f"{trace_id}/{span_id}/{name}"


def held(kind: str, key_sql: str, version_sql: str = "''") -> str:
    """SQL: the item is held back now (a dead letter, or its next try is later)."""
    return (f"EXISTS (SELECT 1 FROM failures f WHERE f.kind = '{kind}' AND f.key = {key_sql} "
            f"AND f.version = {version_sql} AND (f.retry_at IS NULL OR f.retry_at > {NOW_SQL}))")


def dead(kind: str, key_sql: str, version_sql: str = "''") -> str:
    """SQL: the item is a dead letter."""
    return (f"EXISTS (SELECT 1 FROM failures f WHERE f.kind = '{kind}' AND f.key = {key_sql} "
            f"AND f.version = {version_sql} AND f.retry_at IS NULL)")


@dataclass(frozen=True)
class RetryPolicy:
    """How an item failing unexpectedly is retried before it becomes a dead letter."""

    attempts: int = 8
    first_delay_s: float = 1.0
    max_delay_s: float = 120.0

    def delay(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (1-based): doubling, capped."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, attempt - 1))


@dataclass(frozen=True)
class Item:
    kind: str  # a key of KINDS
    key: str
    version: str = ""  # the content it failed on (a task's digest); "" for items without versions
    held_bytes: int = 0  # data it keeps that the spool's bound counts nowhere else

    def __str__(self) -> str:
        return f"{KINDS[self.kind][0]} {shown(self.key)}"


@dataclass(frozen=True)
class Recorded:
    attempts: int
    dead: bool
    retry_in_s: float | None


class DeadLetterLedger:
    """The ``failures`` table of a spool: what failed, why, and when it is tried again."""

    def __init__(self, db: SpoolDb):
        self.db = db

    def record(self, item: Item, cause: str, permanent: bool, policy: RetryPolicy,
               now: float | None = None) -> Recorded:
        now = time.time() if now is None else now
        nbytes = len(item.key) + len(cause) + item.held_bytes
        with self.db.tx() as db:
            row = db.execute("SELECT version, attempts, first_at, nbytes FROM failures "
                             "WHERE kind = ? AND key = ?", (item.kind, item.key)).fetchone()
            same = row is not None and row[0] == item.version
            attempts = (row[1] if same else 0) + 1
            first_at = row[2] if same else now
            is_dead = permanent or attempts >= policy.attempts
            retry_in = None if is_dead else policy.delay(attempts)
            db.execute(
                """INSERT OR REPLACE INTO failures(kind, key, version, attempts, first_at,
                       last_at, retry_at, cause, nbytes) VALUES(?,?,?,?,?,?,?,?,?)""",
                (item.kind, item.key, item.version, attempts, first_at, now,
                 None if retry_in is None else now + retry_in, cause, nbytes))
        self.db.adjust(nbytes - (row[3] if row is not None else 0))
        return Recorded(attempts, is_dead, retry_in)

    @staticmethod
    def clear(db: sqlite3.Connection, kind: str, keys: Iterable[str]) -> int:
        """Forget the rows of ``keys`` (applied), inside the caller's transaction; returns the
        bytes they counted (the caller adjusts the spool's count once it commits)."""
        freed = 0
        for key in keys:
            row = db.execute("DELETE FROM failures WHERE kind = ? AND key = ? RETURNING nbytes",
                             (kind, key)).fetchone()
            if row is not None:
                freed += int(row[0])
        return freed

    def clear_now(self, kind: str, key: str) -> None:
        with self.db.tx() as db:
            freed = self.clear(db, kind, (key,))
        self.db.adjust(-freed)

    def forget_settled(self) -> int:
        """Forget the rows whose item no longer waits for the writer (see KINDS)."""
        if not self.db.read("SELECT 1 FROM failures LIMIT 1"):
            return 0  # the usual case: no write transaction every second for nothing
        cases = " ".join(f"WHEN '{kind}' THEN {sql}" for kind, (_, sql) in KINDS.items())
        with self.db.tx() as db:
            rows = db.execute(f"DELETE FROM failures AS f WHERE NOT (CASE f.kind {cases} "
                              "ELSE 0 END) RETURNING nbytes").fetchall()
        self.db.adjust(-sum(int(r[0]) for r in rows))
        return len(rows)

    def redrive(self) -> int:
        """Every dead letter tried again now, from its first attempt. Returns how many."""
        self.forget_settled()
        with self.db.tx() as db:
            # due at SQLite's own "now" (milliseconds): a Python time.time() a fraction of a
            # millisecond ahead of it would hold the item back until the clock moves on
            cur = db.execute(f"UPDATE failures SET retry_at = {NOW_SQL}, attempts = 0 "
                             "WHERE retry_at IS NULL")
        if cur.rowcount:
            self.db.notify()
        return cur.rowcount

    def has(self, kind: str, db: sqlite3.Connection | None = None) -> bool:
        """Any row of ``kind`` (one index probe): the per-span and per-result paths skip the
        ledger when it has none, the usual case."""
        sql, args = "SELECT 1 FROM failures WHERE kind = ? LIMIT 1", (kind,)
        return bool(db.execute(sql, args).fetchone() if db is not None else self.db.read(sql, args))

    def is_dead(self, kind: str, key: str) -> bool:
        return bool(self.db.read("SELECT 1 FROM failures WHERE kind = ? AND key = ? "
                                 "AND retry_at IS NULL", (kind, key)))

    def held_keys(self, kind: str) -> set[str]:
        """The keys of ``kind`` held back now (a dead letter, or tried again later)."""
        return {r[0] for r in self.db.read(
            f"SELECT key FROM failures WHERE kind = ? AND (retry_at IS NULL OR retry_at > "
            f"{NOW_SQL})", (kind,))}

    def dead_items(self, kind: str, limit: int = 20) -> list[tuple[str, str]]:
        """(key, cause) of the dead letters of ``kind``."""
        return [(r[0], r[1]) for r in self.db.read(
            "SELECT key, cause FROM failures WHERE kind = ? AND retry_at IS NULL "
            "ORDER BY key LIMIT ?", (kind, limit))]

    def counts(self) -> tuple[int, int]:
        """(dead letters, items being retried)."""
        dead_n, retrying = self.db.read(
            "SELECT COALESCE(SUM(retry_at IS NULL), 0), COALESCE(SUM(retry_at IS NOT NULL), 0) "
            "FROM failures")[0]
        return int(dead_n), int(retrying)

    def causes(self, limit: int = MAX_CAUSES_SHOWN) -> list[dict[str, Any]]:
        """The first causes, oldest first: kind, cause, counts, a few item keys."""
        rows = self.db.read(
            """SELECT kind, cause, SUM(retry_at IS NULL), SUM(retry_at IS NOT NULL),
                      MIN(first_at), MAX(last_at)
               FROM failures GROUP BY kind, cause ORDER BY MIN(first_at), kind, cause
               LIMIT ?""", (limit,))
        out = []
        for kind, cause, n_dead, n_retrying, first_at, last_at in rows:
            examples = [shown(r[0]) for r in self.db.read(
                "SELECT key FROM failures WHERE kind = ? AND cause = ? ORDER BY first_at, key "
                "LIMIT ?", (kind, cause, EXAMPLES_PER_CAUSE))]
            out.append({"kind": kind, "cause": cause, "dead": int(n_dead),
                        "retrying": int(n_retrying), "first_at": first_at, "last_at": last_at,
                        "examples": examples})
        return out


class DeadLetters:
    """What the writer does with an item it could not apply: classify the failure, hold the
    item back or make it a dead letter, and say so once per cause (module docstring)."""

    def __init__(self, ledger: DeadLetterLedger, policy: RetryPolicy,
                 scrub: Callable[[str], str] | None = None):
        self.ledger = ledger
        self.policy = policy
        self._scrub = scrub
        self._lock = threading.Lock()
        self._logged: set[tuple[str, bool, str]] = set()

    def failed(self, item: Item, exc: BaseException) -> None:
        """Record that writing ``item`` failed with ``exc``. A transient failure is raised as
        ``Transient`` instead (the writer's pass is retried; the item is not charged)."""
        failure = classify(exc, self._scrub)
        if failure.kind == TRANSIENT:
            raise Transient(failure.cause) from exc
        rec = self.ledger.record(item, failure.cause, failure.kind == PERMANENT, self.policy)
        if self._first(item.kind, rec.dead, failure.cause):
            if rec.dead:
                log.error("%s is a dead letter after %d attempt(s): %s. It stays in the spool "
                          "(see /health); `inspect-otel receiver --retry-dead-letters` tries it "
                          "again. Others failing with this cause are logged at DEBUG.", item,
                          rec.attempts, failure.cause)
            else:
                log.warning("%s could not be written to MLflow: %s. Retrying it in %.1f s, "
                            "at most %d attempts, while the rest goes on; others failing with "
                            "this cause are logged at DEBUG.", item, failure.cause,
                            rec.retry_in_s or 0, self.policy.attempts)
        log.debug("%s failed (attempt %d, %s): %s", item, rec.attempts,
                  "dead letter" if rec.dead else f"retry in {rec.retry_in_s:.1f} s",
                  failure.cause, exc_info=exc)

    def _first(self, kind: str, is_dead: bool, cause: str) -> bool:
        # ids and numbers in a message differ from item to item: one cause is their pattern
        key = (kind, is_dead, re.sub(r"[0-9a-fA-F]{8,}|\d+", "#", cause))
        with self._lock:
            if key in self._logged:
                return False
            if len(self._logged) >= _LOGGED_CAUSES_MAX:
                self._logged.clear()
            self._logged.add(key)
            return True
