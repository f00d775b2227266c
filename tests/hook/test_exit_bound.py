"""The documented bound is the bound: with an unreachable endpoint, an eval process exits within
INSPECT_OTEL_FLUSH_TIMEOUT plus one second of the same eval's time without telemetry, through
``eval()`` and through the ``inspect eval`` CLI alike (the SDK's exporters would otherwise keep
retrying at interpreter exit). Each case is measured against no-telemetry runs in the same test,
just before and just after; the machine is shared, so their spread is allowed on top, and a case
gets a second measurement before it counts as a failure. The console is 80 columns wide, as a
terminal's can be: the warning wraps, but the command that sends the spans again is printed whole
on a line of its own, to paste."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.otlp_sink import free_port

FLUSH_TIMEOUT_S = 3.0
ALLOWANCE_S = 1.0  # the "plus one second"

TASK = textwrap.dedent('''
    from inspect_ai import Task, task
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage, get_model
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate


    def answer(input, tools, tool_choice, config):
        output = ModelOutput.from_content("mockllm/model", "1")
        output.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return output


    @task
    def exit_bound():
        return Task(dataset=[Sample(id=i, input=f"q{i}", target="1") for i in range(5)],
                    solver=generate(), scorer=match(),
                    model=get_model("mockllm/model", custom_outputs=answer))
''')


def _command(runner: str) -> list[str]:
    # Run in the task's directory: Inspect resolves a task file relative to it.
    if runner == "eval()":
        code = "from inspect_ai import eval; eval('exit_bound.py', log_dir='logs', display='plain')"
        return [sys.executable, "-c", code]
    inspect_cli = Path(sys.executable).with_name("inspect")
    return [str(inspect_cli), "eval", "exit_bound.py", "--log-dir", "logs", "--display", "plain"]


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-2000:]
    return elapsed, done.stdout + done.stderr


@pytest.mark.parametrize("runner", ["eval()", "inspect eval"])
def test_a_dead_endpoint_costs_at_most_the_flush_timeout_plus_one_second(tmp_path, runner):
    (tmp_path / "exit_bound.py").write_text(TASK)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INSPECT_OTEL_"))}
    clean["COLUMNS"] = "80"  # the console wraps the warning mid-phrase
    dead = {**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "INSPECT_OTEL_FLUSH_TIMEOUT": str(FLUSH_TIMEOUT_S)}
    command = _command(runner)
    seen = []
    for _attempt in range(2):
        # The no-telemetry time is measured before and after: their mean is the baseline, their
        # spread the machine's own noise at that moment (the machine is shared).
        before, _ = _timed(command, clean, tmp_path)
        with_dead_endpoint, output = _timed(command, dead, tmp_path)
        after, _ = _timed(command, clean, tmp_path)
        # The warning stays: what was lost (Inspect's console wraps it, with the logging code's
        # place in a column of its own: words, not lines) ...
        words = re.sub(r"\s+", " ", re.sub(r"\S+\.py:\d+", "", output))
        assert "spans were not confirmed" in words, output
        # ... and the command that sends it again, whole, on one line.
        replay = [line.strip() for line in output.splitlines()
                  if re.fullmatch(r"inspect-otel export \S+\.eval", line.strip())]
        assert len(replay) == 1 and Path(replay[0].split(" ", 2)[2]).is_file(), output
        excess = with_dead_endpoint - (before + after) / 2
        noise = abs(after - before)
        seen.append(f"{excess:.2f} s (baseline {before:.2f}/{after:.2f} s)")
        if excess <= FLUSH_TIMEOUT_S + ALLOWANCE_S + noise:
            return
    pytest.fail(f"{runner}: a dead endpoint added {seen} to the process, over "
                f"INSPECT_OTEL_FLUSH_TIMEOUT={FLUSH_TIMEOUT_S:g} s + {ALLOWANCE_S:g} s")
