"""Problems are said when they happen, not at the end of a long eval (issue 27): the endpoint is
checked when a run starts (an empty OTLP export request, on a thread of its own) and a wrong one
is named with its fix; a failure while running is said once per cause, naming spans; a variable
name one typo away from a known one is said, even when the hook stays off. Every endpoint is a
real local server on loopback (or a closed port); the evals are real."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from inspect_otel import hook
from inspect_otel.config import load_settings, misspelled_variables
from inspect_otel.export._diagnosis import Cause, advice
from inspect_otel.export._start_check import check_endpoint
from tests.support.evals import run_simple, run_slow
from tests.support.otlp_sink import GrpcSink, HttpSink, StatusServer, free_port

TOKEN = "early-warning-test-token-3f9a"  # never in a message


@pytest.fixture
def hook_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("inspect_otel")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _env(mp: pytest.MonkeyPatch, endpoint: str | None, protocol: str = "http/protobuf",
         **more: str) -> None:
    """None of the caller's OTEL_* / INSPECT_OTEL_* variables; the endpoint, then ``more``."""
    import os

    for name in list(os.environ):
        if name.startswith(("OTEL_", "INSPECT_OTEL_")):
            mp.delenv(name)
    if endpoint is not None:
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    mp.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    for name, value in more.items():
        mp.setenv(name, value)


