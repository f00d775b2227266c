"""Pure mapping and decoding: no servers."""

from __future__ import annotations

import gzip
import json

import pytest

from inspect_otel import semconv as sc
from inspect_otel.receiver import _decode as dec
from inspect_otel.receiver import (
    _evaluations,
    _finalize,
    _forward,
    _mlflow_names,
    _run_metrics,
    _run_note,
    _run_params,
    _samples,
    _tables,
)


def test_task_params_drop_secrets_and_flatten():
    attrs = {
        sc.INSPECT_TASK_NAME: "t", sc.INSPECT_MODEL: "openai/gpt-4o",
        sc.INSPECT_TASK_ARGS: json.dumps({"n": 3, "api_key": "abc", "note": "Bearer abcdefghijkl"}),
        sc.INSPECT_TASK_MODEL_ARGS: json.dumps({"base_url": "http://x", "token": "t"}),
        sc.GEN_AI_REQUEST_TEMPERATURE: 0.2, sc.INSPECT_GENERATE_CONFIG_PREFIX + "max_retries": 3,
        sc.INSPECT_TASK_SCORERS: ["a", "b"], sc.INSPECT_TASK_PLAN: "x" * 7000,
    }
    p = _run_params.task_params(attrs)
    assert p["task"] == "t" and p["model"] == "openai/gpt-4o" and p["task_args.n"] == "3"
    assert "task_args.api_key" not in p and p["task_args.note"] == "[REDACTED]"
    assert "model_args.token" not in p and p["model_args.base_url"] == "http://x"
    assert p["generate_config.temperature"] == "0.2"
    assert p["generate_config.max_retries"] == "3"
    assert p["scorers"] == "a,b"
    assert len(p["plan"]) == _mlflow_names.PARAM_VALUE_MAX and p["plan"].endswith(_mlflow_names.TRUNCATION_MARKER)


def test_task_metrics_from_results_and_usage():
    attrs = {
        sc.INSPECT_TASK_RESULTS: json.dumps([
            {"name": "match", "scorer": "match", "metric": "accuracy", "value": 0.5},
            {"name": "match", "scorer": "match", "metric": "stderr", "value": 0.1},
        ]),
        sc.INSPECT_TASK_SAMPLES_TOTAL: 4, sc.INSPECT_TASK_SAMPLES_ERRORED: 1,
        sc.INSPECT_TASK_MODEL_USAGE: json.dumps({
            "openai/gpt-4o": {"input_tokens": 10, "output_tokens": 2, "total_cost": 0.5},
            "anthropic/claude": {"input_tokens": 5, "reasoning_tokens": 1},
        }),
    }
    m = _run_metrics.task_metrics(attrs)
    assert m["match/accuracy"] == 0.5 and m["match/stderr"] == 0.1
    assert m["samples/total"] == 4 and m["samples/errored"] == 1
    assert m["usage/openai/gpt-4o/input_tokens"] == 10 and m["usage/openai/gpt-4o/cost"] == 0.5
    assert m["usage/input_tokens"] == 15 and m["usage/anthropic/claude/reasoning_tokens"] == 1


def test_the_run_description_leads_with_the_results_and_escapes_names():
    attrs = {
        sc.INSPECT_TASK_RESULTS: json.dumps([
            {"name": "match", "metric": "accuracy", "value": 0.5},
            {"name": "match", "metric": "stderr", "value": 0.123456},
            {"name": "judge|x", "metric": "accuracy", "value": 1},
            {"name": "[click](http://example.test)`", "metric": "mean", "value": 2},
            {"name": "no value", "metric": "accuracy", "value": "n/a"},
        ]),
        sc.INSPECT_TASK_SAMPLES_TOTAL: 4, sc.INSPECT_TASK_SAMPLES_COMPLETED: 3,
        sc.INSPECT_TASK_SAMPLES_ERRORED: 1,
    }
    note = _run_note.task_run_note(attrs)
    assert note.splitlines() == [
        "**Inspect results** · 3 of 4 samples · 1 errored",
        "",
        "| score | `accuracy` | `stderr` | `mean` |",
        "|---|---|---|---|",
        "| `match` | 0.5 | 0.1235 |  |",
        "| `judge\\|x` | 1 |  |  |",
        "| `[click](http://example.test)'` |  |  | 2 |",
    ]
    assert _run_note.task_run_note({sc.INSPECT_TASK_SAMPLES_TOTAL: 4}) is None
    many = json.dumps([{"name": f"s{i}", "metric": f"m{j}", "value": i}
                       for i in range(50) for j in range(20)])
    big = _run_note.task_run_note({sc.INSPECT_TASK_RESULTS: many})
    assert len(big.splitlines()) == 4 + _run_note.MAX_SCORES
    assert big.splitlines()[2].count("`m") == _run_note.MAX_METRICS
    # a person's description is never replaced; the receiver's own is
    assert _run_note.owned(None) and _run_note.owned("") and _run_note.owned(note)
    assert not _run_note.owned("baseline for the Q3 review")


