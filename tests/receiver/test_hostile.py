"""Hostile input, in process (no servers): decoding never raises anything but a 400, the spool
isolates bad spans and records, counts pending bytes exactly, and expires orphaned results.
The same shapes run against a real receiver process in test_fuzz.py."""

from __future__ import annotations

import json
import random
import string

import pytest
from opentelemetry.proto.logs.v1 import logs_pb2

from inspect_otel import semconv as sc
from inspect_otel.receiver import _decode as dec
from inspect_otel.receiver import (
    _forward,
    _mlflow_names,
    _run_metrics,
    _run_params,
    _run_tags,
    _samples,
    _tables,
    _validation,
    _values,
)
from inspect_otel.receiver._spool import RESULT_EXPIRED, Spool, SpoolFull
from tests.receiver.hostile import (
    BAD_SPANS,
    INTERNAL,
    bad_spans,
    deep_json,
    deep_value,
    list_value,
    nested_json_value,
    nested_protobuf_body,
    padded,
    sample_root,
    span_json,
    with_attrs,
    with_flags,
)
from tests.receiver.synth import SynthEval, logs_request, to_otlp_json, trace_request

MALFORMED_JSON = {
    "resource_spans_of_strings": b'{"resourceSpans":["a"]}',
    "resource_spans_int": b'{"resourceSpans":1}',
    "scope_spans_ints": b'{"resourceSpans":[{"scopeSpans":[1,2]}]}',
    "spans_of_lists": b'{"resourceSpans":[{"scopeSpans":[{"spans":[[1]]}]}]}',
    "links_string": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"links":"x"}]}]}]}',
    "attributes_ints": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[1]}]}]}]}',
    "attribute_value_list": span_json("[1, 2]"),
    "huge_int_time": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":'
                     + b"9" * 40 + b"}]}]}]}",
    "huge_int_value": span_json('{"intValue": %s}' % ("9" * 30)),
    "int_over_4300_digits": span_json('{"intValue": %s}' % ("9" * 5000)),
    "nan_token": span_json('{"doubleValue": NaN}'),
    "infinity_token": span_json('{"doubleValue": -Infinity}'),
    "duplicate_keys": b'{"resourceSpans":[],"resourceSpans":[]}',
    "invalid_utf8": b'{"resourceSpans":[{"scopeSpans":[{"scope":{"name":"\xff\xfe"}}]}]}',
    "lone_surrogate": span_json('{"stringValue":"\\ud800"}'),
    "kvlist_1000_deep": span_json(nested_json_value("kv", 1000)),
    "array_5000_deep": span_json(nested_json_value("arr", 5000)),
    "raw_list_100000_deep": b"[" * 100_000 + b"]" * 100_000,
    "object_3000_deep": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    # under the JSON bound, over protobuf's 100 nested messages
    "kvlist_40_deep": span_json(nested_json_value("kv", 40)),
    "not_an_object": b"[1, 2]",
    "empty": b"",
    "truncated": b'{"resourceSpans": [',
    "metric_kind_list": b'{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":[1]}]}]}]}',
    "bad_hex": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}',
    "id_number": b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":5}]}]}]}',
}


@pytest.mark.parametrize("case", sorted(MALFORMED_JSON))
def test_malformed_json_is_a_short_400(case):
    signal = "metrics" if "metric" in case else "traces"
    with pytest.raises(dec.BadRequest) as e:
        dec.decode(signal, MALFORMED_JSON[case], "application/json", None, 64 << 20)
    assert e.value.status == 400
    assert len(e.value.message) <= dec.MAX_MESSAGE_CHARS
    assert not INTERNAL.search(e.value.message), e.value.message


@pytest.mark.parametrize("body", [b"\xff\xff\xff\x0f garbage", b"\x0a\xff\xff\xff\xff\x0f",
                                  nested_protobuf_body(5000), b"\x0a\x05\x12\x03\x0a\x01"],
                         ids=["garbage", "length_overflow", "nested_5000", "truncated"])
def test_malformed_protobuf_is_a_short_400(body):
    for mt in dec.PROTOBUF_TYPES:
        with pytest.raises(dec.BadRequest) as e:
            dec.decode("traces", body, mt, None, 64 << 20)
        assert e.value.status == 400 and len(e.value.message) <= dec.MAX_MESSAGE_CHARS


