"""The PostgreSQL test server (tests/support/postgres.py) and the MLflow server on it.

These prove the fixture is what the PostgreSQL tests claim to run against: a real PostgreSQL that
MLflow writes into with several workers, that survives a crash and takes over a data directory a
killed test session left behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.postgres import start_postgres

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def _worker_pids(server) -> set[int]:
    """uvicorn worker processes of the MLflow server (children of its supervisor)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pgid = int(fields[2])
        if pgid == server.proc.pid and "multiprocessing" in cmd and "spawn_main" in cmd:
            pids.add(int(entry.name))
    return pids


def test_mlflow_writes_into_postgres_with_several_workers(pg_mlflow_server):
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    from tests.conftest import PG_MLFLOW_WORKERS

    assert pg_mlflow_server.backend_uri.startswith("postgresql://")
    assert len(_worker_pids(pg_mlflow_server)) == PG_MLFLOW_WORKERS
    client = MlflowClient(pg_mlflow_server.url)
    exp = client.create_experiment(f"pg-fixture-{time.time_ns()}")
    run = client.create_run(exp)
    client.log_batch(run.info.run_id, metrics=[Metric("m", 1.5, 0, 0)], params=[Param("p", "v")])
    rows = pg_mlflow_server.postgres.execute(
        f"SELECT key, value FROM metrics WHERE run_uuid = '{run.info.run_id}'", "mlflow")
    assert rows == [("m", 1.5)]


def test_crash_keeps_committed_data(tmp_path):
    pg = start_postgres(tmp_path / "data")
    try:
        pg.execute("CREATE TABLE t (x int)")
        pg.execute("INSERT INTO t VALUES (1)")
        pg.kill()
        assert not pg.accepting()
        pg.start()
        assert pg.execute("SELECT x FROM t") == [(1,)]
    finally:
        pg.stop()


def test_takes_over_a_data_dir_a_killed_session_left_running(tmp_path):
    """A test session killed before its teardown leaves its server running on the data dir: the
    next start shuts that one down (it is not adopted) and keeps the data."""
    data = tmp_path / "data"
    script = (
        "import os; from tests.support.postgres import start_postgres; "
        f"pg = start_postgres({str(data)!r}); pg.execute('CREATE TABLE left_behind (x int)'); "
        "print(pg.proc.pid, flush=True); os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    orphan = int(out.stdout.split()[0])
    assert Path(f"/proc/{orphan}").exists(), "the killed session's server should still run"
    pg = start_postgres(data)
    try:
        assert pg.execute("SELECT count(*) FROM left_behind") == [(0,)]
        assert not (data / "postmaster.pid").read_text().startswith(f"{orphan}\n")
    finally:
        pg.stop()
