"""`inspect-otel up` and `inspect-otel demo` as a user runs them: real processes, real signals.

Ports are free ones picked per test, so these tests never collide with a stack a developer has
running on the defaults.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.stack.conftest import Proc, http_ok, kill_mentioning, processes_mentioning, wait_for
from tests.support.mlflow_server import free_port

HERE = Path(__file__).resolve().parent
# The line `up` prints for the token: it reads the kept file, the token itself is never echoed.
HEADER_LINE = re.compile(
    r'export OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer%20\$\(cat (\S+)\)"')


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
    # The stack must work from a plain shell: no OTEL_* or MLFLOW_* settings inherited, and
    # Inspect's log directory its default (the suite points it elsewhere).
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "INSPECT_OTEL_", "MLFLOW_")) and k != "INSPECT_LOG_DIR"}


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


def _stopping_lines(data: Path) -> int:
    """How many times a stack began stopping its MLflow (its note in MLflow's log)."""
    return (data / "logs" / "mlflow.log").read_text(errors="replace").count("stopping: SIGTERM")


def _exports(out: str) -> list[str]:
    """The lines `up` tells the user to run in the shell of `inspect eval`."""
    return [ln.strip() for ln in out.splitlines() if ln.strip().startswith("export ")]


def _kept_token(out: str) -> tuple[Path, str]:
    match = HEADER_LINE.search(out)
    assert match, out
    path = Path(match.group(1))
    return path, path.read_text().strip()


def _wait_up(p: Proc, timeout: float = 420) -> str:
    wait_for(lambda: p.alive() and "Press Ctrl-C" in _text(p) or not p.alive(),
             timeout, f"`inspect-otel {p.name}` to report the stack up")
    assert p.alive(), _text(p)
    return _text(p)


def _child_pid(up: Proc, marker: str) -> int:
    """The pid of the stack's child whose command line holds ``marker``."""
    for pid in _alive(_descendants(up.proc.pid)):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmd and os.getpgid(pid) == pid:  # the group's leader, not a worker of it
            return pid
    raise AssertionError(f"no child process of `up` runs {marker!r}")


def _post_empty(otlp_url: str, token: str | None) -> int:
    headers = {"Content-Type": "application/x-protobuf"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(otlp_url + "/v1/traces", data=b"", headers=headers, timeout=10).status_code


def _stopped_everything(up: Proc, data: Path, ports: list[str]) -> None:
    wait_for(lambda: not processes_mentioning(str(data)), 30, "the stack's processes to exit")
    for flag in ("--mlflow-port", "--port", "--grpc-port"):
        assert _port_free(_flag(ports, flag)), f"{flag} still bound"


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
        # a generated receiver token, kept 0600 in the data directory (0700), which the printed
        # header line reads: the token itself shows nowhere
        path, token = _kept_token(out)
        assert path == (data / "receiver.token").resolve() and len(token) >= 40
        assert path.stat().st_mode & 0o777 == 0o600
        assert data.stat().st_mode & 0o777 == 0o700
        assert "receiver token   generated, kept in" in out
        assert token not in out and token not in (data / "logs" / "receiver.log").read_text()
        assert _post_empty(otlp_url, None) == 401  # an empty ExportTraceServiceRequest
        assert _post_empty(otlp_url, token) == 200
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
        wait_for(lambda: not _alive(children), 30, "the stack's child processes to exit")
        for flag in ("--mlflow-port", "--port", "--grpc-port"):
            assert _port_free(_flag(ports, flag)), f"{flag} still bound"

        # The token outlives the stack: started again, `up` keeps it, prints the same lines,
        # and what a shell exported before the restart is still accepted.
        assert path.read_text().strip() == token and path.stat().st_mode & 0o777 == 0o600
        up = _run_cli(["up", "--data-dir", str(data), "--experiment", "up-experiment", *ports],
                      tmp_path, "up-again")
        again = _wait_up(up)
        assert _exports(again) == _exports(out) and len(_exports(out)) == 3
        assert "receiver token   kept in" in again and token not in again
        assert _post_empty(otlp_url, token) == 200
        # Ctrl-C while the receiver is down (between its death and its restart) stops all; a
        # second Ctrl-C while MLflow will not stop (frozen here) kills what is left at once
        mlflow_pid = _child_pid(up, "mlflow server")
        os.kill(_child_pid(up, "inspect_otel.cli receiver"), signal.SIGKILL)
        wait_for(lambda: "receiver exited with signal SIGKILL" in _text(up), 30,
                 "`up` to notice the receiver died")
        os.killpg(mlflow_pid, signal.SIGSTOP)
        # mlflow.log is kept across starts: the first `up` left its stopping line there already,
        # and a second SIGINT sent before the first is handled would merge with it
        stops = _stopping_lines(data)
        up.signal(signal.SIGINT)  # what Ctrl-C delivers
        wait_for(lambda: _stopping_lines(data) > stops, 60, "`up` to start stopping MLflow")
        assert up.alive()  # waiting for MLflow's grace period
        up.signal(signal.SIGINT)
        assert up.proc.wait(60) == 0, _text(up)
        text = _text(up)
        assert "Second signal: killing the stack's processes." in text, text
        assert text.rstrip().endswith("Stopped.")
        _stopped_everything(up, data, ports)
        assert path.read_text().strip() == token
    finally:
        up.stop()
        kill_mentioning(str(tmp_path))


class _HealthWatch:
    """Polls a URL from a thread: how often it answered, and every time it did not."""

    def __init__(self, url: str) -> None:
        self.url, self.ok, self.failed = url, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:  # a generous timeout: a busy single-worker MLflow on a loaded machine is slow
                fine = requests.get(self.url, timeout=15).status_code == 200
            except requests.RequestException as e:
                fine = False
                self.failed.append(type(e).__name__)
            else:
                if not fine:
                    self.failed.append("status")
            self.ok += fine

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class _PortThief:
    """Takes a port the moment it is free and holds it (a receiver restarted meanwhile cannot
    bind: a crash loop with a real cause)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        # as servers do (the receiver too): the port's closed connections wait in TIME_WAIT for
        # a minute, and without this a bind fails all that time; two listeners still cannot share
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port, self.held = port, threading.Event()
        threading.Thread(target=self._take, daemon=True).start()

    def _take(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.sock.bind(("127.0.0.1", self.port))
                self.sock.listen(1)
                self.held.set()
                return
            except OSError:
                time.sleep(0.005)

    def release(self) -> None:
        self.sock.close()


_EXIT_LINE = re.compile(r"receiver exited with (code \d+|signal \w+) after \d+s"
                        r"(?:, (\d+) times in a row)?; restarting it in (\d+)s")
_LOG_STAMP = re.compile(r"^--- (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (.*)$", re.M)


def test_up_supervises_the_receiver_and_takes_the_users_logs(tmp_path: Path) -> None:
    """The issue's items 4 and 6 on one real stack: a killed receiver comes back and takes OTLP
    while MLflow stays up; the user's own `inspect eval` (run in a shell with the printed lines,
    its logs under --log-artifact-root) lands in MLflow with its log; a receiver that cannot
    start is retried with a growing pause and reported; MLflow dying stops everything, in one
    line."""
    from mlflow import MlflowClient

    from inspect_otel.receiver import _mlflow_names
    from inspect_otel.stack._supervise import RESTART_BACKOFF

    data = tmp_path / "data"
    ports = _ports()
    mlflow_url = f"http://127.0.0.1:{_flag(ports, '--mlflow-port')}"
    otlp_url = f"http://127.0.0.1:{_flag(ports, '--port')}"
    up = _run_cli(["up", "--data-dir", str(data), "--experiment", "supervised",
                   "--log-artifact-root", "project/logs", *ports], tmp_path, "up")
    watch = None
    try:
        out = _wait_up(up)
        # the allowed roots, the operator's relative one taken from where `up` started
        roots = [str((data / "eval-logs").resolve()), str((tmp_path / "logs").resolve()),
                 str((tmp_path / "project" / "logs").resolve())]
        assert f"eval logs from   {', '.join(roots)}" in out, out
        _, token = _kept_token(out)
        mlflow_pid = _child_pid(up, "mlflow server")
        watch = _HealthWatch(mlflow_url + "/health")

        # 1. the receiver killed: back within its first pause, taking OTLP with the same token
        first = _child_pid(up, "inspect_otel.cli receiver")
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: "receiver is back" in _text(up), 120, "the receiver to come back")
        assert "receiver exited with signal SIGKILL after" in _text(up)
        assert "restarting it in 1s (MLflow keeps running" in _text(up)
        assert _child_pid(up, "inspect_otel.cli receiver") != first
        assert _post_empty(otlp_url, token) == 200

        # 2. the user's own eval, from their shell: the printed lines, `inspect eval`, logs in
        # the root given to `up`
        shutil.copy(HERE / "user_eval.py", tmp_path / "user_eval.py")  # the user's own file
        shell = "\n".join(_exports(out) + [
            f"{Path(sys.executable).with_name('inspect')} eval user_eval.py "
            "--log-dir project/logs --display none"])
        user = subprocess.run(["bash", "-c", shell], cwd=str(tmp_path), env=_clean_env(),
                              capture_output=True, text=True, timeout=300)
        assert user.returncode == 0, user.stdout[-2000:] + user.stderr[-2000:]
        (log_file,) = (tmp_path / "project" / "logs").glob("*.eval")
        client = MlflowClient(mlflow_url)

        def task_run_with_log():
            exp = client.get_experiment_by_name("supervised")
            runs = exp and client.search_runs(
                [exp.experiment_id], f"tags.`{_mlflow_names.TAG_ROLE}` = 'task'")
            run = runs[0] if runs else None
            return run if run and (_mlflow_names.TAG_LOG_ARTIFACT in run.data.tags or
                                   _mlflow_names.TAG_LOG_ARTIFACT_ERROR in run.data.tags) else None

        run = wait_for(task_run_with_log, 180, "the user's task run and its eval log")
        assert _mlflow_names.TAG_LOG_ARTIFACT_ERROR not in run.data.tags, run.data.tags
        stored = [f.path for f in client.list_artifacts(run.info.run_id,
                                                        _mlflow_names.LOG_ARTIFACT_DIR)]
        assert stored == [f"{_mlflow_names.LOG_ARTIFACT_DIR}/{log_file.name}"]

        # 3. a receiver that cannot start (its port taken): retried after 1, 2, 4 ... s,
        # each exit reported with its code, the third in a row with the log's last lines
        before = len(_EXIT_LINE.findall(_text(up)))
        thief = _PortThief(int(_flag(ports, "--port")))
        os.kill(_child_pid(up, "inspect_otel.cli receiver"), signal.SIGKILL)
        assert thief.held.wait(30), "the port was never free"
        # (the kill above counts too when the receiver had run less than a minute)
        wait_for(lambda: "the receiver keeps exiting; last lines of its log:" in _text(up)
                 and len(_EXIT_LINE.findall(_text(up))) >= before + 3, 240,
                 "`up` to report a crash loop")
        exits = _EXIT_LINE.findall(_text(up))[before:]
        assert len(exits) >= 3 and all(how == "code 1" for how, _, _ in exits[1:]), exits
        in_a_row = [int(n or 1) for _, n, _ in exits]
        delays = [int(d) for _, _, d in exits]
        assert in_a_row == list(range(in_a_row[0], in_a_row[0] + len(exits))), exits
        assert delays == [RESTART_BACKOFF.delay(n) for n in in_a_row], exits
        assert delays == sorted(delays) and delays[-1] >= 2 * delays[0], exits
        # no busy loop: each start came no sooner than its pause after the exit before it
        stamps = _LOG_STAMP.findall((data / "logs" / "receiver.log").read_text())
        pairs = [(time.mktime(time.strptime(a, "%Y-%m-%d %H:%M:%S")),
                  time.mktime(time.strptime(b, "%Y-%m-%d %H:%M:%S")), float(text.split(
                      "restarting in ")[1].rstrip("s")))
                 for (a, text), (b, _) in zip(stamps, stamps[1:]) if "restarting in" in text]
        assert len(pairs) >= 3
        assert all(started - exited >= pause - 1 for exited, started, pause in pairs), pairs
        thief.release()
        wait_for(lambda: _text(up).count("receiver is back") == 2, 120,
                 "the receiver to come back once its port is free")
        assert _post_empty(otlp_url, token) == 200

        # ... and MLflow never went down meanwhile
        watch.stop()
        assert watch.ok > 0 and watch.failed == [], watch.failed
        assert _child_pid(up, "mlflow server") == mlflow_pid

        # 4. MLflow dies: the stack stops, saying so in one line, everything with it
        os.killpg(mlflow_pid, signal.SIGKILL)
        assert up.proc.wait(90) == 1, _text(up)
        text = _text(up)
        assert re.search(r"^error: MLflow exited with signal SIGKILL: stopping the stack \(its "
                         r"store and the receiver's spool are kept in .*; `inspect-otel up` "
                         r"again resumes\)\. Last lines of \S+mlflow\.log:$", text, re.M), text
        assert text.rstrip().endswith("Stopped.")
        _stopped_everything(up, data, ports)
    finally:
        if watch is not None:
            watch.stop()
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
        assert rows[0][0] == 1  # the task run (top-level: no run for the Inspect run itself)

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
