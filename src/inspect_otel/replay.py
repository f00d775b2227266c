"""`inspect-otel export`: send finished Inspect logs over OTLP exactly as the live hook would have.

Same mapping functions as the hook, same deterministic ids: a replayed sample is the live sample's
trace again, so re-sending is idempotent downstream. Samples are streamed one at a time and the
span queue is drained every few hundred spans, so memory stays flat for very large logs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import load_settings
from .content import ContentPolicy
from .mapping import map_run, map_sample, map_task, task_context, task_times

LOG_SUFFIXES = (".eval", ".json")
# Files Inspect writes next to logs that are not logs themselves.
_NOT_LOGS = {"eval-set.json", "logs.json", "listing.json"}


class ReplayError(Exception):
    """A log that cannot be replayed, with a message for the user."""


@dataclass
class _RunSummary:
    eval_set_id: str | None
    task_names: list[str] = field(default_factory=list)
    start_ns: int | None = None
    end_ns: int | None = None
    statuses: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    specs: list[Any] = field(default_factory=list)


@dataclass
class ReplaySummary:
    logs: int = 0
    samples: int = 0
    spans: int = 0
    results: int = 0
    failed_files: list[tuple[str, str]] = field(default_factory=list)
    lost_spans: int = 0
    cause: str | None = None  # why spans were not confirmed (refused, timeout, HTTP status, ...)
    runs: dict[str, _RunSummary] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed_files and self.lost_spans == 0


def find_logs(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Log files under ``paths`` (recursively for directories) and the paths that are unusable."""
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if (candidate.is_file() and candidate.suffix in LOG_SUFFIXES
                        and candidate.name not in _NOT_LOGS):
                    found.append(candidate)
        elif path.is_file():
            if path.suffix not in LOG_SUFFIXES:
                problems.append((str(path), "not an Inspect log (expected a .eval or .json file)"))
            else:
                found.append(path)
        else:
            problems.append((str(path), "no such file or directory"))
    return found, problems


def read_header(path: Path) -> Any:
    from inspect_ai.log import read_eval_log

    try:
        log = read_eval_log(str(path), header_only=True)
    except Exception as ex:  # inspect raises many types for foreign or corrupt files
        raise ReplayError(f"not a readable Inspect log ({type(ex).__name__}: {ex})") from ex
    if getattr(log, "eval", None) is None or not log.eval.run_id:
        raise ReplayError("not an Inspect eval log (no eval header with a run id)")
    return log


def iter_samples(path: Path) -> Iterator[Any]:
    from inspect_ai.log import read_eval_log_samples

    # "full" restores the message content the live hook saw (logs store it condensed).
    yield from read_eval_log_samples(
        str(path), all_samples_required=False, resolve_attachments="full"
    )


def replay_log(path: Path, pipeline: Any | None, policy: ContentPolicy,
               summary: ReplaySummary, progress: Any = None) -> None:
    """Send one log's samples then its task span; ``pipeline=None`` only counts (dry run)."""
    # Absolute: the task span names the log's location, and a receiver elsewhere (another
    # working directory) reads it from there.
    header = read_header(path.resolve())
    spec = header.eval
    ctx = task_context(spec, os.environ)
    errored = 0
    for sample in iter_samples(path):
        telemetry = map_sample(sample, ctx, policy)
        errored += telemetry.status == "error"
        summary.samples += 1
        summary.spans += len(telemetry.spans)
        summary.results += len(telemetry.results)
        if pipeline is not None:
            pipeline.emit_sample(telemetry, ctx.task_name, metrics_on=False)
        if progress is not None:
            progress()
    start, end = task_times(header, 0, 0)
    task_span = map_task(spec, header.plan, header, policy, errored_samples=errored,
                         start_ns=start, end_ns=end)
    summary.spans += 1
    if pipeline is not None:
        pipeline.emit_spans([task_span])
    run = summary.runs.setdefault(spec.run_id, _RunSummary(spec.eval_set_id))
    run.task_names.append(spec.task)
    run.specs.append(spec)
    run.start_ns = min(filter(None, (run.start_ns, start)), default=None)
    run.end_ns = max(filter(None, (run.end_ns, end)), default=None)
    run.statuses.add(header.status)
    if header.error is not None:
        run.errors.append(header.error.message)
    summary.logs += 1


def _run_spans(summary: ReplaySummary, policy: ContentPolicy) -> list[Any]:
    spans = []
    for run_id, run in summary.runs.items():
        if "error" in run.statuses:
            status = "error"
        elif run.statuses & {"cancelled", "started"}:
            status = "cancelled"
        else:
            status = "success"
        spans.append(map_run(run_id, run.eval_set_id, run.task_names,
                             start_ns=run.start_ns or 0, end_ns=run.end_ns or 0, status=status,
                             error=run.errors[0] if run.errors else None, policy=policy,
                             specs=run.specs))
    return spans


