"""`inspect-otel compare` benchmark: two logs of 2,000 samples x 5 epochs.

The logs are written by Inspect's own ``write_eval_log`` from a real offline eval's sample
(mockllm), copied 10,000 times with new ids, epochs, scores (three scorers, one dict-valued), a
``topic`` metadata key and a transcript of a few KB each. Every measurement runs in a fresh
process; the table gives medians with [min-max] over the repeats:

- ``imports``: the modules compare needs, nothing read (the fixed cost of a process);
- ``read_eval_log``: plain ``read_eval_log`` of both logs, the baseline (what reading two logs
  costs with transcripts: what a comparison built on full logs holds in memory);
- ``compare_evals``: ``compare_evals(a, b)`` (summaries only, statistics, bootstrap);
- ``compare_evals --cluster``: the same with clustered standard errors;
- ``cli``: ``inspect-otel compare A B --json FILE`` as a user runs it (imports included).

Usage: .venv/bin/python bench/compare.py [--samples 2000] [--epochs 5] [--repeats 3]
                                         [--json PATH] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPICS = ("algebra", "geometry", "history", "biology", "chemistry", "law", "music", "physics")


# --- the logs ------------------------------------------------------------------------------------
def make_logs(folder: Path, samples: int, epochs: int) -> tuple[str, str]:
    """Two logs of ``samples`` x ``epochs``, made with Inspect's own writer."""
    import random

    from inspect_ai import Task, eval
    from inspect_ai.dataset import Sample
    from inspect_ai.log import write_eval_log
    from inspect_ai.model import ModelOutput, ModelUsage
    from inspect_ai.scorer import Score, Target, match, mean, scorer
    from inspect_ai.solver import TaskState, generate

    @scorer(metrics={"*": [mean()]})
    def rubric():
        async def score(state: TaskState, target: Target) -> Score:
            return Score(value={"accuracy": 1.0, "style": 0.5})

        return score

    def respond(input, tools, tool_choice, config):  # noqa: ANN001
        output = ModelOutput.from_content("mockllm/model", "42 " + "because " * 150)
        output.usage = ModelUsage(input_tokens=600, output_tokens=300, total_tokens=900)
        return output

    question = "Explain, step by step, why the answer is 42. " * 30  # ~1.4 KB of input
    template = eval(
        Task(dataset=[Sample(id=0, input=question, target="42")], solver=generate(),
             scorer=[match(location="begin"), rubric()]),
        model="mockllm/model", model_args={"custom_outputs": respond}, display="none",
        log_dir=str(folder / "template"),
    )[0]
    sample = template.samples[0]
    paths = []
    for side, skill in (("baseline", 0.60), ("candidate", 0.63)):
        rng = random.Random(side)
        ease = random.Random(0)  # the same question difficulty on both sides
        difficulty = [ease.random() for _ in range(samples)]
        rows = []
        for i in range(samples):
            for epoch in range(1, epochs + 1):
                correct = rng.random() < skill * 2 * (1 - difficulty[i]) + 0.1
                rows.append(sample.model_copy(update={
                    "id": f"q{i:05d}", "epoch": epoch, "uuid": f"{side}-{i}-{epoch}",
                    "metadata": {"topic": TOPICS[i % len(TOPICS)], "index": i},
                    "scores": {
                        "match": Score(value="C" if correct else "I", answer="42"),
                        "rubric": Score(value={"accuracy": float(correct),
                                               "style": round(rng.random(), 3)}),
                    },
                    "total_time": 2.0 + rng.random() * 3,
                }))
        log = template.model_copy(update={"samples": rows})
        log.eval.config.epochs = epochs
        path = str(folder / f"{side}.eval")
        write_eval_log(log, path)
        paths.append(path)
    return paths[0], paths[1]