def test_random_mutations_never_raise_anything_else():
    """Seeded byte-level mutations of valid bodies: each decodes or is a 400, never another
    exception (the test_fuzz.py receiver process sees the same on both transports)."""
    ev = SynthEval(run_id="mutate", samples=2).build()
    pb = trace_request(ev.spans()).SerializeToString()
    js = to_otlp_json(trace_request(ev.spans())).encode()
    rnd = random.Random(12)
    outcomes = {"ok": 0, "400": 0}
    for i in range(300):
        base, mt = (pb, dec.PROTOBUF) if i % 2 else (js, dec.JSON)
        body = bytearray(base)
        for _ in range(rnd.randint(1, 8)):
            pos = rnd.randrange(len(body))
            op = rnd.random()
            if op < 0.4:
                body[pos] = rnd.randrange(256)
            elif op < 0.7:
                del body[pos: pos + rnd.randint(1, 50)]
            else:
                body[pos:pos] = rnd.choice([b"[", b"{", b'"', b"\\", b"\x00", b"9" * 30, b"-1"])
        try:
            dec.decode("traces", bytes(body), mt, None, 64 << 20)
            outcomes["ok"] += 1
        except dec.BadRequest as e:
            assert e.status == 400 and not INTERNAL.search(e.message), e.message
            outcomes["400"] += 1
    assert outcomes["ok"] > 0 and outcomes["400"] > 0, outcomes


def test_json_depth_matches_a_reference_scan():
    def reference(text: str) -> int:
        depth = deepest = 0
        in_string = escaped = False
        for ch in text:
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch in "[{":
                depth += 1
                deepest = max(deepest, depth)
            elif ch in "]}":
                depth -= 1
        return deepest

    rnd = random.Random(3)

    def gen(n: int) -> object:
        if n == 0 or rnd.random() < 0.2:
            return rnd.choice([1, "x[{", '\\"[', "\\", None, "é]"])
        if rnd.random() < 0.5:
            return [gen(n - 1) for _ in range(rnd.randint(0, 3))]
        return {f"k{i}{{": gen(n - 1) for i in range(rnd.randint(0, 3))}

    for _ in range(1000):
        text = json.dumps(gen(rnd.randint(0, 14)), ensure_ascii=rnd.random() < 0.5)
        want = reference(text)
        for limit in range(max(0, want - 1), want + 2):
            assert dec.json_depth_exceeds(text, limit) == (want > limit), (text, limit)


def test_content_types():
    body = trace_request([]).SerializeToString()
    for ctype in ("application/x-protobuf", "application/protobuf",
                  "application/protobuf; encoding=binary", "Application/Protobuf"):
        _, mt = dec.decode("traces", body, ctype, None, 1000)
        assert mt in dec.PROTOBUF_TYPES
    for ctype in ("application/protobuf; encoding=json", "application/grpc", "text/plain", None):
        with pytest.raises(dec.BadRequest) as e:
            dec.check_content_type(ctype)
        assert e.value.status == 415
    assert dec.error_body(400, "x", "application/protobuf")[1] == "application/protobuf"


# --- spool: per-span isolation -------------------------------------------------------------------
def _consistent(spool: Spool) -> None:
    assert spool.pending_bytes == spool.db.count_pending_bytes()


def test_one_bad_span_is_rejected_alone(tmp_path):
    """Each bad span next to good ones: 200-style partial success naming the attribute, the good
    spans stored (defect 2: an ordinal >= 2**63 used to fail the whole request with 503)."""
    ev = SynthEval(run_id="iso", samples=2).build()
    good = ev.spans()
    spool = Spool(tmp_path / "s.db")
    bad = bad_spans(ev)
    mixed = good[:3] + bad + good[3:]
    res = spool.ingest_traces(trace_request(mixed))
    assert res.accepted == len(good) and res.rejected == len(bad), res
    for _, needle in BAD_SPANS.values():
        assert needle in res.message, (needle, res.message)
    assert spool.stats()["spans"] == len(good)
    _consistent(spool)
    # the largest ordinal that fits is stored exactly (no float rounding on the way)
    edge = with_attrs(sample_root(ev, 1), {sc.INSPECT_SAMPLE_ORDINAL: (1 << 63) - 1})
    assert spool.ingest_traces(trace_request([edge])).rejected == 0


