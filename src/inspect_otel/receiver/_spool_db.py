"""The spool's database: one sqlite file, its schema and migrations, a connection per thread,
one writer lock, and the exact count of the bytes not yet in MLflow.

The spool's three parts share it, each through this interface only: ingest (``_spool.py``),
the writer's side (``_spool_drain.py``) and the ledger of items that failed
(``_dead_letters.py``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
    end_ns INTEGER, digest TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS traces(trace_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS running(
    trace_id TEXT PRIMARY KEY, eval_id TEXT NOT NULL, received REAL NOT NULL);
CREATE TABLE IF NOT EXISTS content_spans(
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, PRIMARY KEY(trace_id, span_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS evals(
    eval_id TEXT PRIMARY KEY, data_rev INTEGER NOT NULL, final_rev INTEGER NOT NULL,
    changed REAL NOT NULL);
-- Items the writer could not apply (_dead_letters.py): retried at retry_at, or, with retry_at
-- NULL, dead letters kept until re-driven. version: the item's content it failed on (a task's
-- digest); another version is not held back. nbytes: what the row counts toward the bound.
CREATE TABLE IF NOT EXISTS failures(
    kind TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL, attempts INTEGER NOT NULL,
    first_at REAL NOT NULL, last_at REAL NOT NULL, retry_at REAL, cause TEXT NOT NULL,
    nbytes INTEGER NOT NULL,
    PRIMARY KEY(kind, key)) WITHOUT ROWID;
"""

# Unix time in SQL, the clock time.time() reads (sqlite keeps one 'now' per statement)
NOW_SQL = "((julianday('now') - 2440587.5) * 86400.0)"


def digest(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=list)


class SpoolDb:
    """The database of one spool. Thread-safe: one sqlite connection per thread, one writer
    lock. ``pending_bytes`` is kept in memory, adjusted by every writer in the transaction's
    wake, and equals ``count_pending_bytes()`` (a recount) at any time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.write_lock = threading.Lock()
        self._bytes_lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        with self.write_lock:
            db = self.conn()
            db.executescript(SCHEMA)
            self._migrate(db)
        self._pending_bytes = self.count_pending_bytes()

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        # Spools written before task aggregates came from MLflow kept per-span counters
        # (category, is_error) that nothing reads any more; is_error is NOT NULL.
        columns = {r[1] for r in db.execute("PRAGMA table_info(spans)")}
        for column in ("category", "is_error"):
            if column in columns:
                db.execute(f"ALTER TABLE spans DROP COLUMN {column}")
        # Spools written before step metrics came from MLflow at finalization kept each
        # sample's values until written (vals, metrics_applied NOT NULL).
        columns = {r[1] for r in db.execute("PRAGMA table_info(samples)")}
        for column in ("vals", "metrics_applied"):
            if column in columns:
                db.execute(f"ALTER TABLE samples DROP COLUMN {column}")
        # Spools before the failures ledger marked a refused identity in identities.failed:
        # it becomes a dead letter (kind "identity"), counted and re-drivable like the others.
        if "failed" in {r[1] for r in db.execute("PRAGMA table_info(identities)")}:
            now = time.time()
            db.execute(
                """INSERT OR IGNORE INTO failures(kind, key, version, attempts, first_at, last_at,
                       retry_at, cause, nbytes)
                   SELECT 'identity', key, '', 1, ?, ?, NULL, failed,
                          LENGTH(key) + LENGTH(failed)
                   FROM identities WHERE failed IS NOT NULL""", (now, now))
            db.execute("ALTER TABLE identities DROP COLUMN failed")

    # --- connections ---------------------------------------------------------------------------
    def conn(self) -> sqlite3.Connection:
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
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (under the writer lock)."""
        conn = self.conn()
        with self.write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    @contextmanager
    def savepoint(db: sqlite3.Connection) -> Iterator[None]:
        """One item inside a transaction: its writes are undone alone if it fails."""
        db.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK TO item")
            db.execute("RELEASE item")
            raise
        db.execute("RELEASE item")

    def read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple]:
        return self.conn().execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- new data ------------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[], None]) -> None:
        """``fn()`` is called after every commit of new data (wakes the writer)."""
        self._listeners.append(fn)

    def notify(self) -> None:
        for fn in self._listeners:
            fn()

    @staticmethod
    def bump(db: sqlite3.Connection, eval_id: str) -> None:
        """New data of a task: its finalization is checked again."""
        db.execute(
            """INSERT INTO evals(eval_id, data_rev, final_rev, changed) VALUES(?, 1, 0, ?)
               ON CONFLICT(eval_id) DO UPDATE SET data_rev = evals.data_rev + 1,
               changed = excluded.changed""",
            (eval_id, time.time()),
        )

    # --- size ----------------------------------------------------------------------------------
    def count_pending_bytes(self) -> int:
        """Spans not yet forwarded, the resources they travel with, results not yet applied
        (forwarded spans are deleted, applied results keep only their key), and what the
        failures ledger holds beyond those (its rows, and the attributes of a failed task or
        run, whose span has left)."""
        (n,) = self.read("SELECT COALESCE(SUM(nbytes), 0) FROM spans WHERE pending = 1")[0]
        (r,) = self.read("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM results WHERE applied = 0")[0]
        (c,) = self.read("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM resources")[0]
        (f,) = self.read("SELECT COALESCE(SUM(nbytes), 0) FROM failures")[0]
        return int(n) + int(r) + int(c) + int(f)

    def adjust(self, delta: int) -> None:
        if delta:
            with self._bytes_lock:
                self._pending_bytes += delta

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    # --- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self.read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def delete_meta(self, key: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))

    def meta_items(self, prefix: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.read(
            "SELECT key, value FROM meta WHERE key >= ? AND key < ? ORDER BY key",
            (prefix, prefix + "\uffff"))]
