"""`inspect-otel up` and `inspect-otel demo` as a user runs them: real processes, real signals.

Ports are free ones picked per test, so these tests never collide with a stack a developer has
running on the defaults.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack.conftest import Proc, http_ok, kill_mentioning, spawn, wait_for
from tests.support.mlflow_server import free_port


def _ports() -> list[str]:
    return ["--mlflow-port", str(free_port()), "--port", str(free_port()),
            "--grpc-port", str(free_port())]


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                         if ln.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "zombie" not in state:
            alive.add(pid)
    return alive


def _port_free(port: str) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", int(port))) != 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "inspect_otel.cli", *args]


def _clean_env() -> dict[str, str]:
    # The stack must work from a plain shell: no OTEL_* or MLFLOW_* settings inherited.
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "INSPECT_OTEL_", "MLFLOW_"))}


def _run_cli(args: list[str], tmp: Path, name: str) -> Proc:
    log_dir = tmp / "out"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_cli(*args), stdout=log, stderr=subprocess.STDOUT,
                                env=_clean_env(), cwd=str(tmp), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    return Proc(name, proc, log_path)


def _text(p: Proc) -> str:
    return p.log_path.read_text(errors="replace")


def test_up_refuses_busy_port_without_starting_anything(tmp_path: Path) -> None:
    ports = _ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(_flag(ports, "--port"))))
        busy.listen(1)
        p = _run_cli(["up", "--data-dir", str(tmp_path / "data"), *ports], tmp_path, "up")
        code = p.proc.wait(60)
    assert code == 1
    assert "already in use" in _text(p)
    assert not (tmp_path / "data" / "mlflow" / "mlflow.db").exists()


def test_up_then_demo_reuses_it_then_sigterm_stops_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = _ports()
    up = _run_cli(["up", "--data-dir", str(data), *ports], tmp_path, "up")
    try:
        wait_for(lambda: up.alive() and "Press Ctrl-C" in _text(up) or not up.alive(),
                 420, "`inspect-otel up` to report the stack up")
        assert up.alive(), _text(up)
        out = _text(up)
        mlflow_url = f"http://127.0.0.1:{_flag(ports, '--mlflow-port')}"
        otlp_url = f"http://127.0.0.1:{_flag(ports, '--port')}"
        # progress while MLflow starts, the URLs, and the two lines to export
        assert "starting MLflow" in out and "ready after" in out
        assert mlflow_url in out
        assert f"export OTEL_EXPORTER_OTLP_ENDPOINT={otlp_url}" in out
        assert "export OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true" in out
        assert http_ok(mlflow_url + "/health") and http_ok(otlp_url + "/health")
        assert (data / "mlflow" / "mlflow.db").exists()
        children = _descendants(up.proc.pid)
        assert len(children) >= 2

        demo = _run_cli(["demo", "--exit", "--data-dir", str(data), *ports], tmp_path, "demo")
        assert demo.proc.wait(400) == 0, _text(demo)
        text = _text(demo)
        assert "already running" in text
        assert re.search(r"traces in MLflow:\s+5 of 5 samples", text), text
        assert re.search(r"assessments in MLflow:\s+5 \(scores in the eval: 5\)", text), text
        assert re.search(r"includes/accuracy\s+0\.8", text), text
        assert re.search(rf"task run\s+{re.escape(mlflow_url)}/#/experiments/\d+/runs/[0-9a-f]{{32}}",
                         text), text
        # the reused stack was left running
        assert up.alive() and http_ok(mlflow_url + "/health")

        up.signal(signal.SIGTERM)
        assert up.proc.wait(90) == 0, _text(up)
        assert "Stopped." in _text(up)
        wait_for(lambda: not _alive(children), 30, "the stack's child processes to exit")
        for flag in ("--mlflow-port", "--port", "--grpc-port"):
            assert _port_free(_flag(ports, flag)), f"{flag} still bound"
    finally:
        up.stop()
        kill_mentioning(str(tmp_path))


def test_demo_starts_its_own_stack_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = _ports()
    demo = _run_cli(["demo", "--data-dir", str(data), *ports], tmp_path, "demo")
    try:
        wait_for(lambda: "press Ctrl-C" in _text(demo) or not demo.alive(),
                 600, "the demo to finish and wait for Ctrl-C")
        assert demo.alive(), _text(demo)
        text = _text(demo)
        assert re.search(r"traces in MLflow:\s+5 of 5 samples", text), text
        assert "inspect-otel stack is up" in text
        children = _descendants(demo.proc.pid)
        mlflow_url = f"http://127.0.0.1:{_flag(ports, '--mlflow-port')}"
        assert http_ok(mlflow_url + "/health"), "the stack stays up for browsing"

        demo.signal(signal.SIGINT)  # what Ctrl-C delivers
        assert demo.proc.wait(90) == 0, _text(demo)
        wait_for(lambda: not _alive(children), 30, "the stack's child processes to exit")
        for flag in ("--mlflow-port", "--port", "--grpc-port"):
            assert _port_free(_flag(ports, flag)), f"{flag} still bound"
    finally:
        demo.stop()
        kill_mentioning(str(tmp_path))


def test_demo_task_scores_offline() -> None:
    """The bundled eval itself: 5 samples, one wrong answer, one tool error, usage always set."""
    from inspect_ai import eval as inspect_eval

    from inspect_otel.demo.task import MODEL, calculator_demo, evaluate, scripted_model

    assert evaluate("(1234 + 4321) / 5") == 1111
    with pytest.raises(ValueError):
        evaluate("__import__('os')")
    log = inspect_eval(calculator_demo(), model=MODEL, model_args={"custom_outputs": scripted_model},
                       display="none", log_dir=os.environ.get("INSPECT_LOG_DIR"))[0]
    assert log.status == "success"
    values = {s.id: s.scores["includes"].value for s in log.samples}
    assert values == {"q1": "C", "q2": "C", "q3": "C", "q4": "I", "q5": "C"}
    tool_errors = [m for s in log.samples for m in s.messages
                   if m.role == "tool" and getattr(m, "error", None)]
    assert len(tool_errors) == 1