def test_bad_evaluation_event_rejects_its_span_alone(tmp_path):
    ev = SynthEval(run_id="isoevent", samples=2).build()
    scorer = next(s for s in ev.spans() if s.events)
    deep, late = trace_pb2_copy(scorer), trace_pb2_copy(scorer)
    deep.span_id, late.span_id = b"\x0d" * 8, b"\x0e" * 8
    deep.events[0].attributes.add(key="x").value.CopyFrom(deep_value(_values.MAX_VALUE_DEPTH + 1))
    late.events[0].time_unix_nano = (1 << 64) - 1
    spool = Spool(tmp_path / "s.db")
    res = spool.ingest_traces(trace_request([deep, late] + ev.spans()))
    assert res.rejected == 2 and res.accepted == len(ev.spans()), res
    assert "nested deeper" in res.message and "timestamps" in res.message
    _consistent(spool)


def trace_pb2_copy(span):
    out = type(span)()
    out.CopyFrom(span)
    return out


def test_unexpected_failure_of_one_span_rolls_back_only_that_span(tmp_path, monkeypatch):
    """Whatever raises while one span is stored (here a fault injected into the mapping) undoes
    that span's writes alone and rejects it; its neighbours are committed."""
    ev = SynthEval(run_id="rollback", samples=2).build()
    victim = sample_root(ev, 1)
    real = _samples.sample_summary

    def failing(trace_id, start_ns, end_ns, attrs):
        if trace_id == victim.trace_id.hex():
            raise TypeError("injected")
        return real(trace_id, start_ns, end_ns, attrs)

    monkeypatch.setattr(_samples, "sample_summary", failing)
    spool = Spool(tmp_path / "s.db")
    res = spool.ingest_traces(trace_request(ev.spans()))
    assert res.rejected == 1 and "could not store" in res.message
    assert not INTERNAL.search(res.message)
    rows = spool.db.read("SELECT COUNT(*) FROM spans WHERE trace_id = ? AND span_id = ?",
                       (victim.trace_id.hex(), victim.span_id.hex()))
    assert rows[0][0] == 0  # the span row written before the failure was rolled back
    assert spool.stats()["samples"] == 1 and spool.stats()["spans"] == len(ev.spans()) - 1
    _consistent(spool)


def test_bad_log_records_are_rejected_alone(tmp_path):
    ev = SynthEval(run_id="isolog", samples=2).build()
    good = ev.logs()
    bad = []
    for changes in ({"inspect.eval_id": list_value("x")}, {"x": deep_value(20)}):
        rec = logs_pb2.LogRecord()
        rec.CopyFrom(good[0])
        for key, value in changes.items():
            rec.attributes.add(key=key).value.CopyFrom(value)
        bad.append(rec)
    late = logs_pb2.LogRecord()
    late.CopyFrom(good[1])
    late.time_unix_nano = (1 << 64) - 1
    bad.append(late)
    spool = Spool(tmp_path / "s.db")
    res = spool.ingest_logs(logs_request(bad + good))
    assert res.accepted == len(good) and res.rejected == len(bad), res
    _consistent(spool)


