"""``EmbeddedStack``: MLflow and the receiver as child processes of one data directory."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO
from urllib.parse import urlsplit

from ..config import default_experiment, log_artifact_roots
from ._backend import BACKEND_STORE_ENV, check_backend_store, redact_uri
from ._errors import StackError
from ._process import ChildProcess, connect_host, http_ok, mlflow_command, port_in_use
from ._signals import STOP_SIGNALS, signals_ignored
from ._token import TOKEN_ENV, StackToken, read_token_file, stack_token, token_path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_HTTP_PORT = 4318  # OTLP/HTTP, the receiver CLI's default
DEFAULT_GRPC_PORT = 4317  # OTLP/gRPC
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
INSPECT_LOG_DIR_ENV = "INSPECT_LOG_DIR"  # Inspect's own: where `inspect eval` writes its logs
DEFAULT_INSPECT_LOG_DIR = "logs"  # Inspect's default, relative to where `inspect eval` runs

MLFLOW_STARTUP_TIMEOUT_S = float(os.environ.get("INSPECT_OTEL_MLFLOW_STARTUP_S", "300"))
RECEIVER_STARTUP_TIMEOUT_S = float(os.environ.get("INSPECT_OTEL_RECEIVER_STARTUP_S", "120"))

MLFLOW = "mlflow"
RECEIVER = "receiver"


def otlp_headers(token: str) -> str:
    """OTEL_EXPORTER_OTLP_HEADERS carrying the receiver token (the SDK URL-decodes values; the
    receiver takes ``Bearer`` in any case, after a lower-case ``authorization`` as gRPC needs)."""
    return f"authorization=Bearer%20{token}"


@dataclass
class EmbeddedStack:
    data_dir: Path
    host: str = DEFAULT_HOST
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    backend_store_uri: str | None = None  # None: sqlite under data_dir
    workers: int | None = None  # None: 1 on sqlite, a few on a database server
    experiment: str | None = None  # None: MLFLOW_EXPERIMENT_NAME, else inspect_ai
    # More eval-log roots for the receiver (--log-artifact-root), beside the defaults
    log_artifact_roots: tuple[str, ...] = ()
    out: TextIO = field(default_factory=lambda: sys.stderr)
    children: list[ChildProcess] = field(default_factory=list)
    # The receiver's bearer token, settled by start(): INSPECT_OTEL_RECEIVER_TOKEN, or the one
    # kept in the data directory (see _token).
    token_info: StackToken | None = None

    @property
    def token(self) -> str:
        if self.token_info is None:
            raise StackError("the stack's token is settled when it starts")
        return self.token_info.value

    # MLflow's store --------------------------------------------------------------------
    @property
    def store_uri(self) -> str:
        if self.backend_store_uri:
            return self.backend_store_uri
        return f"sqlite:///{(self.data_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def on_sqlite(self) -> bool:
        return self.store_uri.startswith("sqlite:")

    @property
    def mlflow_workers(self) -> int:
        if self.workers:
            return self.workers
        # sqlite serialises writers: more workers only slow the start (about 75 s with 4 on 2
        # cores) and contend for the file. A database server takes concurrent writers.
        return 1 if self.on_sqlite else min(4, max(2, os.cpu_count() or 2))

    # URLs ------------------------------------------------------------------------------
    @property
    def mlflow_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.mlflow_port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.http_port}"

    @property
    def otlp_grpc_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.grpc_port}"

    @property
    def experiment_name(self) -> str:
        return self.experiment or default_experiment()

    def experiment_url(self) -> str:
        """The experiment's page in the MLflow UI (its id looked up; the list page if unknown)."""
        query = urllib.parse.urlencode({"experiment_name": self.experiment_name})
        try:
            with urllib.request.urlopen(
                    f"{self.mlflow_url}/api/2.0/mlflow/experiments/get-by-name?{query}",
                    timeout=5) as r:
                exp_id = json.load(r)["experiment"]["experiment_id"]
            return f"{self.mlflow_url}/#/experiments/{exp_id}"
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return f"{self.mlflow_url}/#/experiments"

    def mlflow_healthy(self) -> bool:
        return http_ok(self.mlflow_url + "/health")

    def receiver_healthy(self) -> bool:
        return http_ok(self.otlp_http_url + "/health")

    def already_running(self) -> bool:
        """An inspect-otel stack (ours or another process's) answers on these ports."""
        return self.mlflow_healthy() and self.receiver_healthy()

    # eval logs -------------------------------------------------------------------------
    def eval_log_roots(self) -> list[str]:
        """The roots passed to the receiver: the demo's eval-log directory, where `inspect eval`
        writes in this shell (INSPECT_LOG_DIR, else ./logs, as Inspect resolves it), and the
        operator's --log-artifact-root ones (a relative directory taken from here)."""
        roots = [str((self.data_dir / "eval-logs").resolve())]
        user = os.environ.get(INSPECT_LOG_DIR_ENV) or DEFAULT_INSPECT_LOG_DIR
        scheme = urlsplit(user).scheme.lower() if "://" in user else ""
        if not scheme:
            roots.append(str(Path(user).expanduser().resolve()))
        elif scheme in ("s3", "gs", "gcs", "az", "abfs", "abfss"):  # the receiver's object stores
            roots.append(user)
        for root in self.log_artifact_roots:
            roots.append(root if "://" in root else str(Path(root).expanduser().resolve()))
        return roots

    def allowed_log_roots(self) -> list[str]:
        """Every root the receiver will hold eval logs to, as it parses them: ours and the
        environment's (INSPECT_OTEL_LOG_ARTIFACT_ROOTS, which the receiver reads itself).
        Raises StackError for one it would refuse."""
        from ..receiver._eval_logs import RootError, parse_roots

        try:
            return [str(r) for r in parse_roots([*self.eval_log_roots(), *log_artifact_roots()])]
        except RootError as e:
            raise StackError(f"--log-artifact-root: {e}") from None

    # lifecycle -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        env.setdefault("DO_NOT_TRACK", "true")
        # MLflow's job queue (online judges, prompt optimisation) starts several more Python
        # processes; nothing here uses it, and without it MLflow is ready in about half the
        # time on a small machine. Set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to keep it.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        # The stack's own processes must not export their telemetry into themselves.
        for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
            env.pop(key, None)
        return env

    def preflight(self) -> None:
        """Everything that can be checked before starting anything: free ports, a reachable
        backend store, usable log roots, a token file that may be trusted. Raises StackError
        with a one-line message."""
        busy = [
            f"{what} port {port}"
            for what, port in (("MLflow", self.mlflow_port), ("OTLP/HTTP", self.http_port),
                               ("OTLP/gRPC", self.grpc_port))
            if port_in_use(connect_host(self.host), port)
        ]
        if busy:
            raise StackError(
                f"{', '.join(busy)} already in use on {self.host}. Stop what runs there or pick "
                "other ports (--mlflow-port, --port, --grpc-port)."
            )
        if self.workers is not None and self.workers < 1:
            raise StackError(f"--workers must be at least 1 (got {self.workers})")
        self.allowed_log_roots()
        if not os.environ.get(TOKEN_ENV):
            read_token_file(token_path(self.data_dir))  # refuses a file it must not trust
        check_backend_store(self.store_uri)

    def start(self) -> None:
        self.preflight()
        self._make_data_dir()
        try:
            self.token_info = stack_token(self.data_dir)
            self._start_mlflow()
            self._start_receiver()
        except BaseException:
            self.stop()
            raise

    def _make_data_dir(self) -> None:
        """0700 when we create it (MLflow's store and the spool hold prompts and outputs); an
        existing directory is the operator's: it is left as it is, with a word if others can
        read it."""
        if not self.data_dir.exists():
            self.data_dir.mkdir(parents=True, mode=0o700)
            self.data_dir.chmod(0o700)  # mkdir's mode is filtered by the umask
        elif self.data_dir.stat().st_mode & 0o077:
            self.out.write(f"  note: {self.data_dir} is readable by other users "
                           f"(chmod 700 {self.data_dir} to keep them out)\n")

    def _start_mlflow(self) -> None:
        root = self.data_dir / "mlflow"
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        # The store URI may hold a password: through the environment (mlflow server reads
        # MLFLOW_BACKEND_STORE_URI), not argv, so neither `ps` nor the log header shows it.
        env = {**self._env(), BACKEND_STORE_ENV: self.store_uri}
        child = ChildProcess(
            name=MLFLOW,
            cmd=mlflow_command() + [
                "server",
                "--artifacts-destination", str((root / "artifacts").resolve()),
                "--host", self.host,
                "--port", str(self.mlflow_port),
                "--workers", str(self.mlflow_workers),
            ],
            log_path=self.data_dir / "logs" / "mlflow.log",
            env=env,
            cwd=root,
        )
        self.children.append(child)
        child.start()
        self._wait(child, self.mlflow_healthy, MLFLOW_STARTUP_TIMEOUT_S,
                   f"MLflow on {self.mlflow_url}")

    def _start_receiver(self) -> None:
        child = ChildProcess(
            name=RECEIVER,
            cmd=[
                sys.executable, "-m", "inspect_otel.cli", "receiver",
                "--mlflow-uri", self.mlflow_url,
                "--host", self.host,
                "--port", str(self.http_port),
                "--grpc-port", str(self.grpc_port),
                # The receiver keeps its spool under <data-dir>/receiver/.
                "--data-dir", str(self.data_dir.resolve()),
                "--experiment", self.experiment_name,
                *(arg for root in self.eval_log_roots() for arg in ("--log-artifact-root", root)),
            ],
            log_path=self.data_dir / "logs" / "receiver.log",
            # Through the environment: argv is visible to every user in `ps`.
            env={**self._env(), TOKEN_ENV: self.token},
            cwd=self.data_dir,
        )
        self.children.append(child)
        child.start()
        self._wait(child, self.receiver_healthy, RECEIVER_STARTUP_TIMEOUT_S,
                   f"receiver on {self.otlp_http_url}")

    def child(self, name: str) -> ChildProcess | None:
        return next((c for c in self.children if c.name == name), None)

    def restart(self, child: ChildProcess) -> None:
        """Start a child that died again, without waiting for it (the supervisor watches)."""
        child.stop()  # reaps it, and anything it left in its process group
        child.start()

    def _wait(self, child: ChildProcess, healthy: Callable[[], bool], timeout: float, what: str) -> None:
        tty = self.out.isatty()
        start = time.monotonic()
        last_line = -1.0
        while True:
            elapsed = time.monotonic() - start
            if not child.running():
                code = child.proc.returncode if child.proc else "?"
                raise StackError(
                    f"{child.name} exited with code {code} while starting.\n"
                    f"Last lines of {child.log_path}:\n{child.log_tail()}"
                )
            if healthy():
                msg = f"  {what}: ready after {elapsed:.0f}s"
                self.out.write(("\r" + msg.ljust(70) + "\n") if tty else msg + "\n")
                self.out.flush()
                return
            if elapsed > timeout:
                raise StackError(
                    f"{what} not healthy after {timeout:.0f}s (raise INSPECT_OTEL_MLFLOW_STARTUP_S "
                    f"on slow machines).\nLast lines of {child.log_path}:\n{child.log_tail()}"
                )
            # Progress: MLflow's first start (database migrations) takes a while on small machines.
            if tty:
                self.out.write(f"\r  starting {what} ... {elapsed:.0f}s".ljust(70))
                self.out.flush()
            elif elapsed - last_line >= 10 or last_line < 0:
                self.out.write(f"  starting {what} ... {elapsed:.0f}s\n")
                self.out.flush()
                last_line = elapsed
            time.sleep(0.5)

    def stop(self) -> None:
        """Receiver first (it drains what it has accepted into MLflow while MLflow still runs),
        then MLflow, each group gracefully; a second Ctrl-C or SIGTERM meanwhile kills what is
        left at once. The token file stays: the next start uses the same token."""
        try:
            for child in reversed(self.children):
                child.stop()
        except STOP_SIGNALS:
            with signals_ignored():
                self.out.write("\nSecond signal: killing the stack's processes.\n")
                for child in reversed(self.children):
                    child.kill()
        self.children.clear()

    # output ----------------------------------------------------------------------------
    def env_lines(self) -> list[str]:
        """What to run in the shell of `inspect eval`. The token is not echoed: the header line
        reads it from the kept file (or the operator's variable), so it stays valid across
        restarts and out of terminal scrollback."""
        lines = [f"export OTEL_EXPORTER_OTLP_ENDPOINT={self.otlp_http_url}"]
        info = self.token_info
        if info is None or info.path is None:  # the operator's
            token = "$" + TOKEN_ENV
        else:
            token = f"$(cat {shlex.quote(str(info.path.resolve()))})"
        lines.append(f'export OTEL_EXPORTER_OTLP_HEADERS="{otlp_headers(token)}"')
        lines.append(f"export {CAPTURE_ENV}=true   # optional: also capture prompts, outputs, tool I/O")
        return lines

    def summary(self) -> str:
        token = self.token_info.describe() if self.token_info else "-"
        return "\n".join([
            "",
            "inspect-otel stack is up",
            f"  MLflow UI        {self.mlflow_url}",
            f"  experiment       {self.experiment_name}   {self.experiment_url()}",
            f"  OTLP/HTTP        {self.otlp_http_url}   (receiver -> MLflow)",
            f"  OTLP/gRPC        {self.otlp_grpc_url}",
            f"  receiver token   {token}",
            f"  eval logs from   {', '.join(self.allowed_log_roots())}",
            "                   (stored with their runs; add your log directory with "
            "--log-artifact-root DIR)",
            f"  MLflow store     {redact_uri(self.store_uri)} ({self.mlflow_workers} "
            f"worker{'s' if self.mlflow_workers > 1 else ''})",
            f"  data             {self.data_dir.resolve()}",
            f"  logs             {(self.data_dir / 'logs').resolve()}",
            "",
            "In the shell where you run `inspect eval`:",
            *("  " + line for line in self.env_lines()),
            "",
        ])
