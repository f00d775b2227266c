"""The Inspect hook: lifecycle callbacks in, span-model data out to the export pipeline.

Live (the default): each sample has a :class:`~.mapping.SampleMapper` from ``on_sample_start`` to
``on_sample_end``; ``on_sample_event`` queues every event, and the queue is fed to the mapper at
most ``LIVE_COALESCE_S`` (250 ms) later, in one pass, the spans and evaluation results it
completed enqueued at once (mapped one by one, in between the eval's own work, events cost up to
2.4 times as much). A pass holds the eval's loop at most ``LIVE_SLICE_S`` (5 ms): what is left
waits for the loop's next turn (``call_soon``), behind the eval's own ready work, so mapping
never stalls the other samples, timers and model calls of the eval however many samples run.
At ``on_sample_end`` the events still queued are mapped in the same slices, the loop yielded
between them (a backlog builds up under load); then the mapper maps what the live stream never
delivered
(the ``init`` span) from the sample's transcript, then the root. The log replay feeds the
same mapper, so live and replayed spans are identical. Inspect's live-stream quirks (model events
delivered twice, interleaved samples, events of failed attempts under the same uuid) are handled
in the mapper, per sample; the state of a sample is released when it ends.
``INSPECT_OTEL_LIVE=false``: a sample is mapped from its transcript when it ends.

Nothing here waits on the network: spans are only enqueued; the bounded flush at run end runs on a
worker thread.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from opentelemetry import trace

from inspect_ai.hooks import (
    Hooks,
    RunEnd,
    RunStart,
    SampleAttemptEnd,
    SampleAttemptStart,
    SampleEnd,
    SampleEvent,
    SampleStart,
    TaskEnd,
    TaskStart,
)

from .config import Settings, is_enabled, load_settings, misspelled_variables
from .content import ContentPolicy
from .export import TelemetryPipeline, traces_url
from .mapping import (
    Completed,
    SampleMapper,
    SampleTelemetry,
    TaskContext,
    abandon_sample,
    finish_sample,
    map_run,
    map_sample,
    map_task,
    sample_identity,
    sample_uuid,
    task_context,
    task_times,
)
from .mapping._common import to_ns

logger = logging.getLogger("inspect_otel")
_NAMES_CHECKED = False  # variable names checked (once per process)

T = TypeVar("T")
_ENV_PREFIXES = ("OTEL_", "INSPECT_OTEL_")
_WARNED_SETTINGS: set[str] = set()


# Live events are mapped in batches at most this long after they arrive (see _map_pending).
LIVE_COALESCE_S = 0.25
# One mapping pass holds the eval's loop at most about this long before it yields the loop.
LIVE_SLICE_S = 0.005
_WARNED: set[str] = set()  # the parts of the hook whose failure was reported (once per process)


def _warn_once(what: str, ex: Exception) -> None:
    """Telemetry must never fail an eval: a failure of the hook's part ``what`` (a hook method or
    a callback of one) is swallowed; its first one is logged."""
    if what not in _WARNED:
        _WARNED.add(what)
        logger.warning("inspect-otel: %s failed (%s: %s); telemetry for it is skipped",
                       what, type(ex).__name__, ex, exc_info=True)


def _call_later(delay_s: float, fn: Callable[..., Any], *args: Any) -> Any | None:
    """``fn(*args)`` on the running asyncio loop after ``delay_s`` (0: at the loop's next turn, in
    the current context), or None without one (Inspect on trio)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_soon(fn, *args) if delay_s <= 0 else loop.call_later(delay_s, fn, *args)


