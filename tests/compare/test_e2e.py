"""Two real offline evals (mockllm, different scripted answers, 2 epochs, four scorers incl. a
dict-valued one, a ``topic`` metadata key) exported by the live hook into a receiver process and
the session MLflow server, then compared from their logs and from the MLflow runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from inspect_ai.log import read_eval_log
from scipy import stats

from inspect_otel.compare import CompareError, compare_evals
from inspect_otel.receiver import _mlflow_names
from tests.compare.quiz import (
    BASELINE,
    CANDIDATE,
    ERRORING_BASELINE,
    ERRORING_CANDIDATE,
    quiz,
    quiz_extra,
    run_quiz,
)
from tests.receiver.mlflow_view import read_table

EXPERIMENT = "compare-e2e"
ROOT = Path(__file__).resolve().parents[2]


def _legacy_parent(client: Any, exp_id: str, *task_runs: Any) -> str:
    """A parent run above ``task_runs``, as receivers before top-level task runs made one per
    Inspect run (compare still resolves such a run to its single task)."""
    parent = client.create_run(exp_id, run_name="inspect run (older receiver)", tags={
        _mlflow_names.TAG_ROLE: _mlflow_names.ROLE_RUN}).info.run_id
    for run in task_runs:
        client.set_tag(run.info.run_id, _mlflow_names.TAG_PARENT_RUN_ID, parent)
    return parent


def _task_run(client: Any, exp_id: str, eval_id: str) -> Any:
    runs = client.search_runs([exp_id], filter_string=f"tags.`inspect.eval_id` = '{eval_id}'")
    assert len(runs) == 1, eval_id
    return runs[0]


@pytest.fixture(scope="module")
def world(mlflow_server, mlflow_client, tmp_path_factory):
    from tests.support.receiver import start_receiver

    tmp = tmp_path_factory.mktemp("compare-e2e")
    rp = start_receiver(mlflow_server.url, tmp / "data", EXPERIMENT, settle=1.0)
    try:
        with pytest.MonkeyPatch.context() as m:
            m.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rp.url)
            m.setenv("OTEL_METRICS_EXPORTER", "none")
            m.setenv("INSPECT_OTEL_SAMPLE_METADATA_KEYS", "topic")  # content capture stays off
            base = run_quiz(tmp / "base", BASELINE, epochs=2)
            cand = run_quiz(tmp / "cand", CANDIDATE, epochs=2)
            # the pair: samples that error (in both, in one) and one the candidate lacks
            ebase = run_quiz(tmp / "ebase", ERRORING_BASELINE, epochs=1, tasks=quiz(count=8),
                             fail_on_error=False)
            ecand = run_quiz(tmp / "ecand", ERRORING_CANDIDATE, epochs=1, tasks=quiz(count=7),
                             fail_on_error=False)
            m.delenv("INSPECT_OTEL_SAMPLE_METADATA_KEYS")
            # one Inspect run with two tasks, exported without any sample metadata
            pair = run_quiz(tmp / "pair", CANDIDATE, epochs=1,
                            tasks=[quiz(count=4), quiz_extra(count=4)])
        rp.wait_idle(240)
        exp = mlflow_client.get_experiment_by_name(EXPERIMENT)
        runs = {name: _task_run(mlflow_client, exp.experiment_id, log.eval.eval_id)
                for name, log in (("base", base), ("cand", cand), ("pair", pair[0]),
                                  ("ebase", ebase), ("ecand", ecand))}
        foreign = mlflow_client.create_run(exp.experiment_id, run_name="not from the receiver")
        yield dict(base=base, cand=cand, ebase=ebase, ecand=ecand, pair=pair, runs=runs, rp=rp,
                   exp=exp.experiment_id, url=mlflow_server.url, foreign=foreign.info.run_id,
                   tmp=tmp)
    finally:
        rp.kill()


def _numbers(c: Any) -> dict[str, Any]:
    """Everything but the description of the two sources."""
    d = c.to_dict()
    return {k: v for k, v in d.items() if k not in ("baseline", "candidate")}


@pytest.mark.parametrize("cluster", [None, "topic"])
def test_log_and_mlflow_run_give_identical_comparisons(world, cluster, mlflow_client):
    base, cand, runs, url = world["base"], world["cand"], world["runs"], world["url"]
    from_logs = compare_evals(base.location, cand.location, cluster=cluster)
    from_runs = compare_evals(runs["base"].info.run_id, f"runs:/{runs['cand'].info.run_id}",
                              tracking_uri=url, cluster=cluster)
    run_url = f"{url}/#/experiments/{world['exp']}/runs/{runs['cand'].info.run_id}/overview"
    mixed = compare_evals(base, run_url, cluster=cluster)  # an EvalLog object and a run URL
    # a header-only EvalLog reads its samples' summaries from its file
    header = compare_evals(read_eval_log(base.location, header_only=True), cand.location,
                           cluster=cluster)
    # the Inspect (parent) run of a single task stands for its task run
    parent = _legacy_parent(mlflow_client, world["exp"], runs["base"])
    from_parent = compare_evals(parent, cand.location, tracking_uri=url, cluster=cluster)
    assert _numbers(from_runs) == _numbers(from_logs)
    assert _numbers(mixed) == _numbers(from_logs) == _numbers(header) == _numbers(from_parent)
    assert from_parent.baseline.mlflow_run_id == runs["base"].info.run_id
    assert from_runs.candidate.kind == "mlflow" and from_runs.candidate.tracking_uri == url
    assert from_runs.candidate.eval_id == from_logs.candidate.eval_id == cand.eval.eval_id
    names = [s.scorer for s in from_logs.scorers]
    assert names == ["length", "match", "quality/brevity", "quality/correct", "quality/note",
                     "quality/verdict"]
    if cluster:
        assert {s.clusters for s in from_logs.scorers if s.n} == {4}
        assert {s.test for s in from_logs.scorers if s.n} == {"clustered t"}


def _reordered_copy(location: str, folder: Path) -> str:
    """The same log with its samples in reverse order (as completion order can have them)."""
    from inspect_ai.log import write_eval_log

    log = read_eval_log(location)
    log.samples = list(reversed(log.samples or []))
    path = str(folder / f"reversed-{Path(location).name}")
    write_eval_log(log, path)
    return path


@pytest.mark.parametrize("pair", ["", "e"])
def test_the_same_bootstrap_from_logs_and_runs_whatever_their_order(world, pair):
    """The issue's item 8: a log pair and the MLflow run pair made from the same evals give the
    same bootstrap interval (and every other number), though the log hands its samples over in
    another order than the receiver's table."""
    from inspect_otel.compare._readers import read_side

    runs, url, tmp = world["runs"], world["url"], world["tmp"]
    logs = [_reordered_copy(world[f"{pair}{side}"].location, tmp) for side in ("base", "cand")]
    run_ids = [runs[f"{pair}{side}"].info.run_id for side in ("base", "cand")]
    from_log = [r.sample_id for r in read_side(logs[0]).records]
    from_run = [r.sample_id for r in read_side(run_ids[0], tracking_uri=url).records]
    assert sorted(from_log) == sorted(from_run) and from_log != from_run  # the orders differ
    c_logs = compare_evals(*logs)
    c_runs = compare_evals(*run_ids, tracking_uri=url)
    boot = [(s.scorer, s.bootstrap_ci_low, s.bootstrap_ci_high) for s in c_logs.scorers
            if s.bootstrap_ci_low is not None and s.bootstrap_ci_low != s.bootstrap_ci_high]
    assert len(boot) >= 3, boot
    assert [(s.scorer, s.bootstrap_ci_low, s.bootstrap_ci_high) for s in c_runs.scorers
            if (s.scorer, s.bootstrap_ci_low, s.bootstrap_ci_high) in boot] == boot
    assert _numbers(c_runs) == _numbers(c_logs)