# --- the check itself, against each kind of endpoint ----------------------------------------------
CASES = {
    # case: (server, protocol, path, extra env, the cause's words, the fix's words) - None: no cause
    "healthy OTLP/HTTP": ("http", "http/protobuf", "", {}, None, None),
    "healthy OTLP/gRPC": ("grpc", "grpc", "", {}, None, None),
    "401 without a token": (401, "http/protobuf", "", {}, "HTTP 401 Unauthorized from {url}",
                            "set OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<token>"),
    "401 with a token": (401, "http/protobuf", "",
                         {"OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{TOKEN}"},
                         "HTTP 401 Unauthorized from {url}",
                         "the bearer token in OTEL_EXPORTER_OTLP_HEADERS was refused"),
    "404": (404, "http/protobuf", "", {}, "HTTP 404 Not Found from {url}",
            "OTEL_EXPORTER_OTLP_ENDPOINT must be the base URL (e.g. http://localhost:4318): the "
            "SDK appends /v1/traces"),
    "404, the path in the base": (404, "http/protobuf", "/v1/traces", {},
                                  "HTTP 404 Not Found from {url}",
                                  "this one already has the path /v1/traces"),
    "refused": ("closed", "http/protobuf", "", {}, "connection refused: nothing listens at {url}",
                "`inspect-otel up` runs one on 4318"),
    "refused, gRPC": ("closed", "grpc", "", {}, "connection refused: nothing listens at {url}",
                      "or fix OTEL_EXPORTER_OTLP_ENDPOINT"),
    "OTLP/HTTP to a gRPC port": ("grpc", "http/protobuf", "", {}, "protocol mismatch: the endpoint",
                                 "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
    "gRPC to an OTLP/HTTP port": ("http", "grpc", "", {},
                                  "protocol mismatch: gRPC sent to an endpoint that speaks HTTP/1",
                                  "set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
    "a server that never answers": ("hang", "http/protobuf", "", {}, None, None),  # slow: not wrong
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_check_names_the_problem_and_its_fix(case):
    kind, protocol, path, extra, want_cause, want_fix = CASES[case]
    server = (HttpSink() if kind == "http" else GrpcSink() if kind == "grpc"
              else None if kind == "closed" else StatusServer(kind))
    endpoint = server.endpoint if server is not None else f"http://127.0.0.1:{free_port()}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            _env(mp, endpoint + path, protocol, **extra)
            settings = load_settings()
            cause = check_endpoint(settings)
            fix = advice(cause, settings) if cause is not None else None
    finally:
        if server is not None:
            server.stop()
    if want_cause is None:
        assert cause is None
        return
    url = endpoint + path + ("/v1/traces" if protocol == "http/protobuf" else "")
    assert cause is not None and want_cause.format(url=url) in cause.text, cause
    assert fix is not None and want_fix in fix, fix
    assert TOKEN not in cause.text + fix


def test_a_complaint_the_sdk_deduplicates_is_still_heard():
    """The SDK's gRPC exporter logger drops a message that repeats its last one within 20 s
    (DuplicateFilter: the same template, whatever its arguments): a second check, or the
    pipeline's export after the check, logs the same "Failed to export traces to %s, error
    code: %s". Each is heard all the same."""
    import grpc

    from inspect_otel.export._diagnosis import EXPORT_ERRORS, SPANS
    from inspect_otel.export._exporters import span_exporter

    server = GrpcSink(refuse=grpc.StatusCode.UNAUTHENTICATED)
    try:
        with pytest.MonkeyPatch.context() as mp:
            _env(mp, server.endpoint, "grpc")
            settings = load_settings()
            causes = [check_endpoint(settings) for _ in range(2)]
            EXPORT_ERRORS.clear()
            pipelines = span_exporter(settings.traces_protocol)  # as the pipeline's, after both
            try:
                pipelines.export(())
            finally:
                pipelines.shutdown()
    finally:
        server.stop()
    for cause in causes:
        assert cause is not None and cause.text.startswith("gRPC UNAUTHENTICATED"), cause
    assert any("UNAUTHENTICATED" in m for m in EXPORT_ERRORS.recent(SPANS))
    EXPORT_ERRORS.clear()


def test_the_processors_complaints_count_for_their_own_signal():
    """The batch processors log "Exception while exporting Span." / "... Log." (capitalised): a
    log-record failure must not become the spans' cause (a replay once said "14 spans were not
    confirmed by the endpoint: Exception while exporting Log.")."""
    from inspect_otel.export._diagnosis import EXPORT_ERRORS, RESULTS, SPANS, capture_export_logs

    capture_export_logs()
    EXPORT_ERRORS.clear()
    processor = logging.getLogger("opentelemetry.sdk._shared_internal")
    processor.error("Exception while exporting %s.", "Log")
    processor.error("Exception while exporting %s.", "Span")
    try:
        assert EXPORT_ERRORS.recent(SPANS) == ["Exception while exporting Span."]
        assert EXPORT_ERRORS.recent(RESULTS) == ["Exception while exporting Log."]
    finally:
        EXPORT_ERRORS.clear()


def test_a_closed_pipeline_says_nothing_more(hook_log):
    """A pipeline's shutdown can outlive its run (a daemon thread whose last export fails): what
    fails then was counted at the run's end, and a warning then would land in the next run's
    output, about an endpoint it may not use."""
    from inspect_otel.export import TelemetryPipeline

    with pytest.MonkeyPatch.context() as mp:
        _env(mp, f"http://127.0.0.1:{free_port()}", OTEL_EXPORTER_OTLP_TIMEOUT="1",
             INSPECT_OTEL_FLUSH_TIMEOUT="1")
        pipeline = TelemetryPipeline(load_settings())
        pipeline.close()
        pipeline._spans_failed()  # what the shutdown thread's failing export calls
    assert not [r for r in hook_log if "not reaching" in r.getMessage()], hook_log


def test_what_an_endpoint_says_reaches_the_console_printable_and_short():
    """An endpoint is untrusted: its reason phrase goes into a warning, Inspect's console renders
    ANSI escapes. Only printable ASCII passes, cut short."""
    from inspect_otel.export._diagnosis import diagnose

    reason = "Not Found\x1b]0;owned\x07\x1b[2J" + "x" * 500
    cause = diagnose([f"Failed to export spans batch code: 404, reason: {reason}"], "http://h")
    assert cause is not None and cause.status == 404
    assert "\x1b" not in cause.text and "\x07" not in cause.text and len(cause.text) < 120
    other = diagnose(["something \x1b[31mred\x1b[0m happened " + "y" * 500], "http://h")
    assert other is not None and "\x1b" not in other.text and len(other.text) <= 300


def test_port_5000_is_named_as_mlflows():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:5000"}
    fix = advice(Cause("status", "HTTP 404 Not Found from http://localhost:5000/v1/traces", 404),
                 load_settings(env), env=env)
    assert fix is not None and "port 5000 is MLflow's own server" in fix and "4318" in fix


def test_the_receiver_takes_the_empty_request_with_its_token_and_names_a_missing_one(
        mlflow_server, receiver_factory):
    receiver = receiver_factory(mlflow_server.url, "early-warnings",
                                env={"INSPECT_OTEL_RECEIVER_TOKEN": TOKEN})
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, receiver.url)
        missing = check_endpoint(load_settings())
        mp.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{TOKEN}")
        assert check_endpoint(load_settings()) is None
        mp.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{receiver.grpc_port}")
        assert check_endpoint(load_settings()) is None
        mp.delenv("OTEL_EXPORTER_OTLP_HEADERS")
        missing_grpc = check_endpoint(load_settings())
    assert missing is not None and missing.status == 401
    assert missing_grpc is not None and missing_grpc.text.startswith("gRPC UNAUTHENTICATED")
    assert missing_grpc.status == 401


# --- through a slow eval: said within seconds of the start -----------------------------------------
SECONDS = 3.0  # per tool call of the slow agent: its one sample runs SLOW_CALLS x this


@pytest.mark.parametrize("case", ["404", "closed port", "401"])
def test_a_wrong_endpoint_is_said_long_before_the_eval_ends(tmp_path, hook_log, case):
    server = None if case == "closed port" else StatusServer(int(case))
    endpoint = server.endpoint if server is not None else f"http://127.0.0.1:{free_port()}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            _env(mp, endpoint, INSPECT_OTEL_FLUSH_TIMEOUT="2", OTEL_EXPORTER_OTLP_TIMEOUT="2")
            log = run_slow(tmp_path, seconds=SECONDS, samples=("ok",))
            ended = time.time()
    finally:
        if server is not None:
            server.stop()
    assert log.status == "success"
    warnings = [r for r in hook_log if r.levelno == logging.WARNING]
    early = [r for r in warnings if "spans are not reaching the OTLP endpoint" in r.getMessage()]
    assert early, [r.getMessage() for r in warnings]
    want = {"404": "HTTP 404 Not Found", "401": "HTTP 401 Unauthorized",
            "closed port": "connection refused"}[case]
    assert want in early[0].getMessage()
    # Wide margins: the one sample alone sleeps 3 x SECONDS (9 s); the check takes at
    # most a few seconds from the run's start. Not a measure of speed: of being early at all.
    assert early[0].created < ended - SECONDS, (ended - early[0].created)
    ending = [r.getMessage() for r in warnings if "spans were not confirmed" in r.getMessage()]
    assert len(ending) == 1 and want in ending[0]
    # The failing signal is named: spans, never the metrics exporter's complaint.
    assert not any("metrics" in r.getMessage() for r in warnings)


# --- variable names --------------------------------------------------------------------------------
def test_misspelled_variable_names_are_found():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPIONT": "x",  # two letters swapped
        "INSPECT_OTEL_ENABLE": "true",  # one missing
        "OTEL_EXPORTER_OTLP_TRACE_ENDPOINT": "x",  # one missing, mid-name
        "INSPECT_OTLE_LIVE": "false",  # in the prefix
        "otel_service_name": "evals",  # names are case-sensitive
        "OTEL_EXPORTER_OTLP_ENDPOINT": "x", "OTEL_BSP_SCHEDULE_DELAY": "1",  # known
        "OTEL_PYTHON_LOG_CORRELATION": "true",  # the SDK's own: known through also_known
        "OTEL_PYTHON_LOG_CORRELATIO": "true",  # ... and not compared with (the hook's table is)
        "HOME": "/root", "PATH": "/bin", "OTEL_TRACE_SAMPLER_ARGS": "0.5",  # two typos: unknown
    }
    found = misspelled_variables(env, also_known=frozenset({"OTEL_PYTHON_LOG_CORRELATION"}))
    assert found == [
        ("INSPECT_OTEL_ENABLE", "INSPECT_OTEL_ENABLED"),
        ("INSPECT_OTLE_LIVE", "INSPECT_OTEL_LIVE"),
        ("OTEL_EXPORTER_OTLP_ENDPIONT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ("OTEL_EXPORTER_OTLP_TRACE_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        ("otel_service_name", "OTEL_SERVICE_NAME"),
    ]


def test_a_misspelled_endpoint_is_said_once_though_the_hook_stays_off(tmp_path, hook_log):
    sink = HttpSink()
    try:
        with pytest.MonkeyPatch.context() as mp:
            _env(mp, None, OTEL_EXPORTER_OTLP_ENDPIONT=sink.endpoint)
            mp.setattr(hook, "_NAMES_CHECKED", False)  # a fresh process, as far as this goes
            run_simple(tmp_path / "first", count=1)
            run_simple(tmp_path / "second", count=1)
    finally:
        sink.stop()
    said = [r.getMessage() for r in hook_log if "OTEL_EXPORTER_OTLP_ENDPIONT" in r.getMessage()]
    assert said == ["inspect-otel: OTEL_EXPORTER_OTLP_ENDPIONT is not a variable inspect-otel or "
                    "OpenTelemetry reads; did you mean OTEL_EXPORTER_OTLP_ENDPOINT?"]
    assert sink.sink.requests == []  # off: nothing was sent anywhere
