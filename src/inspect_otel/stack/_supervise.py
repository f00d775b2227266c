"""``up`` supervises: a receiver that dies is started again, with a growing pause; MLflow that
dies ends the stack with one line.

Why the asymmetry: the receiver holds no state outside its spool (a durable sqlite file), so a
new one resumes where the old one stopped, and evals only ever talk to it: restarting it is the
whole cure for a crash. MLflow is the store and the UI; if it dies, something is wrong with the
store, the disk or the machine, and a restart loop would hide that while the receiver piles up
data it cannot write. Its data and the receiver's spool stay on disk: ``up`` again resumes.

The pause after a crash doubles from ``first_s`` to ``max_s`` while the receiver keeps dying
within ``stable_s`` of its start, so a receiver that cannot start (a port taken, a broken
environment) costs one process start per ``max_s``, never a busy loop. Every exit is reported
with its exit code; the third in a row also shows the last lines of the receiver's log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from ._embedded import MLFLOW, RECEIVER, EmbeddedStack
from ._process import ChildProcess, exit_description
from ._signals import STOP_SIGNALS

POLL_S = 0.5
CRASH_LOOP = 3  # exits in a row after which the log's last lines are shown
TAIL_LINES = 12


@dataclass(frozen=True)
class Backoff:
    first_s: float = 1.0
    factor: float = 2.0
    max_s: float = 30.0
    stable_s: float = 60.0  # a receiver that ran this long before it died starts a new count

    def delay(self, in_a_row: int) -> float:
        return min(self.max_s, self.first_s * self.factor ** max(0, in_a_row - 1))


RESTART_BACKOFF = Backoff()


@dataclass
class _Restarts:
    """The receiver's restart state between two looks."""

    in_a_row: int = 0
    total: int = 0
    due_at: float | None = None  # when the next start is due (the receiver is down until then)
    awaiting_health: bool = False  # restarted, not yet announced back


def _indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def supervise(stack: EmbeddedStack, out: TextIO, backoff: Backoff = RESTART_BACKOFF,
              poll_s: float = POLL_S) -> int:
    """Block until Ctrl-C or SIGTERM (0) or MLflow dies (1), restarting the receiver each time
    it dies."""
    state = _Restarts()
    try:
        while True:
            mlflow, receiver = stack.child(MLFLOW), stack.child(RECEIVER)
            if mlflow is None or receiver is None:
                return 1
            if not mlflow.running():
                _mlflow_died(stack, mlflow, out)
                return 1
            now = time.monotonic()
            if state.due_at is None and not receiver.running():
                _receiver_died(receiver, state, backoff, now, out)
            elif state.due_at is not None and now >= state.due_at:
                stack.restart(receiver)
                state.due_at, state.awaiting_health = None, True
            elif state.awaiting_health and receiver.running() and stack.receiver_healthy():
                state.awaiting_health = False
                out.write(f"receiver is back on {stack.otlp_http_url} (restart "
                          f"{state.total}).\n")
                out.flush()
            time.sleep(poll_s)
    except STOP_SIGNALS:
        return 0


def _receiver_died(receiver: ChildProcess, state: _Restarts, backoff: Backoff, now: float,
                   out: TextIO) -> None:
    ran = now - receiver.started_at
    state.in_a_row = 1 if ran >= backoff.stable_s else state.in_a_row + 1
    state.total += 1
    delay = backoff.delay(state.in_a_row)
    state.due_at, state.awaiting_health = now + delay, False
    how = exit_description(receiver.returncode)
    receiver.note(f"exited with {how} after {ran:.0f}s; restarting in {delay:g}s")
    repeat = f", {state.in_a_row} times in a row" if state.in_a_row > 1 else ""
    out.write(f"receiver exited with {how} after {ran:.0f}s{repeat}; restarting it in "
              f"{delay:g}s (MLflow keeps running; log: {receiver.log_path})\n")
    if state.in_a_row == CRASH_LOOP:
        out.write(f"  the receiver keeps exiting; last lines of its log:\n"
                  f"{_indented(receiver.log_tail(TAIL_LINES))}\n")
    out.flush()


def _mlflow_died(stack: EmbeddedStack, mlflow: ChildProcess, out: TextIO) -> None:
    how = exit_description(mlflow.returncode)
    mlflow.note(f"exited with {how}; the stack stops")
    out.write(f"error: MLflow exited with {how}: stopping the stack (its store and the "
              f"receiver's spool are kept in {stack.data_dir}; `inspect-otel up` again resumes). "
              f"Last lines of {mlflow.log_path}:\n{_indented(mlflow.log_tail(TAIL_LINES))}\n")
    out.flush()