# --- spool: exact accounting under overwrites ------------------------------------------------------
def test_overwrites_keep_pending_bytes_exact(tmp_path):
    """Defect 3: the same (trace, span) re-sent with other content replaces its pending size.
    Random overwrites of a few spans with sizes from bytes to megabytes, partial drains in
    between: the running count always equals a recount, drains to 0, and survives a reopen."""
    ev = SynthEval(run_id="acct", samples=3).build()
    spans = ev.spans()[:6]
    path = tmp_path / "s.db"
    spool = Spool(path)
    rnd = random.Random(5)
    for step in range(120):
        picked = rnd.sample(spans, rnd.randint(1, 3))
        sizes = [rnd.choice([0, 10, 1000, 50_000, 1 << 20]) for _ in picked]
        spool.ingest_traces(trace_request(
            [padded(s, n, rnd.randrange(3)) for s, n in zip(picked, sizes)]))
        if step % 7 == 0:
            spool.drain.mark_spans_forwarded(spool.drain.pending_spans(rnd.randint(1, 4), 1 << 30))
        _consistent(spool)
        if step % 40 == 39:
            spool.close()
            spool = Spool(path)  # restart: recount from the database
            _consistent(spool)
    while pending := spool.drain.pending_spans(1000, 1 << 30):
        spool.drain.mark_spans_forwarded(pending)
    spool.drain.mark_results_applied(spool.drain.pending_results())  # the scorer spans' evaluation events
    st = spool.stats()
    assert st["pending_spans"] == st["pending_results"] == 0
    assert spool.pending_bytes == 0 and Spool(path).pending_bytes == 0


def test_spool_limit_refuses_only_when_really_full(tmp_path):
    """The issue's sequence: 5 MB, then the same span at 10 MB, then at 1 MB, under an 8 MB
    limit. About 1 MB is pending, so a small request is accepted; it was refused with 503."""
    mb = 1 << 20
    ev = SynthEval(run_id="full", samples=2).build()
    span, other = ev.spans()[0], ev.spans()[1]
    spool = Spool(tmp_path / "s.db", max_bytes=8 * mb)
    spool.ingest_traces(trace_request([padded(span, 5 * mb)]))
    spool.ingest_traces(trace_request([padded(span, 10 * mb)]))
    assert spool.is_full()  # 10 MB really pending
    with pytest.raises(SpoolFull):
        spool.ingest_traces(trace_request([other]))
    spool.drain.mark_spans_forwarded(spool.drain.pending_spans(10, 1 << 30))
    spool.ingest_traces(trace_request([padded(span, 1 * mb)]))
    assert mb <= spool.pending_bytes < 1.01 * mb and not spool.is_full()
    assert spool.ingest_traces(trace_request([padded(other, 1000)])).accepted == 1
    spool.ingest_traces(trace_request([padded(other, 7 * mb)]))  # 8 MB pending: full
    assert spool.is_full()
    with pytest.raises(SpoolFull):
        spool.ingest_traces(trace_request([ev.spans()[2]]))
    _consistent(spool)


# --- spool: orphaned evaluation results ------------------------------------------------------------
def test_orphans_expire_after_ttl_survive_reopen_and_revive(tmp_path):
    """Defect 4: results whose trace never arrives stop being pending after the TTL (also
    across a restart), free their bytes, and come back if the trace arrives after all."""
    ev = SynthEval(run_id="orphan", samples=2).build()
    path = tmp_path / "s.db"
    spool = Spool(path, orphan_ttl_s=60)
    spool.ingest_logs(logs_request(with_flags(ev.logs(), 0x01)))
    st = spool.stats()
    n = len(ev.logs())
    assert st["orphaned_results"] == n and st["pending_results"] == 0
    assert spool.pending_bytes > 0
    received = spool.db.read("SELECT MIN(received) FROM results")[0][0]
    assert spool.expire_orphans(now=received + 59) == 0
    spool.close()
    spool = Spool(path, orphan_ttl_s=60)  # restart before the TTL: still waiting, still counted
    assert spool.stats()["orphaned_results"] == n and spool.pending_bytes > 0
    assert spool.expire_orphans(now=received + 61) == n
    st = spool.stats()
    assert st["expired_results"] == n and st["orphaned_results"] == 0
    assert spool.pending_bytes == 0
    spool.close()
    spool = Spool(path, orphan_ttl_s=60)  # restart after: expired stays expired, not counted
    assert spool.stats()["expired_results"] == n and spool.pending_bytes == 0
    # the traces arrive after all: their results are pending again (and counted)
    spool.ingest_traces(trace_request(ev.spans()))
    st = spool.stats()
    assert st["expired_results"] == 0 and st["pending_results"] == n
    _consistent(spool)
    spool.drain.mark_spans_forwarded(spool.drain.pending_spans(1000, 1 << 30))
    assert len(spool.drain.pending_results()) == n


