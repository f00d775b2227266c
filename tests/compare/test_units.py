"""Readers' pure parts, the report, the plot, and the CLI's extras handling (no servers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from inspect_otel.compare import CompareError, EvalSource
from inspect_otel.compare._readers import check_reference, mlflow_records, parse_run_reference
from inspect_otel.compare._report import render, trace_url
from tests.compare.test_stats import paired, table

ROOT = Path(__file__).resolve().parents[2]
RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("ref, expected", [
    (f"runs:/{RUN}", (RUN, None)),
    (f"runs:/{RUN}/model", (RUN, None)),
    (RUN, (RUN, None)),
    (f"http://127.0.0.1:5000/#/experiments/3/runs/{RUN}", (RUN, "http://127.0.0.1:5000")),
    (f"https://host/mlflow/#/experiments/3/runs/{RUN}/overview?x=1",
     (RUN, "https://host/mlflow")),
    (f"https://host/mlflow/experiments/3/runs/{RUN}", (RUN, "https://host/mlflow")),
    ("logs/a.eval", None),
    ("http://host/#/experiments/3", None),
])
def test_run_references(ref, expected):
    assert parse_run_reference(ref) == expected


def test_cheap_reference_checks(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for ref, message in [(str(tmp_path / "gone.eval"), "no such log file"),
                         (str(tmp_path), "is a directory"),
                         ("whatever", "is not a log file"),
                         (str(tmp_path / "notes.txt"), "is not an Inspect log"),
                         (42, "cannot compare a int")]:
        with pytest.raises(CompareError, match=message):
            check_reference(ref)
    check_reference(f"runs:/{RUN}")
    check_reference("s3://bucket/logs/x.eval")


def test_mlflow_tables_join_into_records():
    samples = {"sample_id": ["1", "1", "2"], "epoch": [1, 2, 1], "status": ["success", "error",
                                                                         "success"],
               "trace_id": ["tr-" + "a" * 32, "tr-" + "b" * 32, "tr-" + "c" * 32],
               "total_tokens": [10, None, 12], "cost": [None, None, 0.5],
               "total_time": [1.0, 2.0, 3.0], "metadata/topic": ["x", "x", None]}
    scores = {"sample_id": ["1", "2", "2", None], "epoch": [1, 1, 1, 1],
              "name": ["m", "m", "q/a", "m"], "value": [1.0, None, 0.25, 1.0]}
    records, names, columns = mlflow_records(samples, scores, ("topic",))
    assert names == ("m", "q/a") and columns == ("topic",)
    first, errored, second = records
    assert (first.sample_id, first.epoch, dict(first.scores)) == ("1", 1, {"m": 1.0})
    assert first.trace_id == "a" * 32 and first.metadata == {"topic": "x"}
    assert errored.status == "error" and errored.scores == {}
    assert dict(second.scores) == {"m": None, "q/a": 0.25} and second.metadata == {}
    assert second.cost == 0.5 and second.total_tokens == 12


def test_trace_links_only_for_mlflow_sides():
    run = EvalSource(kind="mlflow", label="x", mlflow_run_id=RUN, experiment_id="7",
                     tracking_uri="http://127.0.0.1:5000")
    assert trace_url(run, "f" * 32) == ("http://127.0.0.1:5000/#/experiments/7/traces"
                                        "?selectedEvaluationId=tr-" + "f" * 32)
    assert trace_url(EvalSource(kind="log", label="a.eval"), "f" * 32) is None
    assert trace_url(run, None) is None


def test_report_and_plot(tmp_path):
    from inspect_otel.compare._mlflow_log import forest_plot
    from inspect_otel.compare._stats import compare_tables

    import numpy as np

    a = np.array([1.0] * 20 + [0.0] * 20)
    b = np.array([1.0] * 18 + [0.0] * 2 + [1.0] * 12 + [0.0] * 8)
    c = compare_tables(*paired(a, b))
    text = render(c, top=2)
    assert "exact McNemar" in text and "2 regressed and 12 improved pairs" in text
    assert "s: 2 samples regressed:" in text and "1 sample" not in text and "s: 12 samples improved, the 2 largest:" in text
    json.dumps(c.to_dict(), allow_nan=False)
    path = forest_plot(c, str(tmp_path / "plot.png"))
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_extra_is_one_line(monkeypatch, capsys):
    from inspect_otel.cli import main

    monkeypatch.setitem(sys.modules, "statsmodels", None)
    assert main(["compare", "a.eval", "b.eval"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["inspect-otel compare: needs the compare extra (statsmodels missing): "
                   "pip install 'inspect-otel[compare]'"]


def test_hook_install_imports_no_analysis_libraries():
    """The hook (and replay) never import scipy, statsmodels, matplotlib or the compare
    package: a hook-only install works without the compare extra."""
    code = ("import sys, inspect_otel._registry, inspect_otel.hook, inspect_otel.replay; "
            "print([m for m in ('scipy', 'statsmodels', 'matplotlib', 'inspect_otel.compare') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout
    assert out.strip() == "[]"


def test_side_summary():
    base = table({"a": {"s": [1.0, 0.0]}, "b": {"s": [1.0]}})
    from inspect_otel.compare._stats import summarize

    s = summarize(base.records)
    assert (s.samples, s.sample_epochs, s.total_tokens, s.tokens_per_sample) == (2, 3, 30, 10)
    assert s.latency_p50 == 1.0 and s.latency_p95 == pytest.approx(1.9)
