"""A real MLflow tracking server for tests and benchmarks (sqlite, or any SQLAlchemy URI).

``start_mlflow_server(tmp_dir)`` starts ``mlflow server`` in its own process group and waits for
``/health``; the returned handle has ``.url`` and ``.stop()`` (kills the whole group, because the
server spawns worker and job-queue processes). ``.restart()`` stops and starts it again on the same
port and the same store (used by fault tests). The session fixture ``mlflow_server`` in
``tests/conftest.py`` serves every test directory; ``pg_mlflow_server`` there is the same handle
with ``backend_store_uri`` on a real PostgreSQL (tests/support/postgres.py) and several workers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from inspect_otel.stack import mlflow_command
from tests.support.otlp_sink import free_port

_STARTUP_TIMEOUT_S = float(os.environ.get("INSPECT_OTEL_TEST_MLFLOW_STARTUP_S", "180"))


@dataclass
class MlflowServer:
    root: Path
    port: int
    proc: subprocess.Popen | None = None
    job_queue: bool = True  # False: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (also on restart)
    backend_store_uri: str | None = None  # None: sqlite under root
    workers: int = 1
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.root / "mlflow-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def backend_uri(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    def start(self, timeout: float = _STARTUP_TIMEOUT_S) -> "MlflowServer":
        (self.root / "artifacts").mkdir(parents=True, exist_ok=True)
        cmd = mlflow_command() + [
            "server",
            "--backend-store-uri", self.backend_uri,
            "--default-artifact-root", str(self.root / "artifacts"),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", str(self.workers),
        ]
        env = dict(os.environ)
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        env.setdefault("DO_NOT_TRACK", "true")
        # MLflow fetches its model price catalog from GitHub on the first chat span, per worker;
        # offline (as here) that waits about 7 s before it falls back to its bundled copy. Empty
        # = the bundled copy at once (MLflow's own setting; docs/receiver.md, offline servers).
        env.setdefault("MLFLOW_MODEL_CATALOG_URI", "")
        if not self.job_queue:
            env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            cwd=str(self.root),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mlflow server exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {timeout}s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                # the group may still hold workers: give them the same signal, then move on
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
            except subprocess.TimeoutExpired:
                continue
        # wait until the port is free so a restart on the same port works
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)

    def restart(self) -> "MlflowServer":
        self.stop()
        return self.start()

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_mlflow_server(tmp_dir: str | os.PathLike, port: int | None = None) -> MlflowServer:
    """Start a real MLflow server with a sqlite store under ``tmp_dir``; wait until healthy."""
    root = Path(tmp_dir)
    root.mkdir(parents=True, exist_ok=True)
    return MlflowServer(root=root, port=port or free_port()).start()


def start_lean_mlflow(tmp_dir: str | os.PathLike, port: int | None = None, *,
                      backend_store_uri: str | None = None, workers: int = 1) -> MlflowServer:
    """The same server without MLflow's job queue (as `inspect-otel up` runs it): several fewer
    processes and about half the start time on two cores. The tests' session servers."""
    root = Path(tmp_dir)
    root.mkdir(parents=True, exist_ok=True)
    return MlflowServer(root=root, port=port or free_port(), job_queue=False,
                        backend_store_uri=backend_store_uri, workers=workers).start()