def test_flattened_metric_fallback():
    m = _run_metrics.task_metrics({sc.INSPECT_TASK_METRIC_PREFIX + "f1/mean": 0.7})
    assert m == {"f1/mean": 0.7}


def test_sample_summary_and_step_metrics():
    attrs = {sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE, sc.INSPECT_RUN_ID: "r",
             sc.INSPECT_EVAL_ID: "e", sc.INSPECT_SAMPLE_EPOCH: 2, sc.INSPECT_SAMPLE_INDEX: 1,
             sc.INSPECT_SAMPLE_ORDINAL: 5, sc.INSPECT_SAMPLE_TOTAL_TIME: 1.5,
             sc.INSPECT_SAMPLE_SCORE_PREFIX + "match": 1.0, sc.INSPECT_SAMPLE_TOTAL_TOKENS: 9}
    s = _samples.sample_summary("ab" * 16, 1, 2, attrs)
    assert s and s.ordinal == 5 and s.epoch == 2
    assert _samples.sample_step_metrics(s.values) == {
        "sample/match": 1.0, "sample/total_time": 1.5, "sample/total_tokens": 9.0}
    assert _samples.sample_summary("x", 1, 2, {sc.INSPECT_SPAN_KIND: "task"}) is None


def test_aggregates_percentiles():
    agg = _finalize.aggregate_metrics([1, 2, 3, 4], {"model_calls": 3, "tool_errors": 1}, 4)
    assert agg["sample_latency/p50"] == 2.5 and agg["sample_latency/mean"] == 2.5
    assert abs(agg["sample_latency/p95"] - 3.85) < 1e-9
    assert agg["model_calls"] == 3 and agg["tool_calls"] == 0 and agg["tool_errors"] == 1


def test_root_enrichment_content_and_summary():
    attrs = {sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE, sc.INSPECT_TASK_NAME: "t",
             sc.INSPECT_SAMPLE_ID: "7", sc.INSPECT_SAMPLE_EPOCH: 2, sc.INSPECT_RUN_ID: "r",
             sc.INSPECT_SAMPLE_SCORE_PREFIX + "match": 1.0}
    e = _forward.span_enrichment(attrs, is_root=True)
    # the request: the same in every run of the task, one per epoch (MLflow pairs on it)
    assert e[_mlflow_names.SPAN_INPUTS] == '{"sample_id": "7", "epoch": 2, "task": "t"}'
    assert json.loads(e[_mlflow_names.SPAN_OUTPUTS])["scores"] == {"match": 1.0}
    assert e[_mlflow_names.TRACE_TAG_PREFIX + sc.INSPECT_RUN_ID] == "r"
    assert e[_mlflow_names.SPAN_TYPE] == "AGENT"
    with_content = _forward.span_enrichment({**attrs, sc.INSPECT_SAMPLE_INPUT: "What is 2+2?",
                                       sc.INSPECT_SAMPLE_OUTPUT: "4"}, is_root=True)
    assert json.loads(with_content[_mlflow_names.SPAN_INPUTS]) == {
        "sample_id": "7", "epoch": 2, "input": "What is 2+2?"}
    assert with_content[_mlflow_names.SPAN_OUTPUTS] == "4"
    # what the sender set itself is kept
    own = _forward.span_enrichment({**attrs, _mlflow_names.SPAN_INPUTS: "x"}, is_root=True)
    assert _mlflow_names.SPAN_INPUTS not in own and _mlflow_names.SPAN_OUTPUTS in own
    # inner spans: every one typed (gen_ai operations as MLflow's own translation types them)
    assert _forward.span_enrichment({sc.INSPECT_SPAN_TYPE: "scorer"}, False) == {_mlflow_names.SPAN_TYPE: "EVALUATOR"}
    assert _forward.span_enrichment({sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT}, False) == {
        _mlflow_names.SPAN_TYPE: "CHAT_MODEL"}
    assert _forward.span_enrichment({sc.INSPECT_SPAN_TYPE: "prepare"}, False) == {_mlflow_names.SPAN_TYPE: "CHAIN"}


def test_evaluation_key_and_source():
    attrs = {sc.GEN_AI_EVALUATION_NAME: "judge", sc.GEN_AI_EVALUATION_SCORE_VALUE: 0.5,
             sc.INSPECT_SCORE_SPAN_ID: "AB" * 8, sc.INSPECT_SCORER_MODEL_GRADED: True,
             sc.GEN_AI_EVALUATION_EXPLANATION: "because"}
    e = _evaluations.evaluation("t" * 32, "ff" * 8, 5, attrs)
    assert e and e.key == ("t" * 32, "judge", "ab" * 8) and e.model_graded
    assert e.rationale == "because"
    assert _evaluations.evaluation("t" * 32, "", 5, {**attrs, sc.INSPECT_SCORE_INTERMEDIATE: True}) is None
    assert _evaluations.evaluation("", "", 5, attrs) is None


