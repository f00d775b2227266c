"""`inspect-otel scout-import`: OTLP files or MLflow traces -> an Inspect Scout transcript database.

    inspect-otel scout-import --otlp traces.jsonl [more.jsonl ...] -T ./transcripts
    inspect-otel scout-import --mlflow-uri http://127.0.0.1:5000 --experiment evals -T ./transcripts
    scout scan scanner.py -T ./transcripts

Re-running adds nothing: transcript ids are stable and ids already in the database are skipped
before any mapping. Exit status: 0 when everything was read, 1 when some records could not be read
(the rest is imported and each bad record is reported), 2 when the source cannot be read at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_MAX_PROBLEM_LINES = 20


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date/time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return value


def _positive_mb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 4096:  # a length prefix cannot announce more than 4 GiB anyway
        raise argparse.ArgumentTypeError(f"not a size in MB between 0 and 4096: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--otlp", nargs="+", metavar="FILE",
                        help="OTLP files written by the Collector's file exporter (JSON lines or "
                             "protobuf, optionally zstd); rotated files in order")
    source.add_argument("--mlflow-uri", metavar="URI", help="MLflow tracking server to read")
    parser.add_argument("--experiment", metavar="NAME",
                        help="MLflow experiment (default: MLFLOW_EXPERIMENT_NAME or 'Default')")
    parser.add_argument("--run", metavar="RUN_ID",
                        help="only traces linked to this MLflow run (an Inspect run's parent run "
                             "includes its task runs)")
    parser.add_argument("-T", "--transcripts", required=True, metavar="DIR",
                        help="Scout transcript database to write (created if missing)")
    parser.add_argument("--limit", type=_positive, metavar="N",
                        help="import at most the first N transcripts")
    parser.add_argument("--from", dest="from_time", type=_when, metavar="ISO",
                        help="only traces that started at or after this time")
    parser.add_argument("--to", dest="to_time", type=_when, metavar="ISO",
                        help="only traces that started before this time")
    parser.add_argument("--max-record-mb", type=_positive_mb, default=None, metavar="MB",
                        help="largest OTLP file record (JSON line or protobuf frame) read; "
                             "longer ones are skipped and reported (default 64)")


def _missing_extra() -> str | None:
    try:
        import inspect_scout  # noqa: F401
    except ImportError:
        return "needs Inspect Scout: pip install 'inspect-otel[scout]'"
    return None


def _progress(enabled: bool) -> tuple[Any, Any]:
    if not enabled:
        return contextlib.nullcontext(), lambda: None
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("transcripts imported: {task.completed}"),
                        TimeElapsedColumn(), transient=True)
    task = progress.add_task("transcripts", total=None)
    return progress, lambda: progress.advance(task)


async def _run(args: argparse.Namespace, report: Any, show_progress: bool) -> None:
    import os

    from inspect_scout import transcripts_db
    from inspect_scout._display._display import init_display_type

    from . import mlflow_transcripts, otlp_transcripts

    init_display_type("none")  # our progress bar and summary line instead of Scout's
    progress_cm, advance = _progress(show_progress)
    async with transcripts_db(str(args.transcripts)) as db:
        existing = set(await db.transcript_ids())
        if args.otlp:
            source = otlp_transcripts(args.otlp, limit=args.limit, from_time=args.from_time,
                                      to_time=args.to_time, exclude=existing, report=report,
                                      max_record_mb=args.max_record_mb)
        else:
            experiment = args.experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
            source = mlflow_transcripts(experiment, args.mlflow_uri, args.run, args.from_time,
                                        args.to_time, args.limit, exclude=existing, report=report)

        async def counted() -> Any:
            async for transcript in source:
                advance()
                yield transcript

        with progress_cm:
            await db.insert(counted())


def main(args: argparse.Namespace) -> int:
    prog = "inspect-otel scout-import"
    problem = _missing_extra()
    if problem is None and args.mlflow_uri:
        try:
            import mlflow  # noqa: F401
        except ImportError:
            problem = "reading MLflow needs MLflow: pip install 'inspect-otel[mlflow]'"
    if problem is None and not args.mlflow_uri and (args.experiment or args.run):
        problem = "--experiment and --run select MLflow traces: use them with --mlflow-uri"
    if problem is None and args.from_time and args.to_time and args.from_time >= args.to_time:
        problem = "--from must be earlier than --to"
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2

    from . import ImportReport, MlflowSourceError, OtlpFileError

    report = ImportReport()
    try:
        asyncio.run(_run(args, report, sys.stderr.isatty()))
    except (OtlpFileError, MlflowSourceError) as ex:
        print(f"{prog}: {ex}", file=sys.stderr)
        return 2
    except OSError as ex:  # the database directory: permissions, disk full, ...
        print(f"{prog}: {args.transcripts}: {ex.strerror or ex}", file=sys.stderr)
        return 2

    source = (f"{len(args.otlp)} file{'s' if len(args.otlp) != 1 else ''}" if args.otlp
              else f"MLflow {args.mlflow_uri}")
    if report.traces == 0 and not report.problems:
        where = (", ".join(args.otlp) if args.otlp else
                 f"experiment {args.experiment or 'Default'!r} at {args.mlflow_uri}"
                 + (f", run {args.run}" if args.run else ""))
        print(f"{prog}: no traces found in {where}", file=sys.stderr)
        return 1
    skipped = [f"{n} {what}" for n, what in (
        (report.skipped_existing, "already in the database"),
        (report.context_traces, "run/task traces"),
        (report.other_traces, "traces without GenAI spans"),
        (report.out_of_range, "outside --from/--to"),
        (len(report.problems), "unreadable records"),
    ) if n]
    print(f"imported {report.transcripts} transcripts into {Path(args.transcripts)} from "
          f"{report.traces} traces ({source})" + (f"; skipped {', '.join(skipped)}" if skipped
                                                    else ""))
    for problem_record in report.problems[:_MAX_PROBLEM_LINES]:
        print(f"{prog}: skipped {problem_record}", file=sys.stderr)
    if len(report.problems) > _MAX_PROBLEM_LINES:
        print(f"{prog}: ... and {len(report.problems) - _MAX_PROBLEM_LINES} more unreadable "
              "records", file=sys.stderr)
    return 1 if report.problems else 0
