"""Shared test set-up.

Every test starts with no OpenTelemetry or inspect-otel settings. One real MLflow server (sqlite,
without MLflow's job queue) serves the whole session, whichever test directory needs it; tests
keep apart by experiment name.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.mlflow_server import start_lean_mlflow
from tests.support.receiver import ReceiverProc, start_receiver

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

_PREFIXES = ("OTEL_", "INSPECT_OTEL_", "MLFLOW_")


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
