"""Scout import: transcripts from the hook's traces equal Scout's own reading of the .eval log.

One real eval (tests/support/evals.py calculator: tools, a tool error, an always-erroring sample,
a retried sample, 3 scorers incl. a model-graded one, 2 epochs) runs once, in its own process,
with content capture and the live hook exporting through the OpenTelemetry SDK into
- an OTLP JSON-lines file and an OTLP protobuf file (the Collector file exporter's formats,
  written with OpenTelemetry's own encoders, see tests/support/otlp_files.py), and
- a real receiver process into the session's real MLflow server.
Its .eval log is what Scout itself reads (``transcripts_from(log_dir)``): the yardstick.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspect_otel.scout import ImportReport, mlflow_transcripts, otlp_transcripts
from tests.scout.support import ROOT, assert_same, clean_env, import_into, produce, read_transcripts
from tests.support.receiver import start_receiver
from tests.support.wait import wait_for

EXPERIMENT = "scout-import"
SAMPLES = 10  # 5 samples x 2 epochs


@dataclass
class Exported:
    root: Path
    mlflow_uri: str

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def jsonl(self) -> Path:
        return self.root / "otlp.jsonl"

    @property
    def proto(self) -> Path:
        return self.root / "otlp.pb"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, mlflow_server, mlflow_client) -> Exported:
    root = tmp_path_factory.mktemp("scout-export")
    receiver = start_receiver(mlflow_server.url, root / "receiver", EXPERIMENT, settle=0.5)
    try:
        produce(root, "--jsonl", str(root / "otlp.jsonl"), "--proto", str(root / "otlp.pb"),
                "--endpoint", receiver.url)
        receiver.wait_idle()
    finally:
        receiver.kill()
    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT).experiment_id

    def all_assessed() -> bool:
        traces = mlflow_client.search_traces(locations=[experiment], max_results=100,
                                             filter_string="tags.`inspect.span.kind` = 'sample'")
        return len(traces) == SAMPLES
    wait_for(all_assessed, 60, what="sample traces in MLflow")
    return Exported(root, mlflow_server.url)


@pytest.fixture(scope="module")
def scouts_reading(exported) -> dict:
    reading = read_transcripts(exported.logs)
    assert len(reading) == SAMPLES
    return reading


@pytest.mark.parametrize("fmt", ["jsonl", "proto"])
def test_otlp_file_equals_scouts_reading_of_the_log(exported, scouts_reading, tmp_path, fmt):
    report = ImportReport()
    import_into(tmp_path / "db", otlp_transcripts([getattr(exported, fmt)], report=report))
    assert report.transcripts == SAMPLES and report.context_traces == 1 and not report.problems
    ours = read_transcripts(tmp_path / "db")  # read back through Scout's database
    assert_same(ours, scouts_reading)
    one = next(iter(ours.values()))
    assert one.source_type == "otlp" and one.source_uri == str(getattr(exported, fmt))
    assert one.metadata["content_captured"] is True
    assert one.metadata["log"] == next(iter(scouts_reading.values())).source_uri


def test_export_to_file_gives_scouts_reading_without_a_collector(exported, scouts_reading,
                                                               tmp_path):
    """`inspect-otel export LOG --to-file traces.jsonl` (content capture on): the OTLP file a
    Collector would have written, so `scout-import --otlp` works on a laptop."""
    cli = str(Path(sys.executable).with_name("inspect-otel"))
    (log,) = sorted(exported.logs.glob("*.eval"))
    out = tmp_path / "traces.jsonl"
    env = {**clean_env(), "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    done = subprocess.run([cli, "export", str(log), "--to-file", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote to {out}: 1 logs, {SAMPLES} samples")
    done = subprocess.run([cli, "scout-import", "--otlp", str(out), "-T", str(tmp_path / "db")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same(read_transcripts(tmp_path / "db"), scouts_reading)


def test_mlflow_equals_scouts_reading_of_the_log(exported, scouts_reading, tmp_path):
    report = ImportReport()
    import_into(tmp_path / "db", mlflow_transcripts(EXPERIMENT, exported.mlflow_uri,
                                                    report=report))
    assert report.transcripts == SAMPLES and not report.problems
    ours = read_transcripts(tmp_path / "db")
    assert_same(ours, scouts_reading)
    assert {t.source_type for t in ours.values()} == {"mlflow"}
    assert all(t.source_uri.startswith(exported.mlflow_uri) for t in ours.values())


def test_mlflow_run_time_window_and_limit(exported, mlflow_client, tmp_path):
    """--run with the eval's task run selects its samples; --limit takes the first N; a window
    after the eval selects nothing."""
    from datetime import datetime, timedelta, timezone

    experiment = mlflow_client.get_experiment_by_name(EXPERIMENT).experiment_id
    (task,) = mlflow_client.search_runs([experiment],
                                        filter_string="tags.`inspect.otel.role` = 'task'")
    report = ImportReport()
    import_into(tmp_path / "run", mlflow_transcripts(EXPERIMENT, exported.mlflow_uri,
                                                     run_id=task.info.run_id, report=report))
    assert report.transcripts == SAMPLES
    report = ImportReport()
    import_into(tmp_path / "limit", mlflow_transcripts(EXPERIMENT, exported.mlflow_uri, limit=3,
                                                       report=report))
    assert report.transcripts == 3 and len(read_transcripts(tmp_path / "limit")) == 3
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    report = ImportReport()
    import_into(tmp_path / "late", mlflow_transcripts(EXPERIMENT, exported.mlflow_uri,
                                                      from_time=later, report=report))
    assert report.traces == 0


def test_cli_import_is_idempotent_and_scout_scan_matches_the_log(exported, scouts_reading,
                                                                  tmp_path, capsys):
    """The CLI (a real process) imports; run again it adds nothing; `scout scan` (a real process)
    with a deterministic scanner on the database gives, for every transcript, the result the same
    scanner gives on Scout's own reading of the .eval log."""
    from inspect_otel import cli

    db = tmp_path / "db"
    first = subprocess.run(
        [sys.executable, "-m", "inspect_otel.cli", "scout-import", "--otlp", str(exported.jsonl),
         "-T", str(db)], capture_output=True, text=True, cwd=ROOT, env=clean_env())
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"imported {SAMPLES} transcripts") and first.stderr == ""
    data_files = sorted(db.glob("*.parquet"))
    capsys.readouterr()
    assert cli.main(["scout-import", "--otlp", str(exported.jsonl), "-T", str(db)]) == 0
    second = capsys.readouterr()
    assert second.out.startswith("imported 0 transcripts") and second.err == ""
    assert f"{SAMPLES} already in the database" in second.out
    # no new data file (Scout rewrites its index manifest on every commit)
    assert sorted(db.glob("*.parquet")) == data_files and len(read_transcripts(db)) == SAMPLES

    scans = tmp_path / "scans"
    scan = subprocess.run(
        [str(Path(sys.executable).with_name("scout")), "scan",
         str(ROOT / "tests/scout/scanner.py"), "-T", str(db), "--scans", str(scans),
         "--display", "none", "--max-processes", "1"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=240)
    assert scan.returncode == 0, scan.stderr[-2000:]

    import asyncio

    from inspect_scout import scan_results_df

    from tests.scout.scanner import transcript_facts

    (scan_dir,) = scans.glob("scan_id=*")
    frame = scan_results_df(str(scan_dir)).scanners["transcript_facts"]
    ours = dict(zip(frame.transcript_id, frame.value))
    scanner = transcript_facts()
    on_log = {tid: asyncio.run(scanner(t)).value for tid, t in scouts_reading.items()}
    assert ours == on_log


def test_content_off_keeps_events_usage_scores_and_times(tmp_path):
    produce(tmp_path, "--jsonl", str(tmp_path / "otlp.jsonl"), "--content", "off",
            "--samples", "3", "--epochs", "1")
    reading = read_transcripts(tmp_path / "logs")
    import_into(tmp_path / "db", otlp_transcripts([tmp_path / "otlp.jsonl"]))
    ours = read_transcripts(tmp_path / "db")
    assert sorted(ours) == sorted(reading)
    for tid, expected in reading.items():
        got = ours[tid]
        assert got.metadata["content_captured"] is False
        assert got.messages == [] and got.message_count == expected.message_count
        assert got.total_tokens == expected.total_tokens and got.total_time == expected.total_time
        assert str(got.score) == str(expected.score) and got.success == expected.success
        kinds = [e.event for e in expected.events if e.event in ("model", "tool", "score")]
        assert [e.event for e in got.events if e.event in ("model", "tool", "score")] == kinds
        tools = [(e.function, e.error.message if e.error else None) for e in expected.events
                 if e.event == "tool"]
        assert [(e.function, e.error.message if e.error else None) for e in got.events
                if e.event == "tool"] == tools
        for event in got.events:
            if event.event == "model":
                assert event.input == [] and event.output.usage.total_tokens > 0
                assert event.completed > event.timestamp
