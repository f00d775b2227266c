"""Fixtures for the stack tests: real processes (MLflow, receivers, rotel, Phoenix), cleaned up.

Every process is started in its own session and stopped by process group; anything whose
command line still names the test's temporary directory afterwards is reported as a leak.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.mlflow_server import free_port, start_lean_mlflow  # noqa: F401 (re-exported)
from tests.support.wait import wait_for as _wait_for

ROOT = Path(__file__).resolve().parents[2]
PHOENIX_VENV = ROOT / ".venv-phoenix"


class ProcessDied(RuntimeError):
    """A process a test waits on exited: fail at once instead of polling to the timeout."""


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Bounded polling; a dead process ends the wait at once."""
    return _wait_for(cond, timeout, what, interval, fatal=(ProcessDied,))


def processes_mentioning(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``marker`` (e.g. a temp directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines()
                          if ln.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmd and "zombie" not in state:
            found.append((int(entry.name), cmd.strip()))
    return found


def kill_mentioning(marker: str) -> None:
    for pid, _ in processes_mentioning(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def log(self, tail: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, grace: float = 20.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                os.killpg(self.proc.pid, sig)  # stragglers of the same group
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                cwd=str(cwd or ROOT), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return Proc(name, proc, log_path)


def http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# ------------------------------------------------------------------------------ servers


@dataclass
class Receiver:
    proc: Proc
    port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_receiver(mlflow_url: str, experiment: str, data_dir: Path,
                   token: str | None = None) -> Receiver:
    port, grpc_port = free_port(), free_port()
    env = {"MLFLOW_EXPERIMENT_NAME": experiment}
    if token:
        env["INSPECT_OTEL_RECEIVER_TOKEN"] = token
    proc = spawn(
        f"receiver-{experiment}",
        [sys.executable, "-m", "inspect_otel.cli", "receiver", "--mlflow-uri", mlflow_url,
         "--port", str(port), "--grpc-port", str(grpc_port), "--data-dir", str(data_dir),
         "--settle-seconds", "2"],
        data_dir, env=env,
    )
    rec = Receiver(proc, port, grpc_port)

    def up() -> bool:
        if not proc.alive():
            raise ProcessDied(f"receiver exited:\n{proc.log()}")
        return http_ok(rec.url + "/health")

    try:
        wait_for(up, 90, "receiver /health")
    except BaseException:
        proc.stop()
        raise
    return rec


@dataclass
class Rotel:
    proc: Proc
    http_port: int
    grpc_port: int


def rotel_binary() -> str:
    import rotel

    path = Path(rotel.__file__).with_name("rotel-agent")
    if not path.exists():
        pytest.fail(f"rotel is installed but its bundled binary is missing: {path}")
    return str(path)


def start_rotel(dest_url: str, work: Path, headers: dict[str, str] | None = None) -> Rotel:
    """rotel as a single OTLP hop (this PyPI build allows one exporter per signal)."""
    http_port, grpc_port = free_port(), free_port()
    env = {
        "ROTEL_EXPORTERS": "dst:otlp",
        "ROTEL_EXPORTERS_TRACES": "dst",
        "ROTEL_EXPORTERS_LOGS": "dst",
        "ROTEL_EXPORTERS_METRICS": "dst",
        "ROTEL_EXPORTER_DST_ENDPOINT": dest_url,
        "ROTEL_EXPORTER_DST_PROTOCOL": "http",
    }
    if headers:
        env["ROTEL_EXPORTER_DST_CUSTOM_HEADERS"] = ",".join(f"{k}={v}" for k, v in headers.items())
    work.mkdir(parents=True, exist_ok=True)
    proc = spawn(
        "rotel",
        [rotel_binary(), "start",
         "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
         "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
         "--pid-file", str(work / "rotel.pid"), "--log-file", str(work / "rotel-agent.log")],
        work, env=env, cwd=work,
    )

    def listening() -> bool:
        import socket

        if not proc.alive():
            raise ProcessDied(f"rotel exited:\n{proc.log()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", http_port)) == 0

    wait_for(listening, 30, "rotel to listen")
    return Rotel(proc, http_port, grpc_port)


def phoenix_executable() -> str | None:
    candidate = PHOENIX_VENV / "bin" / "phoenix"
    if candidate.exists():
        return str(candidate)
    return shutil.which("phoenix")


@dataclass
class Phoenix:
    proc: Proc
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory) -> Iterator[Phoenix]:
    exe = phoenix_executable()
    if exe is None:
        pytest.skip("Arize Phoenix is not installed: `make test` installs it into .venv-phoenix "
                    "(or `uv pip install --python .venv-phoenix/bin/python arize-phoenix`)")
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    proc = spawn(
        "phoenix", [exe, "serve"], work,
        env={"PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc_port),
             "PHOENIX_HOST": "127.0.0.1", "PHOENIX_WORKING_DIR": str(work / "data"),
             "PHOENIX_TELEMETRY_ENABLED": "false"},
        cwd=work,
    )
    server = Phoenix(proc, port)
    try:
        def ready() -> bool:
            if not proc.alive():
                raise ProcessDied(f"phoenix exited:\n{proc.log()}")
            return http_ok(server.url + "/healthz")

        wait_for(ready, 240, "Phoenix /healthz")
        yield server
    finally:
        proc.stop()
        kill_mentioning(str(work))
