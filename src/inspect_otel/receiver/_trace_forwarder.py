"""The writer's trace stage: pending spans to MLflow's own ``POST /v1/traces`` in large
requests, and running traces linked to their task run.

One request per run to link (MLflow links the traces whose root is in a request to its
``x-mlflow-run-id``). A request MLflow refuses, or that fails unexpectedly, is split trace by
trace, so one trace that cannot be written holds back only itself (``_dead_letters.py``); MLflow
down or failing raises ``Transient`` (the writer's pass is retried).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from inspect_otel import semconv as sc

from . import _forward, _values
from ._dead_letters import DeadLetters, Item
from ._mlflow_io import MAX_TRACE_LINKS, Transient, chunks, http_failure
from ._ownership import TraceOwnership
from ._spool_drain import PendingSpan, SpoolDrain

FORWARD_MAX_SPANS = 1000
FORWARD_MAX_BYTES = 4 << 20
FORWARD_BATCHES_PER_PASS = 4


@dataclass(frozen=True)
class Forwarded:
    spans: int = 0  # spans now in MLflow
    did: bool = False  # anything done (sent, refused as foreign, or held back)


class TraceForwarder:
    """Spans and links of one receiver. ``rest(method, endpoint, **kw)`` is one MLflow request;
    ``foreign(trace_ids)`` the traces of another experiment among them (raises Transient when
    unknown); ``refuse(what, n, trace_ids)`` reports those never written."""

    def __init__(self, drain: SpoolDrain, dead_letters: DeadLetters,
                 mlflow: Callable[[], Any], rest: Callable[..., requests.Response],
                 experiment_id: Callable[[], str], ownership: TraceOwnership,
                 foreign: Callable[[set[str]], set[str]],
                 refuse: Callable[[str, int, set[str]], None]):
        self.drain = drain
        self.dead_letters = dead_letters
        self._mlflow = mlflow
        self._rest = rest
        self._experiment_id = experiment_id
        self.ownership = ownership
        self._foreign = foreign
        self._refuse = refuse

    # --- spans ---------------------------------------------------------------------------------
    def forward(self) -> Forwarded:
        did, total = False, 0
        for _ in range(FORWARD_BATCHES_PER_PASS):
            spans = self.drain.pending_spans(FORWARD_MAX_SPANS, FORWARD_MAX_BYTES)
            if not spans:
                break
            foreign = self._foreign({s.trace_id for s in spans})
            if foreign:  # never written: done with them here
                refused = [s for s in spans if s.trace_id in foreign]
                self.drain.mark_spans_forwarded(refused)
                self._refuse("span(s)", len(refused), foreign)
                spans = [s for s in spans if s.trace_id not in foreign]
                did = True
            # One request per run to link; spans that link nothing ride along with the largest
            # group: MLflow's per-request cost is high, its per-span cost low.
            groups: dict[str | None, list[PendingSpan]] = defaultdict(list)
            unlinked: list[PendingSpan] = []
            runs = {k: self.drain.mlflow_run_id(k) for k in {s.link_key for s in spans} if k}
            # roots whose identity MLflow refused: no run will come until it is re-driven, they
            # go in a request of their own (riding along with another run's they would be
            # linked to it)
            failed = {k for k, v in runs.items() if v is None and self.drain.identity_failed(k)}
            for s in spans:
                if s.link_key in failed:
                    groups[None].append(s)
                elif s.link_key and runs[s.link_key] is None:
                    continue  # a root whose run is not resolved yet: next pass
                else:
                    # an Inspect run's root links no run ("": it has none, see _run_tags.py)
                    (groups[runs[s.link_key] or None] if s.link_key else unlinked).append(s)
            carrier = max(groups, key=lambda k: len(groups[k]), default=None)
            groups[carrier].extend(unlinked)
            sent: list[PendingSpan] = []
            attempted = 0
            for run, group in groups.items():
                if group:
                    attempted += len(group)
                    sent += self._post_isolated(group, run)
            self.ownership.mark_ours({s.trace_id for s in sent})
            self.drain.mark_spans_forwarded(sent)
            total += len(sent)
            did = did or attempted > 0
            if len(sent) < len(spans):
                break
        return Forwarded(total, did)

    def _post_isolated(self, spans: list[PendingSpan], run: str | None) -> list[PendingSpan]:
        """Post ``spans``; what MLflow refuses or fails on unexpectedly is tried trace by trace,
        and a trace that still fails is recorded as failed. Returns the spans now in MLflow."""
        try:
            self._post(spans, run)
            return spans
        except Transient:
            raise
        except Exception as e:  # noqa: BLE001 - refused, or unexpected: the trace(s) at fault
            by_trace: dict[str, list[PendingSpan]] = defaultdict(list)
            for s in spans:
                by_trace[s.trace_id].append(s)
            if len(by_trace) == 1:
                self.dead_letters.failed(Item("trace", spans[0].trace_id), e)
                return []
            return [s for group in by_trace.values() for s in self._post_isolated(group, run)]

    def _post(self, spans: list[PendingSpan], mlflow_run_id: str | None) -> None:
        body = build_trace_request(spans).SerializeToString()
        headers = {"Content-Type": "application/x-protobuf",
                   "x-mlflow-experiment-id": self._experiment_id()}
        if mlflow_run_id:
            headers["x-mlflow-run-id"] = mlflow_run_id
        r = self._rest("POST", "/v1/traces", data=body, extra_headers=headers)
        if r.status_code >= 300:
            raise http_failure(r.status_code, r.text)

    # --- running traces ------------------------------------------------------------------------
    def link_running(self) -> int:
        """Running samples' traces (IN_PROGRESS in MLflow until their root arrives) linked to
        their task run as soon as their first spans are in, so the run shows them running.
        Returns how many were linked."""
        rows = self.drain.running_to_link()
        by_run: dict[str, list[str]] = defaultdict(list)
        for trace_id, run_id in rows:
            by_run[run_id].append(trace_id)
        linked: list[str] = []
        try:
            for run_id, trace_ids in by_run.items():
                for chunk in chunks(trace_ids, MAX_TRACE_LINKS):
                    linked += self._link_isolated(chunk, run_id)
        finally:
            if linked:
                self.drain.forget_running(linked)
        return len(linked)

    def _link_isolated(self, trace_ids: list[str], run_id: str) -> list[str]:
        try:
            self._mlflow().link_traces_to_run(["tr-" + t for t in trace_ids], run_id)
            return trace_ids
        except Transient:
            raise
        except Exception as e:  # noqa: BLE001
            if len(trace_ids) == 1:
                self.dead_letters.failed(Item("link", trace_ids[0]), e)
                return []
            return [t for one in trace_ids for t in self._link_isolated([one], run_id)]


def _kv(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def build_trace_request(spans: list[PendingSpan]) -> ExportTraceServiceRequest:
    """Regroup stored spans by resource and scope; add the enrichment attributes."""
    req = ExportTraceServiceRequest()
    resources: dict[bytes, Any] = {}
    scopes: dict[tuple[bytes, str, str], Any] = {}
    for s in spans:
        rs = resources.get(s.resource)
        if rs is None:
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(_forward.drop_nul(resource_pb2.Resource.FromString(s.resource)))
            resources[s.resource] = rs
        key = (s.resource, s.scope_name, s.scope_version)
        ss = scopes.get(key)
        if ss is None:
            ss = rs.scope_spans.add()
            ss.scope.name = s.scope_name.replace("\x00", "")
            ss.scope.version = s.scope_version.replace("\x00", "")
            ss.schema_url = sc.SCHEMA_URL if s.scope_name == _values.INSPECT_SCOPE else ""
            scopes[key] = ss
        span = _forward.drop_nul(trace_pb2.Span.FromString(s.payload))
        if s.enrich:
            kept = [kv for kv in span.attributes if _forward.forwarded_attribute(kv.key, s.enrich)]
            if len(kept) < len(span.attributes):
                del span.attributes[:]
                span.attributes.extend(kept)
            span.attributes.extend(_kv(k, v) for k, v in sorted(s.enrich.items()))
        ss.spans.append(span)
    return req