def test_decode_limits():
    with pytest.raises(dec.BadRequest) as e:
        dec.decompress(gzip.compress(b"\0" * 10_000), "gzip", 1000)
    assert e.value.status == 413
    assert dec.decompress(gzip.compress(b"abc"), "gzip", 1000) == b"abc"
    with pytest.raises(dec.BadRequest) as e:
        dec.check_content_type("application/xml")
    assert e.value.status == 415
    msg, mt = dec.decode("traces", b'{"resourceSpans": []}', "application/json; charset=utf-8",
                         None, 100)
    assert mt == dec.JSON and len(msg.resource_spans) == 0


def test_every_span_gets_an_mlflow_span_type():
    for kind, stype in _forward.SPAN_TYPE_BY_KIND.items():
        assert _forward.span_type({sc.INSPECT_SPAN_KIND: kind}) == stype
    for op, stype in _forward.SPAN_TYPE_BY_OPERATION.items():
        assert _forward.span_type({sc.GEN_AI_OPERATION_NAME: op}) == stype
    for itype, stype in _forward.SPAN_TYPE_BY_INSPECT_TYPE.items():
        assert _forward.span_type({sc.INSPECT_SPAN_TYPE: itype}) == stype
    assert _forward.span_type({sc.INSPECT_SANDBOX_ACTION: "exec"}) == "TOOL"
    # a user's span("prepare") has its name as type; anything else inner is a step
    assert _forward.span_type({sc.INSPECT_SPAN_TYPE: "prepare"}) == _forward.SPAN_TYPE_DEFAULT == "CHAIN"
    assert _forward.span_type({}) == "CHAIN"
    # the root kind wins over the operation (a sample root is invoke_agent, a task invoke_workflow)
    assert _forward.span_type({sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_TASK,
                         sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_WORKFLOW}) == "TASK"
    # an explicit mlflow.spanType from the sender is kept
    assert _forward.span_enrichment({_mlflow_names.SPAN_TYPE: "RETRIEVER"}, False) == {}


def _root(**extra):
    return {sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE, sc.INSPECT_RUN_ID: "r",
            sc.INSPECT_EVAL_ID: "e", sc.INSPECT_SAMPLE_ID: "s1", sc.INSPECT_SAMPLE_EPOCH: 1,
            sc.INSPECT_SAMPLE_ORDINAL: 3, sc.INSPECT_SAMPLE_TOTAL_TIME: 2.5,
            sc.INSPECT_SAMPLE_SCORE_PREFIX + "match": 1.0, sc.INSPECT_SAMPLE_MODEL_CALLS: 2,
            sc.INSPECT_SAMPLE_TOOL_ERRORS: 1, sc.INSPECT_SAMPLE_EVALUATIONS: 2, **extra}


def test_sample_summary_rides_on_the_root_and_fits_one_trace_tag():
    e = _forward.span_enrichment(_root(), is_root=True)
    assert e[_mlflow_names.TRACE_TAG_PREFIX + _mlflow_names.TRACE_TAG_KIND] == "sample"
    doc = _samples.parse_sample_summary(e[_mlflow_names.TRACE_TAG_PREFIX + _mlflow_names.TRACE_TAG_SAMPLE])
    assert doc["sample_id"] == "s1" and doc["ordinal"] == 3 and doc["evaluations"] == 2
    assert doc["values"]["total_time"] == 2.5 and doc["values"]["score/match"] == 1.0
    assert doc["counts"] == {"model_calls": 2, "tool_errors": 1}
    # content that escapes (quotes, newlines, control characters) and is far too long
    big = ('"quoted"\n\x01 ' + "é" * 50) * 400
    attrs = _root(**{sc.INSPECT_SAMPLE_INPUT: big, sc.INSPECT_SAMPLE_OUTPUT: big,
                     sc.INSPECT_SAMPLE_TARGET: "42"})
    tag = _forward.span_enrichment(attrs, is_root=True)[_mlflow_names.TRACE_TAG_PREFIX + _mlflow_names.TRACE_TAG_SAMPLE]
    assert len(tag) <= _mlflow_names.TAG_VALUE_MAX
    doc = _samples.parse_sample_summary(tag)
    assert doc["values"]["input"].endswith(_mlflow_names.TRUNCATION_MARKER) and doc["values"]["target"] == "42"
    assert doc["values"]["total_time"] == 2.5
    assert _forward.span_enrichment({sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_RUN, sc.INSPECT_RUN_ID: "r"},
                              True)[_mlflow_names.TRACE_TAG_PREFIX + _mlflow_names.TRACE_TAG_KIND] == "run"
    assert _samples.parse_sample_summary("not json") is None and _samples.parse_sample_summary(None) is None
    # bookkeeping, hidden from MLflow's tag views (its own prefix); older receivers' tag is read
    assert _mlflow_names.TRACE_TAG_SAMPLE.startswith("mlflow.")
    summary = e[_mlflow_names.TRACE_TAG_PREFIX + _mlflow_names.TRACE_TAG_SAMPLE]
    assert _samples.summary_of_trace({_mlflow_names.LEGACY_TRACE_TAG_SAMPLE: summary})["sample_id"] == "s1"
    assert _samples.summary_of_trace({_mlflow_names.TRACE_TAG_SAMPLE: summary,
                                      _mlflow_names.LEGACY_TRACE_TAG_SAMPLE: "{}"})["sample_id"] == "s1"
    assert _samples.summary_of_trace({}) is None


