"""Scout import: other GenAI producers and bad input (no eval needed)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from inspect_otel.scout import ImportReport, otlp_transcripts
from tests.scout.support import import_into, read_transcripts
from tests.support.otlp_files import otlp_file


def _other_producer(path: Path, fmt: str = "json", traces: int = 2) -> list[str]:
    """GenAI spans as another instrumentation would emit them (real OpenTelemetry SDK, semconv
    attributes only, no inspect.*): an agent that calls a model, a tool, the model again; an
    evaluation result as a log record. Returns the trace ids."""
    spans, logs, target = otlp_file(path, fmt)
    resource = Resource({"service.name": "support-bot"})
    provider = TracerProvider(resource=resource)  # local providers: nothing process-global
    provider.add_span_processor(SimpleSpanProcessor(spans))
    log_provider = LoggerProvider(resource=resource)
    log_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    tracer = provider.get_tracer("my-agent-framework")
    logger = log_provider.get_logger("my-agent-framework")
    question = [{"role": "user", "parts": [{"type": "text", "content": "weather in Paris?"}]}]
    call = {"type": "tool_call", "id": "call_1", "name": "get_weather",
            "arguments": {"city": "Paris"}}
    ids = []
    for n in range(traces):
        with tracer.start_as_current_span("invoke_agent helper", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"}) as agent:
            ids.append(format(agent.get_span_context().trace_id, "032x"))
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024",
                    "gen_ai.request.temperature": 0.2, "gen_ai.usage.input_tokens": 20,
                    "gen_ai.usage.output_tokens": 7,
                    "gen_ai.system_instructions": json.dumps([{"type": "text",
                                                               "content": "be brief"}]),
                    "gen_ai.input.messages": json.dumps(question),
                    "gen_ai.output.messages": json.dumps([{
                        "role": "assistant", "parts": [call], "finish_reason": "tool_call"}]),
                    "gen_ai.tool.definitions": json.dumps([{
                        "type": "function", "name": "get_weather", "description": "Weather.",
                        "parameters": {"type": "object", "properties": {
                            "city": {"type": "string"}}}}])}):
                pass
            with tracer.start_as_current_span("execute_tool get_weather", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather",
                    "gen_ai.tool.call.id": "call_1",
                    "gen_ai.tool.call.arguments": json.dumps({"city": "Paris"}),
                    "gen_ai.tool.call.result": "sunny, 21 C"}):
                pass
            with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 40,
                    "gen_ai.usage.output_tokens": 5,
                    "gen_ai.input.messages": json.dumps(question + [
                        {"role": "assistant", "parts": [call]},
                        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1",
                                                    "response": "sunny, 21 C"}]}]),
                    "gen_ai.output.messages": json.dumps([{
                        "role": "assistant", "finish_reason": "stop",
                        "parts": [{"type": "reasoning", "content": "it says sunny"},
                                  {"type": "text", "content": "Sunny, 21 C."}]}])}) as chat:
                logger.emit(event_name="gen_ai.evaluation.result", attributes={
                    "gen_ai.evaluation.name": "helpfulness",
                    "gen_ai.evaluation.score.value": 0.9,
                    "gen_ai.evaluation.explanation": "answers the question"})
                del chat
            if n == 1:
                agent.set_status(Status(StatusCode.ERROR, "user hung up"))
    with tracer.start_as_current_span("GET /health"):  # not GenAI: no transcript
        pass
    provider.shutdown()
    log_provider.shutdown()
    target.close()
    return ids


@pytest.mark.parametrize("fmt", ["json", "proto"])
def test_other_genai_producer_one_transcript_per_trace(tmp_path, fmt):
    path = tmp_path / f"other.{fmt}"
    ids = _other_producer(path, fmt)
    report = ImportReport()
    import_into(tmp_path / "db", otlp_transcripts([path], report=report))
    assert report.transcripts == 2 and report.other_traces == 1 and not report.problems
    transcripts = read_transcripts(tmp_path / "db")
    assert sorted(transcripts) == sorted(ids)
    t = transcripts[ids[0]]
    assert t.source_type == "otlp" and t.source_id == "support-bot" and t.agent == "helper"
    assert t.model == "gpt-4o-2024" and t.total_tokens == 72 and t.metadata["content_captured"]
    assert [e.event for e in t.events] == ["span_begin", "model", "tool", "model", "score",
                                           "span_end"]
    first, tool, second = (e for e in t.events if e.event in ("model", "tool"))
    assert [m.role for m in first.input] == ["system", "user"] and first.input[0].text == "be brief"
    assert first.config.temperature == 0.2 and first.tools[0].name == "get_weather"
    assert first.output.choices[0].message.tool_calls[0].arguments == {"city": "Paris"}
    assert first.output.choices[0].stop_reason == "tool_calls"
    assert (tool.function, tool.arguments, tool.result) == ("get_weather", {"city": "Paris"},
                                                            "sunny, 21 C")
    # the conversation of the last model call: tool responses and reasoning survive
    assert [m.role for m in t.messages] == ["user", "assistant", "tool", "assistant"]
    assert t.messages[2].text == "sunny, 21 C" and t.messages[2].function == "get_weather"
    assert t.messages[3].text == "Sunny, 21 C." and "sunny" in str(t.messages[3].content[0])
    score = next(e for e in t.events if e.event == "score")
    assert score.scorer == "helpfulness" and score.score.value == 0.9
    assert float(t.score) == 0.9 and t.success is True
    assert t.error is None and transcripts[ids[1]].error == "user hung up"
    start, end = t.events[0].timestamp, t.events[-1].timestamp
    assert 0 <= t.total_time <= (end - start).total_seconds() + 1e-6  # wall time of the trace


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """The command in-process (test_import.py runs it as a real process once)."""
    from inspect_otel import cli as command

    def run(*args: str) -> _Result:
        capsys.readouterr()
        code = command.main(["scout-import", *args])
        out = capsys.readouterr()
        return _Result(code, out.out, out.err)

    return run


def test_missing_file_is_one_clear_line(tmp_path, cli):
    result = cli("--otlp", str(tmp_path / "nope.jsonl"), "-T", str(tmp_path / "db"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"inspect-otel scout-import: {tmp_path / 'nope.jsonl'}: no such file"]


def test_bad_records_are_reported_and_the_rest_imported(tmp_path, cli):
    """A malformed line in the middle of a JSON-lines file and a truncated protobuf file: every
    readable trace is imported, each bad record is reported with its place, exit status 1."""
    good = tmp_path / "good.jsonl"
    ids = _other_producer(good, traces=3)
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:2] + ['{"resourceSpans": [{"scopeSpans": [', "not json"]
                                           + lines[2:]) + "\n")
    proto = tmp_path / "cut.pb"
    _other_producer(proto, "proto", traces=1)
    proto.write_bytes(proto.read_bytes()[:-10])  # the last record is cut short
    result = cli("--otlp", str(bad), str(proto), "-T", str(tmp_path / "db"))
    assert result.returncode == 1, result.stderr
    problems = result.stderr.strip().splitlines()
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"inspect-otel scout-import: skipped {bad}: line 3: "
                                  "malformed JSON")
    assert problems[1].startswith(f"inspect-otel scout-import: skipped {bad}: line 4: ")
    assert "truncated record" in problems[2] and str(proto) in problems[2]
    assert "3 unreadable records" in result.stdout
    imported = read_transcripts(tmp_path / "db")
    assert set(ids) <= set(imported)


def test_not_otlp_and_empty_inputs(tmp_path, cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = cli("--otlp", str(empty), "-T", str(tmp_path / "db"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"inspect-otel scout-import: no traces found in {empty}"
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": "world"}\n')
    result = cli("--otlp", str(other), "-T", str(tmp_path / "db"))
    assert result.returncode == 1
    assert "line 1: not an OTLP/JSON traces, logs or metrics request" in result.stderr


def test_empty_and_missing_mlflow_experiment(mlflow_server, mlflow_client, tmp_path, cli):
    mlflow_client.create_experiment("scout-empty")
    result = cli("--mlflow-uri", mlflow_server.url, "--experiment", "scout-empty", "-T",
                  str(tmp_path / "db"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"inspect-otel scout-import: no traces found in experiment 'scout-empty' at "
        f"{mlflow_server.url}")
    result = cli("--mlflow-uri", mlflow_server.url, "--experiment", "scout-nope", "-T",
                  str(tmp_path / "db"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"inspect-otel scout-import: MLflow at {mlflow_server.url}: "
                                     "no experiment named 'scout-nope'")


def test_unreachable_mlflow_fails_fast(tmp_path, cli):
    from tests.support.otlp_sink import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = cli("--mlflow-uri", url, "--experiment", "x", "-T", str(tmp_path / "db"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"inspect-otel scout-import: cannot reach MLflow at {url} "
                                     "(connection refused or host unreachable)")


def test_usage_errors(tmp_path, cli):
    result = cli("--otlp", "x.jsonl", "--run", "abc", "-T", str(tmp_path / "db"))
    assert result.returncode == 2
    assert result.stderr.strip() == ("inspect-otel scout-import: --experiment and --run select "
                                     "MLflow traces: use them with --mlflow-uri")


def test_missing_extra_is_named(tmp_path, cli, monkeypatch):
    """Without Inspect Scout installed the command says which extra to install (the rest of
    inspect-otel does not need it)."""
    monkeypatch.setitem(sys.modules, "inspect_scout", None)  # makes `import inspect_scout` fail
    result = cli("--otlp", "x.jsonl", "-T", str(tmp_path / "db"))
    assert result.returncode == 2
    assert result.stderr.strip() == ("inspect-otel scout-import: needs Inspect Scout: "
                                     "pip install 'inspect-otel[scout]'")
    assert not (tmp_path / "db").exists()


def test_importing_the_package_does_not_import_scout():
    import subprocess

    code = ("import sys, inspect_otel, inspect_otel.scout, inspect_otel.cli; "
            "assert 'inspect_scout' not in sys.modules and 'mlflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_compressed_files(tmp_path):
    """compression: zstd as the Collector file exporter writes it (the whole stream, or each
    length-prefixed record in the older mode), and gzip: the same transcripts as uncompressed."""
    import gzip
    import struct

    import zstandard

    plain = tmp_path / "plain.pb"
    ids = _other_producer(plain, "proto")
    data = plain.read_bytes()
    records, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack(">I", data[offset:offset + 4])
        records.append(data[offset + 4: offset + 4 + size])
        offset += 4 + size
    compressor = zstandard.ZstdCompressor()
    variants = {
        "stream.pb.zst": compressor.compress(data),
        "records.pb": b"".join(struct.pack(">I", len(c)) + c
                               for c in (compressor.compress(r) for r in records)),
        "lines.jsonl.gz": None,
    }
    json_lines = tmp_path / "plain.jsonl"
    _other_producer(json_lines, "json")
    variants["lines.jsonl.gz"] = gzip.compress(json_lines.read_bytes())
    for name, payload in variants.items():
        path = tmp_path / name
        path.write_bytes(payload)
        report = ImportReport()
        import_into(tmp_path / f"db-{name}", otlp_transcripts([path], report=report))
        assert report.transcripts == 2 and not report.problems, name
    assert sorted(read_transcripts(tmp_path / "db-stream.pb.zst")) == sorted(ids)


# --- hostile files: nothing in a file is trusted ------------------------------------------------


def _frames(data: bytes) -> list[bytes]:
    import struct

    frames, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack(">I", data[offset:offset + 4])
        frames.append(data[offset + 4: offset + 4 + size])
        offset += 4 + size
    return frames


def _peak_mb(read) -> tuple[float, object]:
    import tracemalloc

    tracemalloc.start()
    try:
        result = read()
        return tracemalloc.get_traced_memory()[1] / 2**20, result
    finally:
        tracemalloc.stop()


def test_length_prefix_is_bounded_by_the_file_and_the_limit(tmp_path):
    """A prefix announcing up to 4 GiB is believed only as far as the file holds (plain file) or
    --max-record-mb allows (compressed stream, whose size is unknown): reported, never allocated."""
    import gzip
    import struct

    from inspect_otel.scout._otlp_file import OtlpFiles

    good = tmp_path / "good.pb"
    ids = _other_producer(good, "proto", traces=2)
    hostile = struct.pack(">I", 0xFFFFFFFF) + b"\x0a" * 4096
    plain = tmp_path / "plain.pb"
    plain.write_bytes(good.read_bytes() + hostile)
    packed = tmp_path / "packed.pb.gz"
    packed.write_bytes(gzip.compress(good.read_bytes() + hostile))
    for path in (plain, packed):
        files = OtlpFiles([path])
        peak, index = _peak_mb(files.index)
        assert peak < 32, f"{path.name}: {peak:.0f} MB held for a 4 KiB file"
        assert [p.message for p in index.problems] == [
            f"truncated record: 4096 of {0xFFFFFFFF} bytes (the file ends mid-record)"], path.name
        report = ImportReport()
        import_into(tmp_path / f"db-{path.name}", otlp_transcripts([path], report=report))
        assert report.transcripts == 2 and len(report.problems) == 1
        assert sorted(read_transcripts(tmp_path / f"db-{path.name}")) == sorted(ids)


@pytest.mark.parametrize("fmt", ["proto", "json"])
def test_records_over_max_record_mb_are_skipped_and_reported(tmp_path, fmt, cli):
    """A record (protobuf frame or JSON line) over --max-record-mb is read past in chunks and
    reported with its place; the records around it are imported."""
    import struct

    path = tmp_path / f"big.{fmt}"
    ids = _other_producer(path, fmt, traces=2)
    pad = b'{"resourceSpans": [], "pad": "' + b"x" * 300_000 + b'"}'
    if fmt == "proto":
        frames = _frames(path.read_bytes())
        big = b"\x0a" * 300_000  # read past unparsed: never decoded
        middle = len(frames) // 2
        frames.insert(middle, big)
        path.write_bytes(b"".join(struct.pack(">I", len(f)) + f for f in frames))
        where = f"record {middle + 1} at byte"
        size = f"record of {len(big)} bytes is over --max-record-mb 0.25: skipped"
    else:
        lines = path.read_bytes().splitlines(keepends=True)
        lines.insert(1, pad + b"\n")
        path.write_bytes(b"".join(lines))
        where, size = "line 2", "line longer than --max-record-mb 0.25: skipped"
    result = cli("--otlp", str(path), "-T", str(tmp_path / "db"), "--max-record-mb", "0.25")
    assert result.returncode == 1, result.stderr
    problems = result.stderr.strip().splitlines()
    assert len(problems) == 1 and where in problems[0] and size in problems[0], problems
    assert sorted(read_transcripts(tmp_path / "db")) == sorted(ids)
    with pytest.raises(SystemExit) as usage:  # argparse's one-line usage error, exit status 2
        cli("--otlp", str(path), "-T", str(tmp_path / "db2"), "--max-record-mb", "0")
    assert usage.value.code == 2


def test_deeply_nested_json_is_a_bad_record(tmp_path, cli):
    """A line nested far deeper than OTLP ever is (json.loads would raise RecursionError) is one
    bad record with its line number; the import goes on."""
    path = tmp_path / "deep.jsonl"
    ids = _other_producer(path, traces=2)
    lines = path.read_text().splitlines()
    deep = '{"resourceSpans": ' + "[" * 200_000 + "]" * 200_000 + "}"
    kvlist = ('{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": '
              + '{"kvlistValue": {"values": [{"key": "k", "value": ' * 400 + '{"intValue": "1"}'
              + "}]}}" * 400 + "}]}}]}")
    path.write_text("\n".join([lines[0], deep, kvlist] + lines[1:]) + "\n")
    result = cli("--otlp", str(path), "-T", str(tmp_path / "db"))
    assert result.returncode == 1, result.stderr
    problems = result.stderr.strip().splitlines()
    assert [p.split(f"{path}: ", 1)[1] for p in problems] == [
        "line 2: JSON nested deeper than 128 levels", "line 3: JSON nested deeper than 128 levels"]
    assert sorted(read_transcripts(tmp_path / "db")) == sorted(ids)