def test_samples_left_out_are_named_with_why_from_logs_and_runs(world, capsys):
    """The issue's item 7b: a sample that errored in both runs (and one that errored in one, and
    one the candidate lacks) is named with its reason, in the text and in --json, the same from
    the logs and from the MLflow runs."""
    from inspect_otel.cli import main

    ebase, ecand, runs, url = world["ebase"], world["ecand"], world["runs"], world["url"]
    from_logs = compare_evals(ebase.location, ecand.location)
    from_runs = compare_evals(runs["ebase"].info.run_id, runs["ecand"].info.run_id,
                              tracking_uri=url)
    assert _numbers(from_runs) == _numbers(from_logs)
    everywhere = [(e.sample_id, e.reason) for e in from_logs.excluded if e.scorers is None]
    assert everywhere == [("q02", "errored in both"), ("q03", "errored in the baseline"),
                          ("q04", "errored in the candidate"), ("q07", "only in the baseline")]
    # quality/note is never numeric: every other matched sample is left out of that one test
    note = [e.sample_id for e in from_logs.excluded if e.scorers == ("quality/note",)]
    assert note == ["q00", "q01", "q05", "q06"]
    assert from_logs.matched == 7 and from_logs.scorer("match").n == 4

    assert main(["compare", ebase.location, ecand.location]) == 0
    out = capsys.readouterr().out
    assert ("samples: 7 matched, 1 only in the baseline, 0 only in the candidate; 3 matched left "
            "out of every test, 4 left out of some (why: below)") in out
    for line in ("  every scorer: errored in both (1): q02",
                 "  every scorer: errored in the baseline (1): q03",
                 "  every scorer: errored in the candidate (1): q04",
                 "  every scorer: only in the baseline (1): q07",
                 "  quality/note: no numeric score in both (4): q00, q01, q05, q06"):
        assert line in out.splitlines(), out
    assert main(["compare", runs["ebase"].info.run_id, runs["ecand"].info.run_id,
                 "--tracking-uri", url, "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["matched"] == 7
    assert data["excluded"][:2] == [
        {"sample_id": "q00", "reason": "no numeric score in both", "baseline": "non_numeric",
         "candidate": "non_numeric", "scorers": ["quality/note"]},
        {"sample_id": "q01", "reason": "no numeric score in both", "baseline": "non_numeric",
         "candidate": "non_numeric", "scorers": ["quality/note"]}]
    assert {"sample_id": "q02", "reason": "errored in both", "baseline": "errored",
            "candidate": "errored", "scorers": None} in data["excluded"]


def test_numbers_match_inspect_and_scipy(world):
    """Means equal Inspect's own metrics; the test equals scipy on per-sample epoch means
    computed here straight from the full logs (transcripts and all)."""
    base, cand = world["base"], world["cand"]
    c = compare_evals(base.location, cand.location, lower_is_better=["length"])
    metrics = {(s.name, k): v.value for s in base.results.scores for k, v in s.metrics.items()}
    assert c.scorer("match").baseline_mean == pytest.approx(metrics[("match", "accuracy")], abs=1e-12)
    assert c.scorer("length").baseline_mean == pytest.approx(metrics[("length", "mean")], abs=1e-12)
    assert c.scorer("quality/brevity").baseline_mean == pytest.approx(
        metrics[("brevity", "mean")], abs=1e-12)

    def per_sample(log: Any, name: str) -> dict[str, float]:
        values: dict[str, list[float]] = {}
        for s in log.samples:
            values.setdefault(str(s.id), []).append(float(s.scores[name].value == "C"))
        return {k: float(np.mean(v)) for k, v in values.items()}

    b, k = per_sample(base, "match"), per_sample(cand, "match")
    ids = sorted(b)
    ref = stats.ttest_rel([k[i] for i in ids], [b[i] for i in ids])
    r = c.scorer("match")
    assert r.n == 24 == len(ids) and r.epochs == 2  # samples, never samples x epochs
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert r.verdict == "better" and c.scorer("length").verdict == "better"
    note = c.scorer("quality/note")
    assert note.n == 0 and note.excluded_baseline == 48 and note.verdict == "not tested"
    regressed = {row.sample_id for row in c.rows if row.scorer == "match" and row.difference < 0}
    assert regressed == {"q01"}


def test_sample_metadata_privacy(world, mlflow_client):
    """Only the opted-in key reaches MLflow; without opt-in or content capture, none."""
    cols = read_table(mlflow_client, world["runs"]["base"].info.run_id, _mlflow_names.SAMPLES_TABLE).columns
    assert "metadata/topic" in cols and "metadata/secret_note" not in cols
    cols = read_table(mlflow_client, world["runs"]["pair"].info.run_id, _mlflow_names.SAMPLES_TABLE).columns
    assert not [c for c in cols if c.startswith("metadata/")]
    with pytest.raises(CompareError, match="carries no sample metadata.*CAPTURE_MESSAGE_CONTENT"):
        compare_evals(world["pair"][0].location, world["runs"]["pair"].info.run_id,
                      tracking_uri=world["url"], cluster="topic", scorers=["match"])


def _cli(*args: str) -> subprocess.Popen:
    # with bytecode caches (this workplace sets PYTHONDONTWRITEBYTECODE: every process would
    # compile Inspect from source)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.Popen([sys.executable, "-m", "inspect_otel.cli", "compare", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(ROOT), env=env)


def test_bad_input_through_the_cli(world):
    """Each bad input of the issue: exit 2, one line on stderr, no traceback (run concurrently:
    each process imports Inspect)."""
    tmp, base, url = world["tmp"], world["base"], world["url"]
    garbage = tmp / "garbage.eval"
    garbage.write_bytes(b"this is not a zip archive")
    cases = {
        "no such log file": (str(tmp / "missing.eval"), base.location),
        "cannot read log": (str(garbage), base.location),
        "unknown MLflow run": ("0" * 32, base.location, "--tracking-uri", url),
        "no common samples": (base.location, _renamed_copy(base.location, tmp)),
        "'includes' is only in the candidate": (base.location, world["pair"][1].location),
    }
    procs = {what: _cli(*args) for what, args in cases.items()}
    for what, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert proc.returncode == 2, (what, out, err)
        assert len(lines) == 1 and what in lines[0], (what, err)
        assert "Traceback" not in err + out


def _renamed_copy(location: str, folder: Path) -> str:
    """The same log with every sample id changed (no common samples)."""
    from inspect_ai.log import read_eval_log, write_eval_log

    log = read_eval_log(location)
    for s in log.samples or []:
        s.id = f"other-{s.id}"
    path = str(folder / "renamed.eval")
    write_eval_log(log, path)
    return path


def test_fail_on_regression(world, capsys):
    """Exit 1 when a scorer is significantly worse after Holm, 0 when none is. Whether lower is
    better is not in the log: ``length`` counts as worse when it goes down unless told."""
    from inspect_otel.cli import main

    base, cand = world["base"].location, world["cand"].location
    regressed = _cli(cand, base, "--fail-on-regression", "--scorer", "match")
    assert main(["compare", base, cand, "--fail-on-regression", "--lower-is-better",
                 "length"]) == 0
    assert "better (lower is better)" in capsys.readouterr().out
    assert main(["compare", base, cand, "--fail-on-regression"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "inspect-otel compare: regression: length significantly worse after Holm's correction"]
    out, err = regressed.communicate(timeout=120)
    assert regressed.returncode == 1, err
    assert err.strip().splitlines() == [
        "inspect-otel compare: regression: match significantly worse after Holm's correction"]


def test_other_bad_input(world, capsys, mlflow_client):
    from inspect_otel.cli import main

    runs, url = world["runs"], world["url"]
    pair = [_task_run(mlflow_client, world["exp"], log.eval.eval_id) for log in world["pair"]]
    parent = _legacy_parent(mlflow_client, world["exp"], *pair)
    cases = [
        (["/", world["base"].location], "is a directory"),
        (["nonsense", world["base"].location], "is not a log file"),
        ([parent, world["base"].location, "--tracking-uri", url], "with 2 task runs; pass one of"),
        ([world["foreign"], world["base"].location, "--tracking-uri", url],
         "was not written by the inspect-otel receiver"),
        (["runs:/" + "1" * 32, world["base"].location, "--tracking-uri", "http://127.0.0.1:9"],
         "cannot reach MLflow"),
        ([world["base"].location, world["cand"].location, "--cluster", "nope"],
         "have no 'nope' in their metadata"),
        ([runs["base"].info.run_id, world["cand"].location, "--tracking-uri", url, "--cluster",
          "nope"], "carries only topic (the hook sends metadata with"),
        ([world["base"].location, world["cand"].location, "--scorer", "nope"],
         "no scorer named 'nope'"),
        ([world["base"].location, world["cand"].location, "--alpha", "1.5"], "alpha must be"),
        ([world["base"].location, world["cand"].location, "--lower-is-better", "nope"],
         "--lower-is-better names no compared scorer"),
    ]
    for args, message in cases:
        assert main(["compare", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)


def test_mlflow_comparison_run(world, mlflow_client, tmp_path, capsys):
    from inspect_otel.cli import main
    from inspect_otel.compare._mlflow_log import COMPARISON_TABLE, FOREST_PLOT, RESULT_FILE

    runs, url = world["runs"], world["url"]
    b, c = runs["base"].info.run_id, runs["cand"].info.run_id
    out_json = tmp_path / "result.json"
    code = main(["compare", b, c, "--tracking-uri", url, "--mlflow", "--cluster", "topic",
                 "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0
    run_url = out.strip().splitlines()[-1].split("MLflow comparison run: ")[1]
    assert run_url.startswith(f"{url}/#/experiments/{world['exp']}/runs/")
    run = mlflow_client.get_run(run_url.rsplit("/", 1)[1])
    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.experiment_id == world["exp"] and run.info.status == "FINISHED"
    assert tags["inspect.compare.baseline.mlflow_run_id"] == b
    assert tags["inspect.compare.candidate.mlflow_run_id"] == c
    assert tags["inspect.compare.candidate.eval_id"] == world["cand"].eval.eval_id
    assert tags[_mlflow_names.TAG_ROLE] == "comparison"
    result = json.loads(out_json.read_text())
    match = next(s for s in result["scorers"] if s["scorer"] == "match")
    for key in ("difference", "ci_low", "ci_high", "p_value", "p_adjusted"):
        assert metrics[f"match/{key}"] == pytest.approx(match[key], rel=1e-12)
    table = read_table(mlflow_client, run.info.run_id, COMPARISON_TABLE)
    assert len(table) == len(result["rows"]) and set(table["cluster"]) == {
        "arithmetic", "geography", "history", "science"}
    with open(mlflow_client.download_artifacts(run.info.run_id, FOREST_PLOT, str(tmp_path)),
              "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    whole = json.load(open(mlflow_client.download_artifacts(run.info.run_id, RESULT_FILE,
                                                            str(tmp_path))))
    assert whole["scorers"] == result["scorers"]
    # regressed and improved samples link to their MLflow traces
    assert f"{url}/#/experiments/{world['exp']}/traces?selectedEvaluationId=tr-" in out


def test_few_clusters_and_an_interval_past_the_score_range_are_stated(world, capsys):
    """4 topics: the clustered interval is rough, and the report says so (and says when an
    interval reaches past what a 0-1 score allows)."""
    from inspect_otel.cli import main

    assert main(["compare", world["base"].location, world["cand"].location, "--cluster",
                 "topic"]) == 0
    out = capsys.readouterr().out
    assert "warning: only 4 clusters (fewer than 20)" in out
    c = compare_evals(world["base"].location, world["cand"].location, cluster="topic")
    for r in c.scorers:
        if r.ci_low is not None and r.score_min is not None:
            span = r.score_max - r.score_min
            past = r.ci_low < -span or r.ci_high > span
            assert r.interval_exceeds_range == past
            assert ("reaches past the largest possible difference" in out) >= past


def test_mlflow_without_tracking_uri_fails_before_the_table(world, capsys, monkeypatch):
    from inspect_otel.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code = main(["compare", world["base"].location, world["cand"].location, "--mlflow"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""  # nothing computed or printed first
    assert captured.err.strip().splitlines() == [
        "inspect-otel compare: --mlflow needs a tracking URI: neither side is an MLflow run "
        "(pass --tracking-uri or set MLFLOW_TRACKING_URI)"]
    code = main(["compare", world["base"].location, world["cand"].location, "--mlflow",
                 "--tracking-uri", "http://127.0.0.1:9"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and "cannot reach MLflow" in captured.err


def test_a_run_url_serves_the_other_run_id_and_labels_are_clean(world, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runs, url = world["runs"], world["url"]
    run_url = f"{url}/#/experiments/{world['exp']}/runs/{runs['cand'].info.run_id}"
    c = compare_evals(runs["base"].info.run_id, run_url)  # the id is read from the URL's server
    assert c.baseline.tracking_uri == url and c.baseline.kind == "mlflow"
    assert c.candidate.name == f"{world['cand'].eval.task} \u00b7 model"
    assert "[truncated]" not in c.candidate.name
