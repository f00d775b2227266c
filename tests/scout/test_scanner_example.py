"""The scanner example users start from (docs/examples/scanner.py), run by `scout scan` (a real
process) on a transcript database that `inspect-otel scout-import` (a real process) made from the
calculator eval's exported traces: each scanner gives what the eval's log says, and the same as on
Scout's own reading of that log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from inspect_scout import scan_results_df

from tests.scout.support import ROOT, clean_env, produce, read_transcripts

EXAMPLE = ROOT / "docs" / "examples" / "scanner.py"


def _load_example():
    import importlib.util

    spec = importlib.util.spec_from_file_location("scanner_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scanner_example_on_imported_transcripts(tmp_path: Path) -> None:
    produce(tmp_path, "--jsonl", str(tmp_path / "otlp.jsonl"), "--epochs", "1")
    bin_dir = Path(sys.executable).parent
    db, scans = tmp_path / "transcripts", tmp_path / "scans"
    imported = subprocess.run(
        [str(bin_dir / "inspect-otel"), "scout-import", "--otlp", str(tmp_path / "otlp.jsonl"),
         "-T", str(db)], env=clean_env(), capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    scanned = subprocess.run(
        [str(bin_dir / "scout"), "scan", str(EXAMPLE), "-T", str(db), "--scans", str(scans),
         "--display", "none", "--max-processes", "1"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    assert scanned.returncode == 0, scanned.stderr[-2000:]
    (scan_dir,) = scans.glob("scan_id=*")
    frames = scan_results_df(str(scan_dir)).scanners
    assert sorted(frames) == ["failures", "tool_errors"]

    reading = read_transcripts(tmp_path / "logs")  # Scout's own reading of the .eval log
    sample = {tid: t.task_id for tid, t in reading.items()}
    assert sorted(sample.values()) == ["a", "b", "boom", "flaky", "wrong"]
    results = {name: {sample[tid]: (value, explanation) for tid, value, explanation in zip(
        frame.transcript_id, frame.value, frame.explanation)} for name, frame in frames.items()}
    # every sample that reached its tools had divide(x, 0) fail once; "boom" never got there
    assert {k: int(v) for k, (v, _) in results["tool_errors"].items()} == {
        "a": 1, "b": 1, "wrong": 1, "flaky": 1, "boom": 0}
    assert results["tool_errors"]["a"][1] == "[E1] divide: division by zero"
    # "boom" errors, "wrong" answers 7 where 100 was expected; "flaky" succeeded on its retry
    assert {k: v for k, (v, _) in results["failures"].items()} == {
        "a": "", "b": "", "flaky": "", "boom": "error", "wrong": "score"}
    assert results["failures"]["boom"][1] == "RuntimeError('boom: this sample always fails')"
    assert results["failures"]["wrong"][1] == "scored I: 7 (last answer: '7')"

    # ... and exactly what the same scanners give on Scout's reading of the log
    example = _load_example()
    for name, make in (("tool_errors", example.tool_errors), ("failures", example.failures)):
        scan = make()
        on_log = {t.task_id: asyncio.run(scan(t)) for t in reading.values()}
        assert {k: (str(r.value), r.explanation) for k, r in on_log.items()} == {
            k: (str(v), e) for k, (v, e) in results[name].items()}, name
