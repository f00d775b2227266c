"""`inspect-otel up`: MLflow and the receiver as local child processes, no Docker.

MLflow runs with a sqlite store under the data directory (``--data-dir``, env
``INSPECT_OTEL_DATA_DIR``, default ``~/.inspect-otel``), or on a database server given by
``--backend-store-uri`` (env ``MLFLOW_BACKEND_STORE_URI``, as for ``mlflow server``), e.g.
PostgreSQL with several ``--workers``; the receiver listens on the standard OTLP ports so an eval
only needs ``OTEL_EXPORTER_OTLP_ENDPOINT``. The receiver is the same either way: it talks to
MLflow's REST API, never to the database. Each child gets its own process group
(MLflow spawns workers and a job queue), and the whole group is stopped on Ctrl-C or SIGTERM.

The receiver always requires a bearer token: the operator's ``INSPECT_OTEL_RECEIVER_TOKEN``, or
one generated at each start, printed with the line to export and kept for ``demo`` in
``<data-dir>/receiver.token`` (0600, removed at stop). The data directory is created 0700: it
holds prompts and outputs (MLflow's store, the receiver's spool).

``EmbeddedStack`` is also used by ``inspect-otel demo``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO
from urllib.parse import urlsplit, urlunsplit

from .config import DATA_DIR_ENV, data_dir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_HTTP_PORT = 4318  # OTLP/HTTP, the receiver CLI's default
DEFAULT_GRPC_PORT = 4317  # OTLP/gRPC
TOKEN_ENV = "INSPECT_OTEL_RECEIVER_TOKEN"
TOKEN_FILE = "receiver.token"  # under the data directory, while a stack that generated it runs
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

BACKEND_STORE_ENV = "MLFLOW_BACKEND_STORE_URI"  # mlflow server's own variable
DB_CONNECT_TIMEOUT_S = 5
MLFLOW_STARTUP_TIMEOUT_S = float(os.environ.get("INSPECT_OTEL_MLFLOW_STARTUP_S", "300"))
RECEIVER_STARTUP_TIMEOUT_S = float(os.environ.get("INSPECT_OTEL_RECEIVER_STARTUP_S", "120"))


class StackError(RuntimeError):
    pass


# ------------------------------------------------------------------------------ probing


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


# ------------------------------------------------------------------------ backend store

# SQLAlchemy URL scheme -> the Python driver MLflow's SQLAlchemy store imports for it
_PG_DRIVERS = {"postgresql": "psycopg", "postgresql+psycopg": "psycopg",
               "postgresql+psycopg2": "psycopg2"}


def redact_uri(uri: str) -> str:
    """The URI with its password replaced by ***, for messages and logs. A user name without a
    password (``https://<token>@host``) is often itself the credential: it is replaced whole."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    if ":" not in userinfo:
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def check_backend_store(uri: str, timeout: float = DB_CONNECT_TIMEOUT_S) -> None:
    """Fail early, in one line, on a store MLflow would die on with a traceback in its log: a
    PostgreSQL URI without its driver installed, or a database that cannot be reached."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    shown = redact_uri(uri)
    if scheme == "postgres":
        raise StackError(f"--backend-store-uri {shown}: write postgresql:// (SQLAlchemy, which "
                         "MLflow uses, does not accept postgres://)")
    if scheme not in _PG_DRIVERS:
        return  # sqlite, mysql, mssql: MLflow checks these itself
    driver = _PG_DRIVERS[scheme]
    try:
        module = __import__(driver)
    except ImportError:
        extra = "pip install 'inspect-otel[postgres]'" if driver == "psycopg" else "pip install psycopg2-binary"
        raise StackError(f"MLflow needs the PostgreSQL driver `{driver}` for {shown}: "
                         f"{extra}") from None
    dsn = "postgresql://" + uri.split("://", 1)[1]  # libpq reads the URI without the +driver
    try:
        conn = module.connect(dsn, connect_timeout=int(timeout))
    except Exception as exc:  # noqa: BLE001 (any driver error: refused, auth, no such database)
        raise StackError(f"cannot reach MLflow's backend store {shown}: {_one_line(exc)}") from None
    conn.close()


# ---------------------------------------------------------------------------- processes


@dataclass
class ChildProcess:
    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.cmd)}\n".encode())
            log.flush()
            # Own session = own process group: Ctrl-C in the terminal reaches only us, and we
            # stop each child's whole group (MLflow's workers included) in order.
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=str(self.cwd), start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; workers of the same group may linger. Same signal, then done.
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            break
        if proc.poll() is None:
            proc.wait(timeout=5)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def mlflow_command() -> list[str]:
    """The `mlflow` CLI of this environment (tests and benchmarks start servers with it too)."""
    exe = Path(sys.executable).with_name("mlflow")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


@dataclass
class EmbeddedStack:
    data_dir: Path
    host: str = DEFAULT_HOST
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    backend_store_uri: str | None = None  # None: sqlite under data_dir
    workers: int | None = None  # None: 1 on sqlite, a few on a database server
    out: TextIO = field(default_factory=lambda: sys.stderr)
    children: list[ChildProcess] = field(default_factory=list)
    # The receiver's bearer token: the operator's (INSPECT_OTEL_RECEIVER_TOKEN) or generated.
    token: str = field(default_factory=lambda: os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(32))
    _wrote_token: bool = False

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
        return f"http://{_connect_host(self.host)}:{self.mlflow_port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://{_connect_host(self.host)}:{self.http_port}"

    @property
    def otlp_grpc_url(self) -> str:
        return f"http://{_connect_host(self.host)}:{self.grpc_port}"

    def mlflow_healthy(self) -> bool:
        return http_ok(self.mlflow_url + "/health")

    def receiver_healthy(self) -> bool:
        return http_ok(self.otlp_http_url + "/health")

    def already_running(self) -> bool:
        """An inspect-otel stack (ours or another process's) answers on these ports."""
        return self.mlflow_healthy() and self.receiver_healthy()

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
        backend store. Raises StackError with a one-line message."""
        busy = [
            f"{what} port {port}"
            for what, port in (("MLflow", self.mlflow_port), ("OTLP/HTTP", self.http_port),
                               ("OTLP/gRPC", self.grpc_port))
            if port_in_use(_connect_host(self.host), port)
        ]
        if busy:
            raise StackError(
                f"{', '.join(busy)} already in use on {self.host}. Stop what runs there or pick "
                "other ports (--mlflow-port, --port, --grpc-port)."
            )
        if self.workers is not None and self.workers < 1:
            raise StackError(f"--workers must be at least 1 (got {self.workers})")
        check_backend_store(self.store_uri)

    def start(self) -> None:
        self.preflight()
        self._make_data_dir()
        try:
            self._save_token()
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

    @property
    def token_path(self) -> Path:
        return self.data_dir / TOKEN_FILE

    def _save_token(self) -> None:
        """A generated token is kept for ``inspect-otel demo`` of the same data directory (the
        operator's own token stays where the operator keeps it)."""
        if os.environ.get(TOKEN_ENV) == self.token:
            return
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.token + "\n")
        self._wrote_token = True

    def _start_mlflow(self) -> None:
        root = self.data_dir / "mlflow"
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        # The store URI may hold a password: through the environment (mlflow server reads
        # MLFLOW_BACKEND_STORE_URI), not argv, so neither `ps` nor the log header shows it.
        env = {**self._env(), BACKEND_STORE_ENV: self.store_uri}
        child = ChildProcess(
            name="mlflow",
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
            name="receiver",
            cmd=[
                sys.executable, "-m", "inspect_otel.cli", "receiver",
                "--mlflow-uri", self.mlflow_url,
                "--host", self.host,
                "--port", str(self.http_port),
                "--grpc-port", str(self.grpc_port),
                # The receiver keeps its spool under <data-dir>/receiver/.
                "--data-dir", str(self.data_dir.resolve()),
                # Eval logs are stored from these only: the demo's, and where `inspect eval`
                # writes in this shell (INSPECT_LOG_DIR, else ./logs).
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

    def eval_log_roots(self) -> list[str]:
        roots = [str((self.data_dir / "eval-logs").resolve())]
        user = os.environ.get("INSPECT_LOG_DIR") or "logs"
        scheme = urlsplit(user).scheme.lower() if "://" in user else ""
        if not scheme:
            roots.append(str(Path(user).expanduser().resolve()))
        elif scheme in ("s3", "gs", "gcs", "az", "abfs", "abfss"):  # the receiver's object stores
            roots.append(user)
        return roots

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
        # Receiver first: it drains what it has accepted into MLflow while MLflow still runs.
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self._wrote_token:
            self.token_path.unlink(missing_ok=True)
            self._wrote_token = False

    def alive(self) -> list[str]:
        """Names of children that died unexpectedly."""
        return [c.name for c in self.children if not c.running()]

    # output ----------------------------------------------------------------------------
    def env_lines(self) -> list[str]:
        lines = [f"export OTEL_EXPORTER_OTLP_ENDPOINT={self.otlp_http_url}"]
        if os.environ.get(TOKEN_ENV) == self.token:  # the operator's: not echoed
            lines.append(
                'export OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20$' + TOKEN_ENV + '"'
            )
        else:
            lines.append(f'export OTEL_EXPORTER_OTLP_HEADERS="{otlp_headers(self.token)}"')
        lines.append(f"export {CAPTURE_ENV}=true   # optional: also capture prompts, outputs, tool I/O")
        return lines

    def summary(self) -> str:
        return "\n".join([
            "",
            "inspect-otel stack is up",
            f"  MLflow UI        {self.mlflow_url}",
            f"  OTLP/HTTP        {self.otlp_http_url}   (receiver -> MLflow)",
            f"  OTLP/gRPC        {self.otlp_grpc_url}",
            f"  MLflow store     {redact_uri(self.store_uri)} ({self.mlflow_workers} "
            f"worker{'s' if self.mlflow_workers > 1 else ''})",
            f"  data             {self.data_dir.resolve()}",
            f"  logs             {(self.data_dir / 'logs').resolve()}",
            "",
            "In the shell where you run `inspect eval`:",
            *("  " + line for line in self.env_lines()),
            "",
        ])


def otlp_headers(token: str) -> str:
    """OTEL_EXPORTER_OTLP_HEADERS carrying the receiver token (the SDK URL-decodes values)."""
    return f"authorization=Bearer%20{token}"


def running_stack_token(data_dir: Path) -> str | None:
    """The token a running ``inspect-otel up`` of ``data_dir`` uses: the operator's, or the one
    it generated."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    try:
        return (data_dir / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


# ----------------------------------------------------------------------------- signals


class _Terminate(Exception):
    pass


def install_sigterm_handler() -> Callable[[], None]:
    """Turn SIGTERM into an exception so cleanup runs as for Ctrl-C; returns an undo."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):  # noqa: ARG001
        raise _Terminate()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def wait_forever(stack: EmbeddedStack, out: TextIO) -> int:
    """Block until Ctrl-C/SIGTERM (0) or a child dies (1)."""
    try:
        while True:
            dead = stack.alive()
            if dead:
                for child in stack.children:
                    if child.name in dead:
                        out.write(f"{child.name} stopped unexpectedly. Last lines of "
                                  f"{child.log_path}:\n{child.log_tail()}\n")
                return 1
            time.sleep(1.0)
    except (KeyboardInterrupt, _Terminate):
        return 0


# --------------------------------------------------------------------------------- CLI


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path,
        default=data_dir(),
        help=f"where MLflow's sqlite database, artifacts, the receiver spool and logs live "
             f"(env {DATA_DIR_ENV}; default ~/.inspect-otel)",
    )
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    parser.add_argument("--mlflow-port", type=int, default=DEFAULT_MLFLOW_PORT,
                        help="MLflow UI/API port (default 5000)")
    parser.add_argument("--port", type=int, default=DEFAULT_HTTP_PORT,
                        help="OTLP/HTTP port of the receiver (default 4318)")
    parser.add_argument("--grpc-port", type=int, default=DEFAULT_GRPC_PORT,
                        help="OTLP/gRPC port of the receiver (default 4317)")
    parser.add_argument(
        "--backend-store-uri", default=os.environ.get(BACKEND_STORE_ENV) or None,
        help=f"MLflow's backend store, e.g. postgresql://user:password@host:5432/mlflow "
             f"(needs `pip install 'inspect-otel[postgres]'`; env {BACKEND_STORE_ENV}; default "
             "sqlite under --data-dir). Artifacts stay under --data-dir.",
    )
    parser.add_argument(
        "--workers", type=int, default=None,
        help="MLflow server workers (default 1 on sqlite, which serialises writers; 2-4 by CPU "
             "count on a database server such as PostgreSQL)",
    )


def stack_from_args(args: argparse.Namespace, out: TextIO) -> EmbeddedStack:
    return EmbeddedStack(
        data_dir=Path(args.data_dir), host=args.host, mlflow_port=args.mlflow_port,
        http_port=args.port, grpc_port=args.grpc_port,
        backend_store_uri=args.backend_store_uri, workers=args.workers, out=out,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stack_arguments(parser)


def main(args: argparse.Namespace) -> int:
    out = sys.stderr
    stack = stack_from_args(args, out)
    try:
        stack.preflight()  # before any other output: a bad port or store is one line
    except StackError as exc:
        out.write(f"error: {exc}\n")
        return 1
    undo = install_sigterm_handler()
    try:
        out.write(f"Starting MLflow and the inspect-otel receiver (data in {stack.data_dir})\n")
        try:
            stack.start()
        except StackError as exc:
            out.write(f"error: {exc}\n")
            return 1
        sys.stdout.write(stack.summary() + "Press Ctrl-C to stop.\n")
        sys.stdout.flush()
        code = wait_forever(stack, out)
        out.write("\nStopping ...\n")
        return code
    except (KeyboardInterrupt, _Terminate):
        out.write("\nInterrupted, stopping ...\n")
        return 130
    finally:
        stack.stop()
        undo()
        out.write("Stopped.\n")
