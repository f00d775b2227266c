"""Shared test set-up: every test starts with no OpenTelemetry or inspect-otel settings."""

from __future__ import annotations

import os

import pytest

_PREFIXES = ("OTEL_", "INSPECT_OTEL_", "MLFLOW_")


@pytest.fixture(autouse=True)
def _clean_telemetry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    # Inspect would otherwise write its own logs under ./logs of the checkout.
    monkeypatch.setenv("INSPECT_LOG_DIR", os.path.join(os.getcwd(), ".pytest_cache", "inspect-logs"))