def export_logs(paths: Iterable[str | Path], *, dry_run: bool = False,
                show_progress: bool = False, to_file: str | Path | None = None) -> ReplaySummary:
    """Send the logs over OTLP, or with ``to_file`` write them as the Collector's file exporter
    does (OTLP/JSON lines, appended), the same spans and results without a Collector."""
    settings = load_settings()
    policy = ContentPolicy.from_settings(settings)
    files, problems = find_logs(paths)
    summary = ReplaySummary(failed_files=list(problems))
    pipeline = None
    target = None
    if not dry_run:
        from .export import TelemetryPipeline

        exporters = None
        if to_file is not None:
            from .otlp_file import otlp_file

            span_exporter, log_exporter, target = otlp_file(Path(to_file))
            exporters = (span_exporter, log_exporter)
        pipeline = TelemetryPipeline(settings, blocking=True, exporters=exporters)

    progress_cm, advance = _progress(show_progress)
    with progress_cm:
        for path in files:
            try:
                replay_log(path, pipeline, policy, summary, advance)
            except ReplayError as ex:
                summary.failed_files.append((str(path), str(ex)))
            except Exception as ex:  # a corrupt sample mid-file: report, keep going
                summary.failed_files.append((str(path), f"{type(ex).__name__}: {ex}"))
    run_spans = _run_spans(summary, policy)
    summary.spans += len(run_spans)
    if pipeline is not None:
        for span in run_spans:
            pipeline.emit_spans([span])
        report = pipeline.flush(max(settings.flush_timeout_s, 30.0))
        summary.lost_spans = report.lost
        if report.lost:
            summary.cause = pipeline.failure_cause()
        pipeline.close()
        if target is not None:
            target.close()
    return summary


def _progress(enabled: bool) -> tuple[Any, Any]:
    import contextlib

    if not enabled:
        return contextlib.nullcontext(), None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("samples sent: {task.completed}"),
                        TimeElapsedColumn(), transient=True)
    task = progress.add_task("samples", total=None)
    return progress, lambda: progress.advance(task)


# --- CLI ----------------------------------------------------------------------------------------

def _file_problem(path: str) -> str | None:
    """Why --to-file cannot write ``path`` (checked before any log is read), else None."""
    import importlib.util

    if importlib.util.find_spec("opentelemetry.exporter.otlp.json.common") is None:
        return ("--to-file needs OpenTelemetry's OTLP/JSON encoder: "
                "pip install 'inspect-otel[scout]'")
    target = Path(path)
    if target.is_dir():
        return f"--to-file {path}: is a directory"
    if not target.parent.is_dir():
        return f"--to-file {path}: no such directory {target.parent}"
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as ex:
        return f"--to-file {path}: cannot write ({ex.strerror or ex})"
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="LOG_OR_DIR",
                        help=".eval/.json log files or directories (searched recursively)")
    parser.add_argument("--endpoint", help="OTLP endpoint (sets OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument("--protocol", choices=["http/protobuf", "grpc"],
                        help="OTLP protocol (sets OTEL_EXPORTER_OTLP_PROTOCOL)")
    parser.add_argument("--to-file", metavar="PATH",
                        help="write OTLP/JSON lines (the Collector's file exporter format) to "
                             "PATH instead of sending, e.g. for scout-import --otlp; appends")
    parser.add_argument("--dry-run", action="store_true",
                        help="read the logs and print what would be sent, without sending")


def main(args: argparse.Namespace) -> int:
    if args.endpoint:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.endpoint
    if args.protocol:
        os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = args.protocol
    if args.to_file:
        problem = _file_problem(args.to_file)
        if problem:
            print(f"inspect-otel export: {problem}", file=sys.stderr)
            return 2
    elif not args.dry_run and not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                   or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        print("inspect-otel export: no endpoint; pass --endpoint or set "
              "OTEL_EXPORTER_OTLP_ENDPOINT (or use --dry-run)", file=sys.stderr)
        return 2
    for warning in load_settings().warnings:
        print(f"inspect-otel export: {warning}", file=sys.stderr)
    summary = export_logs(args.paths, dry_run=args.dry_run, show_progress=sys.stderr.isatty(),
                          to_file=args.to_file)
    verb = "would send" if args.dry_run else (f"wrote to {args.to_file}" if args.to_file
                                               else "sent")
    print(f"{verb}: {summary.logs} logs, {summary.samples} samples, {summary.spans} spans, "
          f"{summary.results} evaluation results, {len(summary.runs)} runs")
    for path, problem in summary.failed_files:
        print(f"error: {path}: {problem}", file=sys.stderr)
    if summary.lost_spans:
        cause = f": {summary.cause}" if summary.cause else ""
        print(f"error: {summary.lost_spans} spans were not confirmed by the endpoint{cause}",
              file=sys.stderr)
    return 0 if summary.ok else 1