def _record(i: int, assessments: int, evaluations: int = 2) -> _finalize.SampleRecord:
    summary = {"v": 1, "sample_id": str(i), "epoch": 1, "ordinal": i, "status": "success",
               "values": {"total_time": float(i + 1)}, "counts": {"model_calls": 1},
               "evaluations": evaluations}
    found = tuple({"name": n, "value": 1.0 if n == "match" else "C", "label": "C",
                   "rationale": None, "source_type": "LLM_JUDGE" if n == "judge" else "CODE",
                   "source_id": n, "span_id": "ab" * 8} for n in ("match", "judge")[:assessments])
    return _finalize.SampleRecord(f"tr-{i:032x}", summary, found)


def test_task_final_from_any_order_and_complete_only_with_everything():
    import random

    records = [_record(i, 2) for i in range(5)]
    final = _finalize.task_final(records, 5)
    assert final.complete and final.n_samples == 5 and final.n_assessments == 10
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    assert _finalize.task_final(shuffled + records[:1], 5).samples == final.samples  # duplicates too
    assert final.samples["ordinal"] == [0, 1, 2, 3, 4]
    assert final.scores["value"][:2] == [None, 1.0]  # judge's "C" is a label, not a value
    assert final.scores["model_graded"][:2] == [True, False]
    assert final.aggregates["samples/received"] == 5 and final.aggregates["model_calls"] == 5
    assert final.aggregates["sample_latency/p50"] == 3.0
    assert not _finalize.task_final(records[:4], 5).complete  # a sample missing
    assert not _finalize.task_final(records[:4] + [_record(4, 1)], 5).complete  # an assessment missing
    assert not _finalize.task_final(records, None).complete  # the task span not applied yet
    assert _finalize.task_final(records, 5).marker == final.marker
    assert _finalize.task_final(records[:4] + [_record(4, 1)], 5).marker != final.marker


def test_assessment_ids_are_a_function_of_the_result_key():
    a = _evaluations.assessment_id("ab" * 16, "match", "cd" * 8)
    assert a == _evaluations.assessment_id("ab" * 16, "match", "cd" * 8) and a.startswith("a-")
    assert len(a) <= 50  # MLflow's column
    assert a != _evaluations.assessment_id("ab" * 16, "match", "") != _evaluations.assessment_id("ab" * 16, "judge", "")


def test_sample_metadata_columns():
    attrs = {sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE, sc.INSPECT_RUN_ID: "r",
             sc.INSPECT_EVAL_ID: "e", sc.INSPECT_SAMPLE_METADATA_PREFIX + "topic": "geo",
             sc.INSPECT_SAMPLE_METADATA_PREFIX + "level": 3}
    s = _samples.sample_summary("ab" * 16, 1, 2, attrs)
    assert s.values["metadata/topic"] == "geo" and s.values["metadata/level"] == 3
    assert not any(k.startswith("sample/metadata") for k in _samples.sample_step_metrics(s.values))


def test_tables_keep_exact_values():
    """The artifact tables hold what the spans said: every float digit, ints as ints, ids as
    text (pandas' writer keeps 10 significant digits and makes a gappy int column float)."""
    import io

    import pandas as pd

    data = {"sample_id": ["1", "2", "3"], "value": [1 / 3, 0.1 + 0.2, float("nan")],
            "tokens": [7, None, 9]}
    text = json.dumps(_tables.split_table(data), allow_nan=False)
    parsed = json.loads(text)
    assert parsed["columns"] == ["sample_id", "value", "tokens"]
    assert parsed["data"] == [["1", 1 / 3, 7], ["2", 0.1 + 0.2, None], ["3", None, 9]]
    frame = pd.read_json(io.StringIO(text), orient="split")  # what mlflow.load_table does
    assert frame["value"][0] == pytest.approx(1 / 3) and len(frame) == 3