def _never_raise(method: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A hook method whose failures go to ``_warn_once`` instead of the eval."""

    @functools.wraps(method)
    async def wrapper(self: Any, data: Any) -> None:
        try:
            await method(self, data)
        except Exception as ex:  # noqa: BLE001 - the eval comes first
            _warn_once(method.__name__, ex)

    return wrapper


def _now_ns() -> int:
    return time.time_ns()


@dataclass
class _TaskState:
    spec: Any
    plan: Any
    context: TaskContext
    start_ns: int
    errored: int = 0
    ended: bool = False


@dataclass
class _LiveSample:
    """One running sample x epoch: its mapper, its sampling decision, and the events received
    but not mapped yet (released at its end)."""

    task: _TaskState
    mapper: SampleMapper
    sampled: bool
    pending: list[Any] = field(default_factory=list)
    mapping_timer: Any = None  # the scheduled mapping of ``pending`` (an asyncio Handle)


@dataclass
class _RunState:
    run_id: str
    eval_set_id: str | None
    task_names: list[str]
    start_ns: int
    tasks: dict[str, _TaskState] = field(default_factory=dict)


class OtelHooks(Hooks):
    def __init__(self) -> None:
        self._runs: dict[str, _RunState] = {}
        self._pipeline: TelemetryPipeline | None = None
        self._policy = ContentPolicy()
        self._fingerprint: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        self._warned_lost = 0
        self._live: dict[str, _LiveSample] = {}  # by sample uuid

    def enabled(self) -> bool:
        # Inspect asks before every hook call, events included (11,000 times for 200 short
        # samples); settings are read once per run, so inside a run the answer is its start's.
        if self._runs:
            return True
        _check_variable_names_once()
        return is_enabled()

    # --- pipeline ---------------------------------------------------------------------------------
    def _current_pipeline(self) -> TelemetryPipeline:
        """The pipeline for the current environment (rebuilt when OTEL_* settings change)."""
        env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
        fingerprint = (env, id(trace.get_tracer_provider()))
        with self._lock:
            if self._pipeline is None or fingerprint != self._fingerprint:
                settings = load_settings()
                for warning in settings.warnings:
                    if warning not in _WARNED_SETTINGS:  # once per process, not per rebuild
                        _WARNED_SETTINGS.add(warning)
                        logger.warning("inspect-otel: %s", warning)
                old = self._pipeline
                if old is not None:
                    threading.Thread(target=old.close, daemon=True).start()
                self._pipeline = TelemetryPipeline(settings)
                self._policy = _policy(settings)
                self._fingerprint = fingerprint
                self._warned_lost = 0
            return self._pipeline

    def _run_pipeline(self) -> TelemetryPipeline:
        # Settings are read once per run (on_run_start), not on every sample.
        return self._pipeline or self._current_pipeline()

    # --- run and task -----------------------------------------------------------------------------
    @_never_raise
    async def on_run_start(self, data: RunStart) -> None:
        self._current_pipeline().check_endpoint()  # on a thread: a wrong endpoint is said now
        self._runs[data.run_id] = _RunState(
            data.run_id, data.eval_set_id, list(data.task_names), _now_ns()
        )

    @_never_raise
    async def on_task_start(self, data: TaskStart) -> None:
        run = self._runs.get(data.run_id)
        if run is None:  # hook enabled mid-run: adopt the run from here on
            run = self._runs[data.run_id] = _RunState(data.run_id, data.eval_set_id, [], _now_ns())
        run.tasks[data.eval_id] = _TaskState(
            data.spec, data.plan, task_context(data.spec, os.environ), _now_ns()
        )

    # --- samples --------------------------------------------------------------------------------
    def _start_live(self, task: _TaskState, sample: Any, start_ns: int, attempt: int,
                    announce: bool = True) -> _LiveSample:
        """``sample``: Inspect's EvalSampleSummary or EvalSample (id, epoch, uuid)."""
        ctx = task.context
        mapper = SampleMapper(
            ctx, self._policy, identity=sample_identity(sample, ctx),
            uuid=sample_uuid(sample, ctx), start_ns=start_ns, attempt=attempt, live=True,
        )
        root = mapper.root_at_start()
        pipeline = self._run_pipeline()
        live = _LiveSample(task, mapper, pipeline.sampled(root))
        self._live[mapper.uuid] = live
        if announce and live.sampled:  # a trace sampled out never runs anywhere
            pipeline.emit_sample_start(root)
        return live

    def _live_on(self) -> bool:
        return self._run_pipeline().settings.live

    @_never_raise
    async def on_sample_start(self, data: SampleStart) -> None:
        task = self._task(data.run_id, data.eval_id)
        if task is None or not self._live_on() or data.sample_id in self._live:
            return
        self._start_live(task, data.summary, to_ns(data.summary.started_at) or _now_ns(), 1)

    @_never_raise
    async def on_sample_attempt_start(self, data: SampleAttemptStart) -> None:
        # A sample whose start the hook missed (enabled mid-sample) is followed from here.
        if data.sample_id in self._live or not self._live_on():
            return
        task = self._task(data.run_id, data.eval_id)
        if task is not None:
            self._start_live(task, data.summary, _now_ns(), data.attempt)

    @_never_raise
    async def on_sample_event(self, data: SampleEvent) -> None:
        live = self._live.get(data.sample_id)
        if live is not None:
            if self._policy.raw_provider_call and live.mapper.attachments is None:
                live.mapper.attachments = _sample_attachments()
            live.pending.append(data.event)
            if live.mapping_timer is None:
                live.mapping_timer = _call_later(LIVE_COALESCE_S, self._map_pending, live)
                if live.mapping_timer is None:  # no asyncio loop (trio): map each event as it comes
                    self._map_pending(live, everything=True)

    def _map_pending(self, live: _LiveSample, everything: bool = False) -> None:
        """Map the events received since the last call and hand over what they completed.
        Events are mapped in batches, at most LIVE_COALESCE_S after they arrive, not one by one
        in between the eval's own work, where the same mapping cost up to 2.4 times as much; a
        span still leaves well within the latency the live stream promises. A batch yields the
        loop after LIVE_SLICE_S and goes on at its next turn, unless ``everything`` (the
        sample's end, which needs every event mapped)."""
        if live.mapping_timer is not None:
            live.mapping_timer.cancel()  # no-op when this is the timer's own call
            live.mapping_timer = None
        events = live.pending
        if not events:
            return
        spans: list[Any] = []
        results: list[Any] = []
        feed = live.mapper.feed
        deadline = None if everything else time.perf_counter() + LIVE_SLICE_S
        mapped = 0
        for event in events:
            mapped += 1
            try:
                done = feed(event)
            except Exception as ex:  # noqa: BLE001 - a timer callback: nothing above catches it
                _warn_once("on_sample_event", ex)
                continue
            if done:
                spans.extend(done.spans)
                results.extend(done.results)
            if deadline is not None and time.perf_counter() > deadline:
                break
        live.pending = events[mapped:]
        if live.pending:
            live.mapping_timer = _call_later(0, self._map_pending, live)
        try:
            self._emit_live(live, Completed(spans=tuple(spans), results=tuple(results)))
        except Exception as ex:  # noqa: BLE001
            _warn_once("on_sample_event", ex)
        if live.pending and live.mapping_timer is None:  # no asyncio loop: nothing to wait for
            self._map_pending(live, everything=True)

    async def _map_remaining(self, live: _LiveSample) -> None:
        """At a sample's end, every event not mapped yet, slice by slice with the loop yielded
        in between: under load the live batches fall behind (each waits for the loop's next
        turn), and a backlog mapped in one piece would hold the loop as long as it takes."""
        while live.pending:
            self._map_pending(live)  # one slice; with no asyncio loop (trio), all of them
            if live.pending:
                await anyio.sleep(0)
        if live.mapping_timer is not None:
            live.mapping_timer.cancel()
            live.mapping_timer = None

    @_never_raise
    async def on_sample_attempt_end(self, data: SampleAttemptEnd) -> None:
        live = self._live.get(data.sample_id)
        if live is None or not data.will_retry:
            return
        self._map_pending(live, everything=True)
        self._emit_live(live, live.mapper.end_attempt(_now_ns(), data.attempt + 1, data.error))

    def _emit_live(self, live: _LiveSample, done: Completed) -> None:
        if done:
            pipeline = self._run_pipeline()
            if done.spans:
                pipeline.emit_spans(done.spans, sampled=live.sampled)
            if done.results:
                pipeline.emit_results(done.results, sampled=live.sampled)

    @_never_raise
    async def on_sample_end(self, data: SampleEnd) -> None:
        live = self._live.pop(data.sample_id, None)
        task = live.task if live is not None else self._task(data.run_id, data.eval_id)
        if task is None:
            return
        pipeline = self._run_pipeline()
        if live is None and not pipeline.settings.live:
            telemetry = map_sample(data.sample, task.context, self._policy)
            pipeline.emit_sample(telemetry, task.context.task_name)
        else:
            if live is None:  # the hook missed the start: everything from the transcript now
                live = self._start_live(task, data.sample, to_ns(data.sample.started_at) or 0,
                                        len(data.sample.error_retries or []) + 1, announce=False)
                self._live.pop(live.mapper.uuid, None)
            try:
                await self._map_remaining(live)
            finally:  # cancelled while yielding: the rest at once, and the sample still ends
                self._map_pending(live, everything=True)
                telemetry = finish_sample(live.mapper, data.sample)
                self._finish_live(live, telemetry)
        if telemetry.status == "error":
            task.errored += 1

    def _finish_live(self, live: _LiveSample, telemetry: SampleTelemetry) -> None:
        """The sample's last spans, children before the root (the root closes the trace)."""
        pipeline = self._run_pipeline()
        pipeline.emit_spans((*telemetry.spans[1:], telemetry.spans[0]), sampled=live.sampled)
        pipeline.emit_results(telemetry.results, sampled=live.sampled)
        pipeline.record_sample(telemetry, live.task.context.task_name)

    def _abandon_samples(self, task: _TaskState) -> None:
        """Samples of a task torn down before their end: their roots end as cancelled."""
        for uuid, live in list(self._live.items()):
            if live.task is task:
                del self._live[uuid]
                self._map_pending(live, everything=True)
                self._finish_live(live, abandon_sample(live.mapper, _now_ns()))

    @_never_raise
    async def on_task_end(self, data: TaskEnd) -> None:
        task = self._task(data.run_id, data.eval_id)
        if task is None or task.ended:
            return
        self._abandon_samples(task)
        self._emit_task(task, data.log)

    @_never_raise
    async def on_run_end(self, data: RunEnd) -> None:
        run = self._runs.pop(data.run_id, None)
        if run is None:
            return
        pipeline = self._run_pipeline()
        # on_task_end does not fire for errored or cancelled tasks: end them here from their logs.
        logs_by_eval = {log.eval.eval_id: log for log in (data.logs or [])}
        for eval_id, task in run.tasks.items():
            self._abandon_samples(task)
            if not task.ended:
                log = logs_by_eval.get(eval_id)
                status = None if log is not None and log.status != "started" else "cancelled"
                self._emit_task(task, log, status=status)
        statuses = {log.status for log in logs_by_eval.values()}
        if data.exception is not None:
            status = "cancelled" if _is_cancellation(data.exception) else "error"
        elif "error" in statuses:
            status = "error"
        elif "cancelled" in statuses or "started" in statuses:
            status = "cancelled"
        else:
            status = "success"
        error: Any = data.exception
        if error is None and status == "error":
            error = next((l.error.message for l in logs_by_eval.values() if l.error), None)
        pipeline.emit_spans([
            map_run(run.run_id, run.eval_set_id, run.task_names or
                    [t.context.task_name for t in run.tasks.values()],
                    start_ns=run.start_ns, end_ns=_now_ns(), status=status, error=error,
                    policy=self._policy, specs=[t.spec for t in run.tasks.values()])
        ])
        report = await anyio.to_thread.run_sync(pipeline.flush, pipeline.settings.flush_timeout_s)
        lost = report.lost - self._warned_lost
        if lost > 0:
            self._warned_lost = report.lost
            locations = [log.location for log in logs_by_eval.values() if log.location]
            command = (shlex.join(["inspect-otel", "export", *locations]) if locations
                       else "inspect-otel export <log files of this run>")
            timed_out = "" if report.completed else (
                f" within INSPECT_OTEL_FLUSH_TIMEOUT={pipeline.settings.flush_timeout_s:g}s"
            )
            logger.warning(
                "inspect-otel: %d of %d spans were not confirmed by the OTLP endpoint %s%s%s. "
                "The eval itself is complete. Send them again with: %s",
                lost, report.submitted, traces_url(pipeline.settings), timed_out,
                f" ({report.problem})" if report.problem else "", command,
            )
            if locations:
                _print_whole(command)

    # --- helpers ----------------------------------------------------------------------------------
    def _task(self, run_id: str, eval_id: str) -> _TaskState | None:
        run = self._runs.get(run_id)
        return run.tasks.get(eval_id) if run is not None else None

    def _emit_task(self, task: _TaskState, log: Any | None, status: str | None = None) -> None:
        task.ended = True
        start, end = task_times(log, task.start_ns, _now_ns())
        span = map_task(
            task.spec, task.plan, log, self._policy,
            errored_samples=task.errored, start_ns=start, end_ns=end, status=status,
        )
        self._run_pipeline().emit_spans([span])


def _policy(settings: Settings) -> ContentPolicy:
    return ContentPolicy.from_settings(settings)


def _check_variable_names_once() -> None:
    """A misspelled OTEL_* / INSPECT_OTEL_* variable name is said once per process, with the
    hook on or off (a misspelled endpoint or INSPECT_OTEL_ENABLED leaves it off). Inspect asks
    ``enabled()`` before every hook call: after the first, this is one test of a flag."""
    global _NAMES_CHECKED
    if _NAMES_CHECKED:
        return
    _NAMES_CHECKED = True
    try:
        # Loaded with the SDK already (no further import): OpenTelemetry's own lists of names.
        from opentelemetry import environment_variables as api_names
        from opentelemetry.sdk import environment_variables as sdk_names

        also_known = frozenset(value for module in (api_names, sdk_names)
                               for key, value in vars(module).items()
                               if key.isupper() and isinstance(value, str))
        for name, meant in misspelled_variables(also_known=also_known):
            logger.warning("inspect-otel: %s is not a variable inspect-otel or OpenTelemetry "
                           "reads; did you mean %s?", name, meant)
    except Exception as ex:  # noqa: BLE001 - the eval comes first
        _warn_once("checking variable names", ex)


def _print_whole(line: str) -> None:
    """``line`` on the console in one piece: Inspect's console log handler (rich) wraps messages
    at the terminal's width, which breaks a command to paste. Printed through that handler's own
    console, unwrapped, right after the warning that holds it; other handlers (plain, JSON, a
    file) never wrap, and the warning has it whole."""
    try:
        from rich.logging import RichHandler

        handlers: list[logging.Handler] = []
        current: logging.Logger | None = logger
        while current is not None:
            handlers += current.handlers
            current = current.parent if current.propagate else None
        for handler in handlers:
            # Inspect's handler shows a record on the console only at or above its display level
            # and writes it through rich only in its "rich" format.
            level = getattr(handler, "display_level", None)
            shown = (handler.level <= logging.WARNING if level is None
                     else logging.NOTSET != level <= logging.WARNING)
            if (isinstance(handler, RichHandler) and shown
                    and getattr(handler, "logger_format", "rich") == "rich"):
                handler.console.print(line, soft_wrap=True, markup=False, highlight=False)
                return
    except Exception as ex:  # noqa: BLE001 - the warning above has the command
        _warn_once("printing the replay command", ex)


def _is_cancellation(ex: BaseException) -> bool:
    import asyncio

    return isinstance(ex, (KeyboardInterrupt, asyncio.CancelledError)) or (
        type(ex).__name__ in ("Cancelled", "CancelledError")
    )


# Inspect's running sample: a private API of Inspect's (module, function), looked up when used.
_ACTIVE_SAMPLE = ("inspect_ai.log._samples", "sample_active")


def _sample_attachments() -> dict[str, str] | None:
    """The running sample's attachments (a live dict), for ModelEvent.call payloads Inspect
    condensed into ``attachment://`` references before the event reached this hook (it condenses
    right after notifying its own subscribers; hooks get events through a stream). The emitter
    task runs in the sample's context, where Inspect's active sample is set. Without that private
    API (another Inspect version) the call goes out as Inspect holds it: condensed."""
    import importlib

    module, name = _ACTIVE_SAMPLE
    try:
        active = getattr(importlib.import_module(module), name)()
        return active.transcript.attachments if active is not None else None
    except Exception:  # noqa: BLE001 - a private API of Inspect: the fallback above
        return None
