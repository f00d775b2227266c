"""The writer's assessment stage: one ``create_assessment`` per evaluation result, with an id
derived from the result's key, on the sample trace (as MLflow's evaluations put feedback).

Results of traces forwarded here go first; then results of traces this receiver never saw
(with several receivers another one may forward them): one result per such trace probes
MLflow (with backoff while the trace is not there), the rest follow. MLflow has no batch call
for assessments: they are written concurrently (an MLflow with several uvicorn workers answers
each request ~40 ms late on Linux, its workers' sockets lack TCP_NODELAY; only concurrency hides
that). Each result stands alone: one that cannot be written is held back or becomes a dead
letter (``_dead_letters.py``) while the others are applied.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import requests

from . import _evaluations, _mlflow_names
from ._dead_letters import DeadLetters, Item, result_key
from ._mlflow_io import Transient, http_failure
from ._spool import eval_key
from ._spool_drain import SpoolDrain

# A result whose trace this receiver never saw is tried against MLflow this often (another
# receiver may forward the trace), backing off to the maximum.
PROBE_MIN_S, PROBE_MAX_S = 0.5, 10.0
PROBE_TRACES_PER_PASS = 100
# A result is first tried against MLflow this long after it arrived: with the Collector's
# trace-id routing its trace comes to this receiver too, only later (the SDK's span batches leave
# every 5 s by default, log records every second).
PROBE_GRACE_S = 5.0
AWAITING_SCAN = 2000  # results awaiting a trace looked at per pass (newest first)

APPLIED, NO_TRACE, FAILED = "applied", "no_trace", "failed"


class TraceMissing(Exception):
    """MLflow has no trace for a result although this receiver forwarded it: not a definite
    refusal, so retried (and a dead letter if it stays so)."""


def _ms(ns: int | None) -> int | None:
    return int(ns // 1_000_000) if ns else None


@dataclass(frozen=True)
class Assessed:
    applied: int = 0  # results now assessments in MLflow
    did: bool = False  # anything done (applied, refused as foreign, held back)


class AssessmentWriter:
    """``rest(method, endpoint, **kw)`` is one MLflow request; ``foreign``/``refuse`` as in
    ``TraceForwarder``; ``pool`` writes the assessments concurrently."""

    def __init__(self, drain: SpoolDrain, dead_letters: DeadLetters,
                 rest: Callable[..., requests.Response], pool: Executor,
                 foreign: Callable[[set[str]], set[str]],
                 refuse: Callable[[str, int, set[str]], None]):
        self.drain = drain
        self.dead_letters = dead_letters
        self._rest = rest
        self._pool = pool
        self._foreign = foreign
        self._refuse = refuse
        # results whose trace is not (yet) in MLflow: (trace id) -> (next try, backoff)
        self._probe: dict[str, tuple[float, float]] = {}

    def due_times(self) -> Iterable[float]:
        """When each probe is next due (monotonic clock)."""
        return [t for t, _ in self._probe.values()]

    def apply(self) -> Assessed:
        ready = self.drain.pending_results()
        now = time.monotonic()
        by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
        awaiting = self.drain.results_awaiting_trace(AWAITING_SCAN)
        if len(awaiting) < AWAITING_SCAN:  # forget traces no result waits for (applied, expired)
            waiting_for = {r["trace_id"] for r in awaiting}
            self._probe = {t: v for t, v in self._probe.items() if t in waiting_for}
        young = time.time() - PROBE_GRACE_S
        for r in awaiting:
            if r["received"] > young and r["trace_id"] not in self._probe:
                continue  # its trace is most likely still on its way here
            if self._probe.get(r["trace_id"], (0.0, 0.0))[0] <= now and (
                    r["trace_id"] in by_trace or len(by_trace) < PROBE_TRACES_PER_PASS):
                by_trace[r["trace_id"]].append(r)
        foreign = self._foreign({r["trace_id"] for r in ready} | set(by_trace))
        if foreign:  # never written: done with them here
            refused = [r for r in ready if r["trace_id"] in foreign] + [
                r for t in foreign for r in by_trace.pop(t, [])]
            self.drain.mark_results_applied(refused)
            self._refuse("evaluation result(s)", len(refused), foreign)
            ready = [r for r in ready if r["trace_id"] not in foreign]
        probes = [rows[0] for rows in by_trace.values()]
        if not ready and not probes:
            return Assessed(0, bool(foreign))
        applied: list[dict[str, Any]] = []
        transient: Transient | None = None

        def settle(rows: list[dict[str, Any]], probing: bool) -> list[str]:
            nonlocal transient
            found = []
            for r, (outcome, error) in zip(rows, self._pool.map(self._create, rows)):
                if outcome == APPLIED:
                    applied.append(r)
                    found.append(r["trace_id"])
                    self._probe.pop(r["trace_id"], None)
                elif outcome == NO_TRACE and probing:
                    _, backoff = self._probe.get(r["trace_id"], (0.0, PROBE_MIN_S / 2))
                    backoff = min(PROBE_MAX_S, backoff * 2)
                    self._probe[r["trace_id"]] = (now + backoff, backoff)
                else:
                    item = Item("result", result_key(r["trace_id"], r["span_id"], r["name"]))
                    try:
                        self.dead_letters.failed(item, error or TraceMissing(
                            f"MLflow has no trace tr-{r['trace_id']}"))
                    except Transient as e:  # MLflow failing: the rest of the pass waits
                        transient = e
            return found

        settle(ready, probing=False)
        for trace_id in settle(probes, probing=True):
            settle(by_trace[trace_id][1:], probing=True)
        if applied:
            self.drain.mark_results_applied(applied)
        if transient is not None:
            raise transient
        return Assessed(len(applied), True)

    def _create(self, r: dict[str, Any]) -> tuple[str, BaseException | None]:
        """Outcome of writing one result: (APPLIED | NO_TRACE | FAILED, the failure)."""
        try:
            return self._create_assessment(r), None
        except Exception as e:  # noqa: BLE001 - sorted by the dead letters (transient included)
            return FAILED, e

    def _create_assessment(self, r: dict[str, Any]) -> str:
        from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback
        from mlflow.protos.service_pb2 import CreateAssessment
        from mlflow.utils.proto_json_utils import message_to_json

        trace_id = "tr-" + r["trace_id"]
        aid = _evaluations.assessment_id(r["trace_id"], r["name"], r["span_id"])
        ts = _ms(r.get("time_ns"))
        # On the trace, as MLflow's evaluations put feedback (the trace opens with its scores);
        # the scorer span and the task run it belongs to are named in the metadata.
        metadata = dict(r.get("metadata") or {})
        if r["span_id"]:
            metadata[_mlflow_names.ASSESSMENT_SCORER_SPAN] = r["span_id"]
        task_run = self.drain.mlflow_run_id(eval_key(r["eval_id"])) if r.get("eval_id") else None
        if task_run:
            metadata[_mlflow_names.ASSESSMENT_SOURCE_RUN] = task_run
        feedback = Feedback(
            name=r["name"],
            value=r.get("value") if r.get("value") is not None else r.get("label"),
            source=AssessmentSource(
                source_type=(AssessmentSourceType.LLM_JUDGE if r.get("model_graded")
                             else AssessmentSourceType.CODE),
                source_id=r.get("scorer") or r["name"]),
            rationale=r.get("rationale"), metadata=metadata or None,
            create_time_ms=ts, last_update_time_ms=ts,
        )
        feedback.assessment_id = aid
        feedback.trace_id = trace_id
        endpoint = f"/api/3.0/mlflow/traces/{trace_id}/assessments"
        resp = self._rest("POST", endpoint, data=message_to_json(
            CreateAssessment(assessment=feedback.to_proto())),
            extra_headers={"Content-Type": "application/json"})
        if resp.status_code == 200:
            return APPLIED
        if resp.status_code == 404:
            return NO_TRACE
        # A second copy is refused by the primary key (as an internal error); it is there.
        if self._rest("GET", f"{endpoint}/{aid}").status_code == 200:
            return APPLIED
        raise http_failure(resp.status_code, resp.text)
