"""`inspect-otel export` names why spans were not confirmed: a refused connection, a timeout, an
HTTP status with the URL, or a protocol mismatch (gRPC against the OTLP/HTTP port and the other
way round). Every case against a real local server on loopback, through the real CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.hook.test_replay import CLI, _base_env
from tests.support.evals import run_simple
from tests.support.otlp_sink import GrpcSink, StatusServer, free_port


@pytest.fixture(scope="module")
def one_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield run_simple(tmp_path_factory.mktemp("causes"), count=1).location


def _export(log: str, endpoint: str, protocol: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "export", log, "--endpoint", endpoint, "--protocol", protocol],
        capture_output=True, text=True, timeout=240,
        env={**_base_env(), "OTEL_EXPORTER_OTLP_TIMEOUT": "1", "INSPECT_OTEL_FLUSH_TIMEOUT": "2"},
    )


@pytest.mark.parametrize("case", ["refused", "timeout", "404", "grpc-to-http", "http-to-grpc"])
def test_export_names_the_cause(one_log, case):
    stop = lambda: None  # noqa: E731
    if case == "refused":
        endpoint, protocol = f"http://127.0.0.1:{free_port()}", "http/protobuf"
        want = f"connection refused: nothing listens at {endpoint}/v1/traces"
        fix = "or fix --endpoint"
    elif case in ("timeout", "404", "grpc-to-http"):
        server = StatusServer("hang" if case == "timeout" else 404)
        stop, endpoint = server.stop, server.endpoint
        protocol = "grpc" if case == "grpc-to-http" else "http/protobuf"
        want = {"timeout": f"timeout: {endpoint}/v1/traces did not answer",
                "404": f"HTTP 404 Not Found from {endpoint}/v1/traces",
                "grpc-to-http": "protocol mismatch: gRPC sent to an endpoint that speaks HTTP/1"}[case]
        fix = {"timeout": "", "404": "; --endpoint must be the base URL",
               "grpc-to-http": "; use --protocol http/protobuf"}[case]
    else:
        sink = GrpcSink()
        stop, endpoint, protocol = sink.stop, sink.endpoint, "http/protobuf"
        # a gRPC server answers an HTTP/1 request with nothing (or closes): both are named
        want = "protocol mismatch: the endpoint "
        fix = "; use --protocol grpc"
    try:
        result = _export(one_log, endpoint, protocol)
    finally:
        stop()
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "spans were not confirmed by the endpoint: " in errors[0], \
        result.stderr
    assert want in errors[0] and fix in errors[0], errors[0]  # the fix in the command's terms
