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
import requests

from tests.stack.conftest import Proc, http_ok, kill_mentioning, wait_for
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


def _run_cli(args: list[str], tmp: Path, name: str, env: dict[str, str] | None = None) -> Proc:
    log_dir = tmp / "out"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_cli(*args), stdout=log, stderr=subprocess.STDOUT,
                                env={**_clean_env(), **(env or {})}, cwd=str(tmp),
                                stdin=subprocess.DEVNULL,
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
    up = _run_cli(["up", "--data-dir", str(data), "--experiment", "up-experiment", *ports],
                  tmp_path, "up")
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
        # the experiment the receiver writes to, printed with the URLs
        assert re.search(rf"experiment\s+up-experiment\s+{re.escape(mlflow_url)}/#/experiments",
                         out), out
        assert "export OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true" in out
        assert http_ok(mlflow_url + "/health") and http_ok(otlp_url + "/health")
        assert (data / "mlflow" / "mlflow.db").exists()
        # a generated receiver token, printed as the line to export; the data directory 0700
        token = re.search(r'export OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20([\w-]{40,})"',
                          out).group(1)
        assert (data / "receiver.token").read_text().strip() == token
        assert (data / "receiver.token").stat().st_mode & 0o777 == 0o600
        assert data.stat().st_mode & 0o777 == 0o700
        assert token not in (data / "logs" / "receiver.log").read_text()
        empty = b""  # an empty ExportTraceServiceRequest
        headers = {"Content-Type": "application/x-protobuf"}
        assert requests.post(otlp_url + "/v1/traces", data=empty, headers=headers,
                             timeout=10).status_code == 401
        assert requests.post(otlp_url + "/v1/traces", data=empty, timeout=10, headers={
            **headers, "Authorization": f"Bearer {token}"}).status_code == 200
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
        found = requests.get(f"{mlflow_url}/api/2.0/mlflow/experiments/get-by-name",
                             params={"experiment_name": "up-experiment"}, timeout=10)
        assert found.status_code == 200, found.text  # the demo's eval went there
        # the reused stack was left running
        assert up.alive() and http_ok(mlflow_url + "/health")

        up.signal(signal.SIGTERM)
        assert up.proc.wait(90) == 0, _text(up)
        assert "Stopped." in _text(up)
        assert not (data / "receiver.token").exists()
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


# --------------------------------------------------------------------- MLflow on PostgreSQL


def test_up_on_postgres_with_several_workers(tmp_path: Path, postgres_server) -> None:
    """`inspect-otel up --workers 2` with MLFLOW_BACKEND_STORE_URI=postgresql://... (the flag
    `--backend-store-uri` takes the same path, see the next test): MLflow runs on the database
    with two workers, the receiver (unchanged) writes an eval into it, the password shows
    nowhere (output, logs, any process's command line), and SIGTERM stops everything."""
    from mlflow import MlflowClient

    from tests.receiver.mlflow_view import check_eval, snapshot
    from tests.receiver.synth import SynthEval

    uri = postgres_server.create_database("up_stack")
    data = tmp_path / "data"
    ports = _ports()
    up = _run_cli(["up", "--data-dir", str(data), "--workers", "2", *ports], tmp_path, "up",
                  env={"MLFLOW_BACKEND_STORE_URI": uri})
    try:
        wait_for(lambda: up.alive() and "Press Ctrl-C" in _text(up) or not up.alive(),
                 300, "`inspect-otel up` on PostgreSQL to report the stack up")
        assert up.alive(), _text(up)
        out = _text(up)
        assert postgres_server.password not in out
        for log in (data / "logs").iterdir():  # nor in the logs, nor in `ps` (MLflow's argv)
            assert postgres_server.password not in log.read_text(), log.name
        stack_cmds = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _alive(_descendants(up.proc.pid))]
        assert len(stack_cmds) >= 3 and not any(postgres_server.password.encode() in c for c in stack_cmds)
        store = f"postgresql://postgres:***@127.0.0.1:{postgres_server.port}/up_stack (2 workers)"
        assert f"MLflow store     {store}" in out, out
        assert not (data / "mlflow" / "mlflow.db").exists(), "no sqlite store next to PostgreSQL"
        wait_for(lambda: (data / "logs" / "mlflow.log").read_text().count(
            "Started server process") == 2, 60, "MLflow's two workers to start")

        ev = SynthEval(run_id="up-on-postgres", samples=2, scorers=("match",)).build()
        otlp_url = f"http://127.0.0.1:{_flag(ports, '--port')}"
        token = (data / "receiver.token").read_text().strip()  # the one `up` generated
        for sig, body in ev.batches(size=20):
            r = requests.post(f"{otlp_url}/v1/{sig}", data=body, timeout=30, headers={
                "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        wait_for(lambda: requests.get(otlp_url + "/health", timeout=5, headers={
            "Authorization": f"Bearer {token}"}).json()["idle"], 180,
                 "the receiver to apply the eval")
        mlflow_url = f"http://127.0.0.1:{_flag(ports, '--mlflow-port')}"
        check_eval(snapshot(MlflowClient(mlflow_url), "inspect_ai", ev.run_id), ev)
        # ... and it is PostgreSQL that holds it
        rows = postgres_server.execute("SELECT count(*) FROM runs", "up_stack")
        assert rows[0][0] == 2  # the Inspect run and its task run

        up.signal(signal.SIGTERM)
        assert up.proc.wait(90) == 0, _text(up)
        for flag in ("--mlflow-port", "--port", "--grpc-port"):
            assert _port_free(_flag(ports, flag)), f"{flag} still bound"
    finally:
        up.stop()
        kill_mentioning(str(tmp_path))


_NO_PSYCOPG = ("import sys; sys.modules['psycopg'] = None; "  # as if the extra were not installed
               "from inspect_otel.cli import main; sys.exit(main())")


@pytest.mark.parametrize("case", ["refused", "password", "no-database", "no-driver", "scheme"])
def test_up_bad_backend_store_is_one_line(case: str, tmp_path: Path, postgres_server) -> None:
    """A store MLflow could not use: `up` exits 1 with one line on stderr naming the store
    (password masked) and the cause, before it starts or creates anything."""
    pg = postgres_server
    uri, want = {
        "refused": (f"postgresql://postgres:{pg.password}@127.0.0.1:{free_port()}/mlflow",
                    "Connection refused"),
        "password": (f"postgresql://postgres:wrong-{pg.password}@127.0.0.1:{pg.port}/postgres",
                     'password authentication failed for user "postgres"'),
        "no-database": (pg.uri("no_such_db"), 'database "no_such_db" does not exist'),
        "no-driver": (pg.uri("postgres"), "pip install 'inspect-otel[postgres]'"),
        "scheme": (pg.uri("postgres").replace("postgresql://", "postgres://"),
                   "write postgresql://"),
    }[case]
    data = tmp_path / "data"
    args = ["up", "--data-dir", str(data), "--backend-store-uri", uri, *_ports()]
    cmd = [sys.executable, "-c", _NO_PSYCOPG, *args] if case == "no-driver" else _cli(*args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=_clean_env(),
                       cwd=str(tmp_path))
    assert p.returncode == 1
    assert p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ") and want in lines[0], lines[0]
    assert ":***@" in lines[0] and pg.password not in p.stderr
    assert not data.exists(), "nothing is started or created"