def test_sampled_out_orphans_expire_when_their_task_is_finalized(tmp_path):
    """A result whose log record says its trace was not sampled expires once its task is
    finalized, without waiting for the TTL; one that says "sampled" keeps waiting."""
    unsampled = SynthEval(run_id="unsampled", samples=2).build()
    sampled = SynthEval(run_id="sampled", samples=2).build()
    spool = Spool(tmp_path / "s.db", orphan_ttl_s=3600)
    spool.ingest_logs(logs_request(with_flags(unsampled.logs(), 0x00)))
    spool.ingest_logs(logs_request(with_flags(sampled.logs(), 0x01)))
    soon = spool.db.read("SELECT MAX(received) FROM results")[0][0] + 1
    assert spool.expire_orphans(now=soon) == 0  # nothing finalized, TTL far away
    # the task spans (and run spans) of both evals arrive; their samples were sampled out
    for ev in (unsampled, sampled):
        task_and_run = [s for s in ev.spans() if s.trace_id == ev.spans()[-1].trace_id]
        spool.ingest_traces(trace_request(task_and_run))
    for ident in spool.drain.identities_without_run():
        spool.drain.set_mlflow_run_id(ident["key"], "mlflow-" + ident["key"])
    for task in spool.drain.pending_tasks():  # the writer applied the task spans...
        spool.drain.mark_task_applied(task["eval_id"], task["digest"])
    for ev in spool.drain.evals_to_check():  # ...and finalized the tasks
        spool.drain.mark_finalized(ev["eval_id"], ev["rev"])
    expired = spool.expire_orphans(now=soon)
    assert expired == len(unsampled.logs())
    rows = spool.db.read("SELECT DISTINCT eval_id FROM results WHERE applied = ?", (RESULT_EXPIRED,))
    assert rows == [(unsampled.eval_id("task_a"),)]
    assert spool.stats()["orphaned_results"] == len(sampled.logs())
    _consistent(spool)


# --- mapping: nothing a sender puts in an attribute drops a task ----------------------------------
@pytest.mark.parametrize("depth", [_values.MAX_ATTRIBUTE_JSON_DEPTH + 1, 5000, 200_000])
def test_deeply_nested_json_attributes_are_kept_as_text_and_tagged(depth):
    """Defect 1 (writer side): deep JSON in inspect.task.args or the model usage made the task's
    params and its finalization fail with RecursionError. Now it is a truncated text param and
    a tag, and everything else of the task maps as usual."""
    attrs = {sc.INSPECT_TASK_NAME: "t", sc.INSPECT_TASK_ARGS: deep_json(depth),
             sc.INSPECT_TASK_MODEL_USAGE: "[" * depth + "]" * depth,
             sc.INSPECT_TASK_RESULTS: json.dumps([{"name": "m", "metric": "acc", "value": 1}]),
             sc.INSPECT_TASK_SAMPLES_TOTAL: 3}
    params = _run_params.task_params(attrs)
    assert params["task"] == "t"
    assert params["task_args"].startswith('{"a":{"a":') and len(params["task_args"]) <= 6000
    assert params["model_usage"].startswith("[[[") and "results" not in params
    metrics = _run_metrics.task_metrics(attrs)
    assert metrics["m/acc"] == 1 and metrics["samples/total"] == 3
    assert _tables.model_usage_table(attrs) == {"model": [], **{f: [] for f, _ in
                                                           _run_metrics.MODEL_USAGE_FIELDS}}
    tags = _run_tags.task_run_tags("e", attrs)
    assert tags[_mlflow_names.TAG_UNPARSED] == f"{sc.INSPECT_TASK_ARGS},{sc.INSPECT_TASK_MODEL_USAGE}"
    # JSON within the bound is structure as before, and no tag
    ok = {**attrs, sc.INSPECT_TASK_ARGS: deep_json(3), sc.INSPECT_TASK_MODEL_USAGE: "{}"}
    assert _run_params.task_params(ok)["task_args.a"] == '{"a":{"a":1}}'
    assert _mlflow_names.TAG_UNPARSED not in _run_tags.task_run_tags("e", ok)


