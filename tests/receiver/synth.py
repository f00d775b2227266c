"""Synthetic OTLP for receiver tests: what the hook emits for a small eval, built from the
semconv constants and deterministic ids (no Inspect run needed)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from inspect_otel import ids
from inspect_otel import semconv as sc

T0 = 1_760_000_000_000_000_000  # fixed epoch ns: deterministic timestamps
SEC = 1_000_000_000


def kv(key: str, value: Any) -> common_pb2.KeyValue:
    out = common_pb2.KeyValue(key=key)
    if isinstance(value, bool):
        out.value.bool_value = value
    elif isinstance(value, int):
        out.value.int_value = value
    elif isinstance(value, float):
        out.value.double_value = value
    elif isinstance(value, (list, tuple)):
        for v in value:
            out.value.array_value.values.append(kv("", v).value)
    else:
        out.value.string_value = str(value)
    return out


def _b(v: int, n: int) -> bytes:
    return v.to_bytes(n, "big")


@dataclass
class Item:
    """One span or log record, with the resource/scope it travels under."""

    kind: str  # "span" | "log"
    msg: Any
    scope: str = sc.INSTRUMENTATION_NAME


@dataclass
class SynthEval:
    run_id: str = "run-A"
    tasks: tuple[str, ...] = ("task_a",)
    samples: int = 3
    epochs: int = 1
    model: str = "mockllm/model"
    scorers: tuple[str, ...] = ("match",)
    model_graded: tuple[str, ...] = ()
    log_locations: dict[str, str] = field(default_factory=dict)  # task -> its eval log location
    items: list[Item] = field(default_factory=list)
    expected: dict[str, Any] = field(default_factory=dict)

    def eval_id(self, task: str) -> str:
        return f"{self.run_id}-eval-{task}"

    def sample_uuid(self, task: str, idx: int, epoch: int) -> str:
        return f"{self.run_id}-{task}-s{idx}-e{epoch}"

    def build(self) -> "SynthEval":
        run_tid = ids.run_trace_id(self.run_id)
        run_sid = ids.run_span_id(self.run_id)
        t = T0
        for task in self.tasks:
            eval_id = self.eval_id(task)
            task_sid = ids.task_span_id(self.run_id, eval_id)
            ident = {sc.INSPECT_RUN_ID: self.run_id, sc.INSPECT_EVAL_ID: eval_id,
                     sc.INSPECT_TASK_NAME: task}
            scores: dict[str, list[float]] = {s: [] for s in self.scorers}
            usage_in = usage_out = 0
            for epoch in range(1, self.epochs + 1):
                for idx in range(self.samples):
                    uuid = self.sample_uuid(task, idx, epoch)
                    tid = ids.sample_trace_id(uuid)
                    root = ids.sample_root_span_id(uuid)
                    start, end = t, t + (idx + 1) * SEC
                    t = end
                    ordinal = (epoch - 1) * self.samples + idx
                    in_tok, out_tok = 10 + idx, 5 + idx
                    usage_in += in_tok
                    usage_out += out_tok
                    sample_scores = {s: float((idx + epoch + j) % 2 == 0)
                                     for j, s in enumerate(self.scorers)}
                    for s, v in sample_scores.items():
                        scores[s].append(v)
                    root_attrs = {
                        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
                        sc.GEN_AI_AGENT_NAME: task,
                        sc.GEN_AI_CONVERSATION_ID: uuid,
                        sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_SAMPLE,
                        **ident,
                        sc.INSPECT_MODEL: self.model,
                        sc.INSPECT_SAMPLE_ID: str(idx + 1),
                        sc.INSPECT_SAMPLE_EPOCH: epoch,
                        sc.INSPECT_SAMPLE_UUID: uuid,
                        sc.INSPECT_SAMPLE_INDEX: idx,
                        sc.INSPECT_SAMPLE_ORDINAL: ordinal,
                        sc.INSPECT_SAMPLE_STATUS: "success",
                        sc.INSPECT_SAMPLE_TOTAL_TIME: float(idx + 1),
                        sc.INSPECT_SAMPLE_WORKING_TIME: float(idx + 1) / 2,
                        sc.GEN_AI_USAGE_INPUT_TOKENS: in_tok,
                        sc.GEN_AI_USAGE_OUTPUT_TOKENS: out_tok,
                        sc.INSPECT_SAMPLE_TOTAL_TOKENS: in_tok + out_tok,
                        sc.INSPECT_SAMPLE_MODEL_CALLS: 1,
                        sc.INSPECT_SAMPLE_MODEL_ERRORS: 0,
                        sc.INSPECT_SAMPLE_TOOL_CALLS: 1,
                        sc.INSPECT_SAMPLE_TOOL_ERRORS: 1 if idx == 0 else 0,
                        sc.INSPECT_SAMPLE_EVALUATIONS: len(self.scorers),
                        **{sc.INSPECT_SAMPLE_SCORE_PREFIX + s: v for s, v in sample_scores.items()},
                    }
                    root_span = self._span(tid, root, None, f"invoke_agent {task}", start, end,
                                           root_attrs, links=[(run_tid, task_sid)])
                    solver = ids.span_id(tid, "span/solvers")
                    chat = ids.span_id(tid, f"event/chat-{uuid}")
                    tool = ids.span_id(tid, f"event/tool-{uuid}")
                    self._span(tid, solver, root, "solvers", start, start + SEC // 2,
                               {sc.INSPECT_SPAN_ID: "solvers", sc.INSPECT_SPAN_TYPE: "solvers"})
                    self._span(tid, chat, solver, f"chat {self.model}", start, start + SEC // 4, {
                        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
                        sc.GEN_AI_PROVIDER_NAME: "mockllm",
                        sc.GEN_AI_REQUEST_MODEL: "model",
                        sc.GEN_AI_USAGE_INPUT_TOKENS: in_tok,
                        sc.GEN_AI_USAGE_OUTPUT_TOKENS: out_tok,
                        sc.INSPECT_MODEL: self.model,
                    }, kind=trace_pb2.Span.SPAN_KIND_CLIENT)
                    self._span(tid, tool, solver, "execute_tool add", start + SEC // 4,
                               start + SEC // 3, {
                                   sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
                                   sc.GEN_AI_TOOL_NAME: "add",
                                   sc.GEN_AI_TOOL_CALL_ID: f"call-{idx}",
                                   **({sc.ERROR_TYPE: "parsing"} if idx == 0 else {}),
                               })
                    scorers_sid = ids.span_id(tid, "span/scorers")
                    self._span(tid, scorers_sid, root, "scorers", end - SEC // 2, end,
                               {sc.INSPECT_SPAN_ID: "scorers", sc.INSPECT_SPAN_TYPE: "scorers"})
                    for s, v in sample_scores.items():
                        ssid = ids.span_id(tid, f"span/scorer-{s}")
                        graded = s in self.model_graded
                        res_attrs = {
                            sc.GEN_AI_EVALUATION_NAME: s,
                            sc.GEN_AI_EVALUATION_SCORE_VALUE: v,
                            sc.GEN_AI_EVALUATION_SCORE_LABEL: "C" if v else "I",
                            sc.GEN_AI_EVALUATION_EXPLANATION: f"{s} said {'C' if v else 'I'}",
                            sc.INSPECT_SCORE_SPAN_ID: ids.span_id_hex(ssid),
                            sc.INSPECT_SCORER_NAME: s,
                            sc.INSPECT_SCORER_MODEL_GRADED: graded,
                            **ident,
                            sc.INSPECT_SAMPLE_ID: str(idx + 1),
                            sc.INSPECT_SAMPLE_EPOCH: epoch,
                            sc.INSPECT_SAMPLE_UUID: uuid,
                        }
                        self._span(tid, ssid, scorers_sid, f"scorer {s}", end - SEC // 2, end, {
                            sc.INSPECT_SPAN_ID: f"scorer-{s}", sc.INSPECT_SPAN_TYPE: "scorer",
                            sc.INSPECT_SCORER_NAME: s, sc.INSPECT_SCORER_MODEL_GRADED: graded,
                        }, events=[(sc.EVENT_EVALUATION_RESULT, end - 1, res_attrs)])
                        self._log(tid, ssid, end - 1, res_attrs)
                    del root_span
            n = self.samples * self.epochs
            results = []
            for s, vals in scores.items():
                results.append({"name": s, "scorer": s, "reducer": None, "metric": "accuracy",
                                "value": sum(vals) / len(vals)})
            task_attrs = {
                sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_WORKFLOW,
                sc.GEN_AI_WORKFLOW_NAME: task,
                sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_TASK,
                **ident,
                sc.INSPECT_TASK_VERSION: 0,
                sc.INSPECT_TASK_ARGS: json.dumps({"level": 2, "api_key": "sk-secretsecretsecret"}),
                sc.INSPECT_MODEL: self.model,
                sc.GEN_AI_REQUEST_MODEL: "model",
                sc.GEN_AI_PROVIDER_NAME: "mockllm",
                sc.GEN_AI_REQUEST_TEMPERATURE: 0.5,
                sc.INSPECT_GENERATE_CONFIG_PREFIX + "max_connections": 4,
                sc.INSPECT_DATASET_NAME: "synthetic",
                sc.INSPECT_DATASET_SAMPLES: self.samples,
                sc.INSPECT_TASK_SOLVER: "generate",
                sc.INSPECT_TASK_SCORERS: list(self.scorers),
                sc.INSPECT_TASK_EPOCHS: self.epochs,
                sc.INSPECT_TASK_STATUS: "success",
                sc.INSPECT_TASK_SAMPLES_TOTAL: n,
                sc.INSPECT_TASK_SAMPLES_COMPLETED: n,
                sc.INSPECT_TASK_SAMPLES_ERRORED: 0,
                sc.INSPECT_TASK_RESULTS: json.dumps(results),
                **({sc.INSPECT_TASK_LOG_LOCATION: self.log_locations[task]}
                   if task in self.log_locations else {}),
                sc.INSPECT_TASK_MODEL_USAGE: json.dumps({self.model: {
                    "input_tokens": usage_in, "output_tokens": usage_out,
                    "total_tokens": usage_in + usage_out}}),
            }
            self._span(run_tid, task_sid, run_sid, f"invoke_workflow {task}", T0, t, task_attrs)
            self.expected[task] = {"results": results, "n": n, "input_tokens": usage_in}
        self._span(run_tid, run_sid, None, "invoke_workflow inspect.run", T0, t + SEC, {
            sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_WORKFLOW,
            sc.GEN_AI_WORKFLOW_NAME: "inspect.run",
            sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_RUN,
            sc.INSPECT_RUN_ID: self.run_id,
            sc.INSPECT_RUN_TASK_NAMES: list(self.tasks),
            sc.INSPECT_RUN_STATUS: "success",
        })
        return self

    def _span(self, tid: int, sid: int, parent: int | None, name: str, start: int, end: int,
              attrs: dict[str, Any], events: list[tuple[str, int, dict[str, Any]]] = (),
              links: list[tuple[int, int]] = (), kind: int = trace_pb2.Span.SPAN_KIND_INTERNAL
              ) -> trace_pb2.Span:
        span = trace_pb2.Span(trace_id=_b(tid, 16), span_id=_b(sid, 8), name=name, kind=kind,
                              start_time_unix_nano=start, end_time_unix_nano=end)
        if parent:
            span.parent_span_id = _b(parent, 8)
        span.attributes.extend(kv(k, v) for k, v in attrs.items())
        for ename, ts, eattrs in events:
            ev = span.events.add(name=ename, time_unix_nano=ts)
            ev.attributes.extend(kv(k, v) for k, v in eattrs.items())
        for ltid, lsid in links:
            span.links.add(trace_id=_b(ltid, 16), span_id=_b(lsid, 8))
        self.items.append(Item("span", span))
        return span

    def _log(self, tid: int, sid: int, ts: int, attrs: dict[str, Any]) -> None:
        # flags 0x01: the W3C "sampled" trace flag, as the hook sets it for a trace it exports
        rec = logs_pb2.LogRecord(time_unix_nano=ts, trace_id=_b(tid, 16), span_id=_b(sid, 8),
                                 event_name=sc.EVENT_EVALUATION_RESULT, flags=0x01)
        rec.attributes.extend(kv(k, v) for k, v in attrs.items())
        self.items.append(Item("log", rec))

    # --- batching -----------------------------------------------------------------------------
    def spans(self) -> list[trace_pb2.Span]:
        return [i.msg for i in self.items if i.kind == "span"]

    def logs(self) -> list[logs_pb2.LogRecord]:
        return [i.msg for i in self.items if i.kind == "log"]

    def batches(self, size: int = 50, shuffle_seed: int | None = None
                ) -> list[tuple[str, bytes]]:
        """(signal, protobuf body) requests; optionally shuffled across signals and batches."""
        items = list(self.items)
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(items)
        out = []
        for i in range(0, len(items), size):
            chunk = items[i: i + size]
            spans = [c.msg for c in chunk if c.kind == "span"]
            logs = [c.msg for c in chunk if c.kind == "log"]
            if spans:
                out.append(("traces", trace_request(spans).SerializeToString()))
            if logs:
                out.append(("logs", logs_request(logs).SerializeToString()))
        return out


def trace_request(spans: list[trace_pb2.Span], scope: str = sc.INSTRUMENTATION_NAME,
                  service: str = "inspect-ai") -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", service))
    ss = rs.scope_spans.add()
    ss.scope.name = scope
    ss.schema_url = sc.SCHEMA_URL
    ss.spans.extend(spans)
    return req


def logs_request(records: list[logs_pb2.LogRecord]) -> ExportLogsServiceRequest:
    req = ExportLogsServiceRequest()
    rl = req.resource_logs.add()
    rl.resource.attributes.append(kv("service.name", "inspect-ai"))
    sl = rl.scope_logs.add()
    sl.scope.name = sc.INSTRUMENTATION_NAME
    sl.log_records.extend(records)
    return req


def plain_span(seed: int = 7) -> trace_pb2.Span:
    """A span from some other app: no inspect scope, no inspect.* attributes."""
    rnd = random.Random(seed)
    span = trace_pb2.Span(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8), name="GET /",
                          start_time_unix_nano=T0, end_time_unix_nano=T0 + SEC)
    span.attributes.append(kv("http.method", "GET"))
    return span


def to_otlp_json(req: ExportTraceServiceRequest) -> str:
    """OTLP/JSON as the spec writes it (trace and span ids in hex, not protobuf's base64)."""
    import base64

    from google.protobuf import json_format

    body = json_format.MessageToDict(req)
    for rs in body.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for f in ("traceId", "spanId", "parentSpanId"):
                    if f in sp:
                        sp[f] = base64.b64decode(sp[f]).hex()
                for link in sp.get("links", []):
                    for f in ("traceId", "spanId"):
                        if f in link:
                            link[f] = base64.b64decode(link[f]).hex()
    return json.dumps(body)