# --- one measurement, in a fresh process --------------------------------------------------------------
def child(mode: str, a: str, b: str) -> dict:
    start = time.perf_counter()
    if mode == "cli":  # the command as a user runs it (timed from process start by the parent)
        import contextlib
        import io

        from inspect_otel.cli import main

        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["compare", a, b, "--json", os.devnull])
        return {"mode": mode, "code": code, "import_s": 0.0, "work_s": time.perf_counter() - start,
                "peak_rss": peak_rss()}
    from inspect_ai.log import read_eval_log

    from inspect_otel.compare import compare_evals
    from inspect_otel.compare import _readers, _stats  # noqa: F401

    imported = time.perf_counter()
    detail: dict = {}
    if mode == "read_eval_log":
        logs = [read_eval_log(a), read_eval_log(b)]
        detail["samples"] = sum(len(x.samples or []) for x in logs)
    elif mode.startswith("compare_evals"):
        c = compare_evals(a, b, cluster="topic" if "cluster" in mode else None)
        detail["scorers"] = {s.scorer: [s.n, s.difference, s.p_adjusted] for s in c.scorers}
    end = time.perf_counter()
    return {"mode": mode, "import_s": imported - start, "work_s": end - imported,
            "peak_rss": peak_rss(), **detail}


def peak_rss() -> int:
    """This process's own peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak over
    fork and exec, so every child would report at least the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_env() -> dict[str, str]:
    # Bytecode caches as a user has them (this workplace sets PYTHONDONTWRITEBYTECODE, which
    # makes every process compile Inspect from source: seconds that are not compare's).
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(mode: str, a: str, b: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", mode, a, b], cwd=ROOT,
                          capture_output=True, text=True, env=child_env())
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


MODES = ("imports", "read_eval_log", "compare_evals", "compare_evals --cluster", "cli")


def spread(values: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-" \
           f"{fmt.format(max(values))}]"


def table(result: dict) -> str:
    runs = result["runs"]
    base = [r for r in runs if r["mode"] == "read_eval_log"]
    lines = ["| measurement | work s | process wall s | peak RSS MB | work vs read_eval_log |",
             "|---|---|---|---|---|"]
    base_work = statistics.median(r["work_s"] for r in base)
    for mode in MODES:
        rows = [r for r in runs if r["mode"] == mode]
        if not rows:
            continue
        work = [r["work_s"] for r in rows]
        ratio = statistics.median(work) / base_work if mode not in ("imports", "cli") else None
        lines.append(
            f"| {'`inspect-otel compare A B --json F` (process)' if mode == 'cli' else mode} | "
            f"{spread(work, '{:.2f}')} | {spread([r['wall_s'] for r in rows], '{:.2f}')} | "
            f"{spread([r['peak_rss'] / 2**20 for r in rows], '{:.0f}')} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="write the raw results here")
    parser.add_argument("--work-dir", default=None,
                        help="keep the logs here and reuse them next time (default: a temp dir)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "A", "B"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="inspect-otel-bench-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    marker = work / "logs.json"
    shape = {"samples": args.samples, "epochs": args.epochs}
    if marker.exists() and json.loads(marker.read_text()) == shape:  # same logs as last time
        a, b = str(work / "baseline.eval"), str(work / "candidate.eval")
    else:
        a, b = make_logs(work, args.samples, args.epochs)
        marker.write_text(json.dumps(shape))
    made = time.perf_counter() - started
    measure("cli", a, b)  # warm-up: writes the bytecode caches, not counted
    runs = []
    for _ in range(args.repeats):
        for mode in MODES:  # interleaved: load drifts hit every mode alike
            runs.append(measure(mode, a, b))
    result = {
        "samples": args.samples, "epochs": args.epochs, "repeats": args.repeats,
        "log_bytes": [os.path.getsize(a), os.path.getsize(b)], "make_logs_s": made,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg": os.getloadavg()},
        "runs": runs,
    }
    print(f"{args.samples} samples x {args.epochs} epochs per log "
          f"({result['log_bytes'][0] / 2**20:.1f} MB and {result['log_bytes'][1] / 2**20:.1f} MB "
          f".eval), {args.repeats} repeats, load average {os.getloadavg()[0]:.1f}\n")
    print(table(result))
    scorers = next(r for r in runs if r["mode"] == "compare_evals")["scorers"]
    print("\n" + "\n".join(f"  {k}: n={v[0]} difference={v[1]:+.4f} p_adj={v[2]:.3g}"
                           for k, v in scorers.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
