"""Inspect Scout transcripts from OpenTelemetry GenAI traces (needs the ``scout`` extra).

Both sources are async generators of ``inspect_scout.Transcript``, for Scout's database::

    from inspect_scout import transcripts_db
    from inspect_otel.scout import otlp_transcripts

    async with transcripts_db("./transcripts") as db:
        await db.insert(otlp_transcripts(["traces.jsonl"]))

An Inspect sample trace becomes the transcript Scout itself gives that sample when it reads the
``.eval`` log (same id, fields, messages and events); another producer's GenAI trace becomes one
transcript per trace. ``inspect-otel scout-import`` is the command-line form. The mapping is in
``docs/scout.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ._otlp_file import OtlpFileError, Problem
from ._mlflow import MlflowSourceError
from ._spans import TaskInfo, Trace

if TYPE_CHECKING:
    from inspect_scout import Transcript

__all__ = [
    "ImportReport",
    "MlflowSourceError",
    "OtlpFileError",
    "mlflow_transcripts",
    "otlp_transcripts",
]


@dataclass
class ImportReport:
    """What an import saw; pass one in to read it afterwards (the CLI's summary line)."""

    traces: int = 0  # traces read from the source
    transcripts: int = 0  # transcripts produced
    skipped_existing: int = 0  # transcripts left out because ``exclude`` held their id
    context_traces: int = 0  # Inspect run/task traces (context for samples, not transcripts)
    other_traces: int = 0  # traces without GenAI spans
    out_of_range: int = 0  # traces outside --from/--to
    problems: list[Problem] = field(default_factory=list)  # unreadable records (skipped)


def _start_ns(trace: Trace) -> int:
    return min((s.start_ns for s in trace.spans), default=0)


def _in_range(trace: Trace, from_time: datetime | None, to_time: datetime | None) -> bool:
    start = _start_ns(trace) / 1e9
    return (from_time is None or start >= from_time.timestamp()) and (
        to_time is None or start < to_time.timestamp())


def _transcripts(traces: Iterator[Trace], tasks: dict[str, TaskInfo], source_type: str,
                 report: ImportReport, exclude: Iterable[str], limit: int | None,
                 from_time: datetime | None, to_time: datetime | None,
                 source_id: str | None = None) -> Iterator[Transcript]:
    from ._transcript import to_transcript, trace_kind, transcript_id

    known = set(exclude)
    for trace in traces:
        # --limit N: the first N transcript candidates, imported or already there, so that a
        # re-run with the same limit selects the same traces
        if limit is not None and report.transcripts + report.skipped_existing >= limit:
            return
        report.traces += 1
        kind = trace_kind(trace)
        if kind == "context":
            report.context_traces += 1
            continue
        if kind is None:
            report.other_traces += 1
            continue
        if not _in_range(trace, from_time, to_time):
            report.out_of_range += 1
            continue
        if transcript_id(trace) in known:
            report.skipped_existing += 1
            continue
        transcript = to_transcript(trace, source_type=source_type, tasks=tasks,
                                   source_id=source_id)
        if transcript is not None:
            report.transcripts += 1
            yield transcript


async def otlp_transcripts(
    paths: str | Path | Iterable[str | Path],
    *,
    limit: int | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    exclude: Iterable[str] = (),
    report: ImportReport | None = None,
    max_record_mb: float | None = None,
) -> AsyncIterator[Transcript]:
    """Transcripts from OTLP files as the Collector's ``file`` exporter writes them (JSON lines or
    length-prefixed protobuf, optionally zstd), with ``gen_ai.evaluation.result`` log records in
    the same files. Files are read in two streaming passes (bounded memory); records that cannot
    be read are skipped and listed in ``report.problems``. Raises ``OtlpFileError`` for a file
    that cannot be opened. ``from_time``/``to_time`` select traces by start time; ``exclude``
    holds transcript ids to leave out (e.g. those already in the database). ``max_record_mb``
    bounds one record (default 64): a longer one is skipped and reported, never held."""
    from ._otlp_file import DEFAULT_MAX_RECORD_MB, OtlpFiles
    from ._transcript import SOURCE_OTLP

    report = report if report is not None else ImportReport()
    files = OtlpFiles([paths] if isinstance(paths, (str, Path)) else list(paths),
                      max_record_mb=max_record_mb or DEFAULT_MAX_RECORD_MB)
    index = files.index()
    report.problems.extend(index.problems)
    for transcript in _transcripts(files.traces(index), index.tasks, SOURCE_OTLP, report,
                                   exclude, limit, from_time, to_time):
        yield transcript


async def mlflow_transcripts(
    experiment: str | None = None,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    limit: int | None = None,
    *,
    exclude: Iterable[str] = (),
    report: ImportReport | None = None,
) -> AsyncIterator[Transcript]:
    """Transcripts from the traces of an MLflow experiment (as the inspect-otel receiver stores
    them, or any GenAI traces sent to MLflow), optionally of one run (an Inspect run's parent run
    includes its task runs) and a time window, oldest first, the first ``limit``. Raises
    ``MlflowSourceError`` when the server cannot be read or the experiment does not exist."""
    from ._mlflow import MlflowQuery, MlflowTraces
    from ._transcript import SOURCE_MLFLOW

    report = report if report is not None else ImportReport()
    uri = tracking_uri or _default_tracking_uri()
    source = MlflowTraces(MlflowQuery(uri, experiment, run_id, from_time, to_time))
    tasks = source.tasks()
    for transcript in _transcripts(source.traces(), tasks, SOURCE_MLFLOW, report, exclude, limit,
                                   None, None, source_id=source.experiment_id):
        yield transcript


def _default_tracking_uri() -> str:
    import mlflow

    return str(mlflow.get_tracking_uri())

