"""Receiver processes for tests and benchmarks: ``start_receiver`` runs ``inspect-otel receiver``
as a real process on free ports and waits for ``/health``; the handle posts, reads health, waits
until idle and kills. The ``receiver_factory`` fixture (tests/conftest.py) stops them after a test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.mlflow_server import free_port
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ReceiverProc:
    proc: subprocess.Popen
    port: int
    grpc_port: int
    data_dir: Path
    log_path: Path
    token: str | None = None  # INSPECT_OTEL_RECEIVER_TOKEN it was started with: /health sends it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, signal_name: str, body: bytes, ctype: str = "application/x-protobuf",
             **headers: str) -> requests.Response:
        return requests.post(f"{self.url}/v1/{signal_name}", data=body,
                             headers={"Content-Type": ctype, **headers}, timeout=30)

    def health(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return requests.get(self.url + "/health", headers=headers, timeout=10).json()

    def wait_idle(self, timeout: float = 120.0) -> dict[str, Any]:
        return wait_for(lambda: (h := self.health())["idle"] and h["mlflow"]["writer_ok"] and h,
                        timeout, what="receiver idle")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10 if sig == signal.SIGKILL else 20)  # SIGTERM: drain time
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class _Exited(RuntimeError):
    """The receiver process ended before it answered /health."""


# A port free_port() returned can be taken (an outgoing connection's ephemeral port) before the
# receiver binds it: the receiver exits "Address already in use" and is started on new ports.
_PORT_ATTEMPTS = 3


def start_receiver(mlflow_uri: str, data_dir: Path, experiment: str, *extra: str,
                   env: dict[str, str] | None = None, settle: float = 2.0) -> ReceiverProc:
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "MLFLOW_EXPERIMENT_NAME": experiment, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        port, gport = free_port(), free_port()
        log_path = data_dir / f"receiver-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "inspect_otel.cli", "receiver", "--mlflow-uri", mlflow_uri,
                 "--port", str(port), "--grpc-port", str(gport), "--data-dir", str(data_dir),
                 "--settle-seconds", str(settle), *extra],
                stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=str(ROOT),
                start_new_session=True,
            )
        rp = ReceiverProc(proc, port, gport, data_dir, log_path,
                          token=full_env.get("INSPECT_OTEL_RECEIVER_TOKEN") or None)

        def up(proc: subprocess.Popen = proc, rp: ReceiverProc = rp) -> bool:
            if proc.poll() is not None:
                raise _Exited(f"receiver exited {proc.returncode}:\n{rp.log()}")
            try:
                return requests.get(rp.url + "/health", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(up, 60, what="receiver /health", fatal=(_Exited,))
        except _Exited as exited:
            rp.kill()
            if "Address already in use" in str(exited) and attempt < _PORT_ATTEMPTS:
                continue
            raise
        except BaseException:
            rp.kill()
            raise
        return rp
    raise AssertionError("unreachable")  # the last attempt returns or raises
