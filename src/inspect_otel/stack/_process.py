"""The stack's child processes (MLflow, the receiver): each in its own process group, logging to
its own file, stopped group and all; and the probes that tell whether a port answers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_S = 15.0  # SIGTERM to SIGKILL; the receiver spends up to 10 s applying what it holds
KILL_WAIT_S = 5.0


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


def connect_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def exit_description(code: int | None) -> str:
    """``code 1``, or ``signal SIGKILL`` for a process a signal ended (Popen's negative codes)."""
    if code is None:
        return "an unknown code"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def mlflow_command() -> list[str]:
    """The `mlflow` CLI of this environment (tests and benchmarks start servers with it too)."""
    exe = Path(sys.executable).with_name("mlflow")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


@dataclass
class ChildProcess:
    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str]
    cwd: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0  # time.monotonic() of the last start

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
        self.started_at = time.monotonic()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def note(self, text: str) -> None:
        """A line of the stack's own in the child's log (why it was restarted, how it ended)."""
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        except OSError:
            pass

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the whole group, SIGKILL after ``grace_s``; also reaps a child that already
        exited and whatever it left in its group."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            self.note(f"stopping: SIGTERM to its process group, SIGKILL after {grace_s:g}s")
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, KILL_WAIT_S)):
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
            proc.wait(timeout=KILL_WAIT_S)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL to the whole group at once (a second Ctrl-C: no more waiting)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