def test_metric_and_param_keys_are_always_valid_for_mlflow():
    """Any score or argument name becomes a key MLflow's own validators accept (an invalid one
    made MLflow refuse the whole batch: every metric of the task)."""
    from mlflow.utils.validation import _validate_metric_name, _validate_param_name

    rnd = random.Random(9)
    alphabet = string.ascii_letters + "/.:- _\\\x00é?*"
    names = ["", "/", "//", ".", "..", "a/", "/a", "a//b", "a/./b", "../x", "x/..", "a" * 300,
             "a/" * 200, " / ", "a" * 248 + "/.", "a" * 248 + "/.abc", "a" * 247 + "/..x", "a" * 249 + "//"]
    names += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30))) for _ in range(500)]
    for name in names:
        for key in (_mlflow_names.metric_key(name), _mlflow_names.metric_key(f"sample/{name}"),
                    _mlflow_names.metric_key(f"{name}/accuracy")):
            _validate_metric_name(key)
            _validate_param_name(key)
    assert _mlflow_names.metric_key("usage/openai/gpt-4o/input_tokens") == "usage/openai/gpt-4o/input_tokens"


def test_value_problem():
    assert _validation.value_problem({sc.INSPECT_SAMPLE_ORDINAL: 3, sc.INSPECT_RUN_ID: "r"}, (1, 2)) is None
    assert _validation.value_problem({sc.INSPECT_SAMPLE_ORDINAL: "7"}) is None
    assert _validation.value_problem({sc.INSPECT_SAMPLE_EPOCH: 2.0}) is None
    assert "out of the 64-bit" in _validation.value_problem({sc.INSPECT_SAMPLE_ORDINAL: 1 << 63})
    assert "must be an integer" in _validation.value_problem({sc.INSPECT_SAMPLE_EPOCH: 1.5})
    assert "must be an integer" in _validation.value_problem({sc.INSPECT_SAMPLE_EPOCH: float("nan")})
    assert "must be a string" in _validation.value_problem({sc.INSPECT_EVAL_ID: 5})
    assert "backslash" in _validation.value_problem({sc.INSPECT_RUN_ID: "r\\"})
    assert _validation.value_problem({sc.INSPECT_RUN_ID: "7Qx2pLm9ZkA3bC4dE5fG6h"}) is None
    assert "timestamps" in _validation.value_problem({}, (1 << 63,))


def test_drop_nul_cleans_every_string_mlflow_may_store():
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    from tests.receiver.synth import kv

    span = trace_pb2.Span(name="a\x00b", trace_state="t\x00")
    span.status.message = "m\x00"
    span.attributes.extend([kv("k\x00", "v\x00"), kv("l", ["x\x00", "y"])])
    nested = span.attributes.add(key="deep")
    nested.value.CopyFrom(deep_value(3))
    nested.value.kvlist_value.values[0].key = "q\x00"
    event = span.events.add(name="e\x00")
    event.attributes.append(kv("z", "\x00"))
    link = span.links.add(trace_state="\x00")
    link.attributes.append(kv("w\x00", "\x00"))
    assert "\\000" in str(span)
    assert "\\000" not in str(_forward.drop_nul(span))
    assert span.name == "ab" and span.attributes[0].key == "k"
    resource = resource_pb2.Resource()
    resource.attributes.append(kv("service.name", "svc\x00"))
    assert _forward.drop_nul(resource).attributes[0].value.string_value == "svc"


def test_root_inputs_and_outputs_carry_no_nul():
    attrs = {sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE, sc.INSPECT_MODEL: "m\x00",
             sc.INSPECT_SAMPLE_ID: "1\x00", sc.INSPECT_SAMPLE_SCORE_PREFIX + "match\x00": 1.0}
    e = _forward.span_enrichment(attrs, is_root=True)
    assert not any("\x00" in v or "\\u0000" in v for v in e.values()), e
    assert json.loads(e[_mlflow_names.SPAN_INPUTS])["sample_id"] == "1"
    messages = json.dumps([{"role": "user\x00", "parts": [{"type": "text", "content": "q\x00"}]},
                           {"role": "assistant", "parts": [{"type": "tool_call", "id": "c\x00",
                                                            "name": "f", "arguments": {"k\x00": 1}}]}])
    e = _forward.span_enrichment({**attrs, sc.INSPECT_SAMPLE_INPUT: "a\x00b",
                                  sc.INSPECT_SAMPLE_MESSAGES: messages}, is_root=True)
    assert not any("\x00" in v or "\\u0000" in v for v in e.values()), e
    assert json.loads(e[_mlflow_names.SPAN_INPUTS])["input"] == "ab"
    chat = json.loads(e["mlflow.chat.messages"])
    assert chat[0] == {"role": "user", "content": "q"}
    assert chat[1]["tool_calls"][0]["id"] == "c"


def test_spool_of_an_older_receiver_opens_and_keeps_its_data(tmp_path):
    """A spool written before task aggregates came from MLflow has two more span columns
    (category, is_error NOT NULL): it opens, keeps what it holds, and takes new spans."""
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)  # the older spans table, one span in it
    db.execute("""CREATE TABLE spans(
        trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT NOT NULL,
        resource TEXT NOT NULL, scope_name TEXT NOT NULL, scope_version TEXT NOT NULL,
        payload BLOB, digest TEXT NOT NULL, pending INTEGER NOT NULL, nbytes INTEGER NOT NULL,
        category TEXT, is_error INTEGER NOT NULL, link_key TEXT, enrich TEXT,
        received REAL NOT NULL, PRIMARY KEY(trace_id, span_id))""")
    db.execute("INSERT INTO spans VALUES('t', 's', '', 'r', 'x', '1', x'00', 'd', 0, 1, 'model', 0,"
               " NULL, NULL, 0)")
    db.commit()
    db.close()
    ev = SynthEval(run_id="old-spool", samples=2).build()
    spool = Spool(path)
    columns = {r[1] for r in spool.db.read("PRAGMA table_info(spans)")}
    assert not {"category", "is_error"} & columns
    assert spool.stats()["spans"] == 1
    assert spool.ingest_traces(trace_request(ev.spans())).rejected == 0
    assert len(spool.drain.pending_spans(1000, 1 << 30)) == len(ev.spans())


def _sample_start(trace_id: bytes, **attrs: str) -> logs_pb2.LogRecord:
    rec = logs_pb2.LogRecord(time_unix_nano=1_700_000_000_000_000_000, trace_id=trace_id,
                             span_id=b"\x01" * 8, event_name=sc.EVENT_SAMPLE_START)
    for key, value in attrs.items():
        rec.attributes.add(key=key).value.string_value = value
    return rec


def test_running_sample_markers_are_validated_bounded_and_released(tmp_path, monkeypatch):
    """inspect.sample.start (the live hook's running marker) is untrusted input too: it needs a
    trace id and the run and eval ids, the running samples it makes the receiver remember are
    bounded, and the root of the trace releases its row."""
    from inspect_otel.receiver import _spool as spool_module

    spool = Spool(tmp_path / "s.db")
    ids_ = {sc.INSPECT_RUN_ID: "r1", sc.INSPECT_EVAL_ID: "e1"}
    res = spool.ingest_logs(logs_request([
        _sample_start(b"\x02" * 16, **ids_),
        _sample_start(b"\x03" * 16, **{sc.INSPECT_RUN_ID: "r1"}),  # no eval id
        _sample_start(b"\x00" * 16, **ids_),  # no trace id
    ]))
    assert res.accepted == 1 and res.rejected == 2 and "inspect.eval_id" in res.message
    assert spool.db.read("SELECT trace_id, eval_id FROM running") == [("02" * 16, "e1")]
    assert spool.drain.identities_without_run()  # the task's run is claimed before any span
    monkeypatch.setattr(spool_module, "MAX_RUNNING", 1)
    res = spool.ingest_logs(logs_request([_sample_start(b"\x04" * 16, **ids_)]))
    assert res.rejected == 1 and "bounded" in res.message
    # the sample's root arrives: it links its trace itself, the row goes
    ev = SynthEval(run_id="r1", samples=1).build()
    root = sample_root(ev, 0)
    root.trace_id = b"\x02" * 16
    spool.ingest_traces(trace_request([root]))
    assert spool.db.read("SELECT COUNT(*) FROM running") == [(0,)]
