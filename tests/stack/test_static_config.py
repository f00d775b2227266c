"""The compose stack (alone and with the scale-out file merged in) and the collector config,
checked without Docker.

Each check is shown to catch a real mistake: a copy of the config with the mistake planted must
produce the matching problem.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path
from typing import Callable

import pytest
import yaml

from tests.stack import stack_lint
from tests.stack.stack_lint import Stack, lint_stack, load_stack


@pytest.fixture(scope="module")
def stack() -> Stack:
    return load_stack()


@pytest.fixture(scope="module")
def scale_stack() -> Stack:
    return load_stack(scale=True)


def test_files_are_yaml_mappings() -> None:
    for path in (stack_lint.COMPOSE_PATH, stack_lint.SCALE_COMPOSE_PATH, stack_lint.COLLECTOR_PATH):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_real_stack_has_no_problems(stack: Stack) -> None:
    assert lint_stack(stack) == []


def test_real_scale_out_stack_has_no_problems(scale_stack: Stack) -> None:
    assert lint_stack(scale_stack) == []


def test_scale_out_file_turns_on_what_it_says(stack: Stack, scale_stack: Stack) -> None:
    """Merged the way compose merges -f files: three receivers with a spool each, reached by
    trace id through the collector, four MLflow workers; the single-receiver stack keeps its
    named spool volume and its direct exporter."""
    base, scaled = stack.compose["services"], scale_stack.compose["services"]
    assert stack_lint.replicas(base["receiver"]) == 1
    assert stack_lint.replicas(scaled["receiver"]) == 3
    logs = {"type": "bind", "source": "${PWD}/logs", "target": "${PWD}/logs", "read_only": True,
            "bind": {"create_host_path": False}}  # the log-artifact root, read-only, on both
    assert base["receiver"]["volumes"] == ["receiver-data:/data", logs]
    assert scaled["receiver"]["volumes"] == [{"type": "volume", "target": "/data"}, logs]
    assert stack_lint.mlflow_workers(base["mlflow"]) == 2
    assert stack_lint.mlflow_workers(scaled["mlflow"]) == 4
    for s, exporter in ((stack, "otlp_http/receiver"), (scale_stack, "loadbalancing/receiver")):
        pipelines = stack_lint.collector_config(s)["service"]["pipelines"]
        assert exporter in pipelines["traces"]["exporters"]
        assert exporter in pipelines["logs"]["exporters"]
    # everything else is the base file's
    assert scaled["postgres"] == base["postgres"] and scaled["jaeger"] == base["jaeger"]
    assert scaled["mlflow"]["command"] == base["mlflow"]["command"]


def test_compose_merge_rules() -> None:
    base = {"services": {"a": {"command": ["x", "--y"], "environment": ["K=1", "L=2"],
                               "volumes": ["v:/data", "./c:/etc/c:ro"], "expose": ["1"]}}}
    override = {"services": {"a": {"command": ["z"], "environment": {"K": "3"},
                                   "volumes": [{"type": "volume", "target": "/data"}],
                                   "expose": ["2"], "deploy": {"replicas": 2}}}}
    a = stack_lint.merge_compose(base, override)["services"]["a"]
    assert a["command"] == ["z"]
    assert a["environment"] == {"K": "3", "L": "2"}
    assert a["volumes"] == [{"type": "volume", "target": "/data"}, "./c:/etc/c:ro"]
    assert a["expose"] == ["1", "2"] and a["deploy"] == {"replicas": 2}


def test_scale_out_file_only_overrides_existing_services() -> None:
    """A misspelt service in the override would become a new, image-less service."""
    override = yaml.safe_load(stack_lint.SCALE_COMPOSE_PATH.read_text())
    base = yaml.safe_load(stack_lint.COMPOSE_PATH.read_text())
    assert set(override["services"]) <= set(base["services"])
    override["services"]["reciever"] = override["services"].pop("receiver")
    s = load_stack()
    s.compose = stack_lint.merge_compose(base, override)
    assert any("'reciever' has neither image nor build" in p for p in lint_stack(s))


@pytest.mark.parametrize(
    "env",
    [
        {"EXTRA_OTLP_EXPORTER": "otlp_http/extra"},
        {"EXTRA_OTLP_EXPORTER": "otlp_http/extra", "EXTRA_OTLP_LOGS_EXPORTER": "otlp_http/extra"},
    ],
    ids=["extra-traces", "extra-traces-and-logs"],
)
def test_extra_backend_switch_resolves_to_defined_exporter(stack: Stack, env: dict[str, str]) -> None:
    s = stack.clone()
    s.env = env
    assert lint_stack(s) == []
    pipelines = stack_lint.resolve_env(s.collector, env)["service"]["pipelines"]
    assert "otlp_http/extra" in pipelines["traces"]["exporters"]


def test_extra_backend_typo_is_reported(stack: Stack) -> None:
    s = stack.clone()
    s.env = {"EXTRA_OTLP_EXPORTER": "otlphttp/extra"}
    assert any("'otlphttp/extra', which is not defined" in p for p in lint_stack(s))


def test_receiver_ports_match_cli_defaults(stack: Stack) -> None:
    try:
        from inspect_otel.receiver import cli as receiver_cli
    except ImportError as exc:  # the receiver is built in parallel
        pytest.skip(f"receiver CLI not importable yet: {exc}")
    parser = argparse.ArgumentParser()
    receiver_cli.add_arguments(parser)
    defaults = {"port": parser.get_default("port"), "grpc_port": parser.get_default("grpc_port")}
    assert defaults == {"port": 4318, "grpc_port": 4317}
    s = stack.clone()
    s.receiver_defaults = defaults
    assert stack_lint.lint_receiver(s) == []
    assert stack_lint.lint_dockerfile(s) == []
    # The flags the compose file and the Dockerfile pass must exist in the real CLI.
    args = stack_lint.command_args(s.compose["services"]["receiver"])[1:]
    parser.parse_args(args)


def test_pinned_versions_are_documented(stack: Stack) -> None:
    """The collector version the config was written for is the one compose runs."""
    image = stack.compose["services"]["collector"]["image"]
    version = image.rsplit(":", 1)[1]
    assert f"contrib:{version}" in stack_lint.COLLECTOR_PATH.read_text()
    assert image.startswith("otel/opentelemetry-collector-contrib:")


# ------------------------------------------------------------------------ planted mistakes


def _svc(s: Stack, name: str) -> dict:
    return s.compose["services"][name]


def _set_flag(s: Stack, service: str, flag: str, value: str) -> None:
    cmd = _svc(s, service)["command"]
    _svc(s, service)["command"] = [c for c in cmd if not c.startswith(flag + "=")] + [f"{flag}={value}"]


def _rename_key(d: dict, old: str, new: str) -> None:
    d[new] = d.pop(old)


MUTATIONS: dict[str, tuple[Callable[[Stack], None], str]] = {
    "remove jaeger service": (
        lambda s: s.compose["services"].pop("jaeger"),
        "sends to 'jaeger', which is not a compose service",
    ),
    "remove receiver service": (
        lambda s: s.compose["services"].pop("receiver"),
        "service 'receiver' is missing",
    ),
    "rename exporter definition": (
        lambda s: _rename_key(s.collector["exporters"], "otlp_http/receiver", "otlp_http/mlflow"),
        "uses exporter 'otlp_http/receiver', which is not defined",
    ),
    "undefined processor in pipeline": (
        lambda s: s.collector["service"]["pipelines"]["logs"]["processors"].append("attributes/x"),
        "uses processor 'attributes/x', which is not defined",
    ),
    "undefined extension": (
        lambda s: s.collector["service"]["extensions"].append("pprof"),
        "extension 'pprof' is enabled but not defined",
    ),
    "deprecated exporter name": (
        lambda s: _rename_key(s.collector["exporters"], "otlp_grpc/jaeger", "otlp/jaeger"),
        "deprecated type 'otlp'",
    ),
    "unknown component type": (
        lambda s: _rename_key(s.collector["processors"], "batch", "batchh"),
        "unknown type 'batchh'",
    ),
    "exporter to wrong port": (
        lambda s: s.collector["exporters"]["otlp_http/receiver"].update(endpoint="http://receiver:4319"),
        "sends to receiver:4319",
    ),
    "exporter without port": (
        lambda s: s.collector["exporters"]["otlp_http/receiver"].update(endpoint="http://receiver"),
        "names no explicit port",
    ),
    "extra backend default names no service": (
        lambda s: s.collector["exporters"]["otlp_http/extra"].update(
            endpoint="${env:EXTRA_OTLP_ENDPOINT:-http://phoenixx:6006}"
        ),
        "config default for EXTRA_OTLP_ENDPOINT ('http://phoenixx:6006') differs",
    ),
    "receiver stops exposing its port": (
        lambda s: _svc(s, "receiver").update(expose=["4317"]),
        "exposes [4317]",
    ),
    "receiver port differs from CLI": (
        lambda s: _set_flag(s, "receiver", "--port", "9999"),
        "--port 9999 differs from the CLI default 4318",
    ),
    "receiver grpc port differs from CLI": (
        lambda s: _set_flag(s, "receiver", "--grpc-port", "5317"),
        "--grpc-port 5317 differs from the CLI default 4317",
    ),
    "receiver bound to localhost": (
        lambda s: _set_flag(s, "receiver", "--host", "127.0.0.1"),
        "receiver must listen on 0.0.0.0",
    ),
    "receiver mlflow uri names no service": (
        lambda s: _set_flag(s, "receiver", "--mlflow-uri", "http://mlfow:5000"),
        "--mlflow-uri names 'mlfow'",
    ),
    "mlflow host header not allowed": (
        lambda s: _set_flag(s, "mlflow", "--allowed-hosts", "localhost,localhost:*"),
        "does not allow the Host header 'mlflow'",
    ),
    "mlflow on sqlite with several workers": (
        lambda s: (_set_flag(s, "mlflow", "--backend-store-uri", "sqlite:////mlflow/mlflow.db"),
                   _set_flag(s, "mlflow", "--workers", "4")),
        "should run with --workers 1",
    ),
    "mlflow on postgres with one worker": (
        lambda s: _svc(s, "mlflow")["environment"].update(MLFLOW_WORKERS="1"),
        "runs 1 worker(s)",
    ),
    "mlflow store postgres:// scheme": (
        lambda s: _svc(s, "mlflow")["environment"].update(
            MLFLOW_BACKEND_STORE_URI="postgres://mlflow:mlflow@postgres:5432/mlflow"),
        "must be postgresql://",
    ),
    "mlflow store password differs from postgres": (
        lambda s: _svc(s, "postgres")["environment"].update(POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-s3cret}"),
        "store password does not match",
    ),
    "mlflow store host is no service": (
        lambda s: _svc(s, "mlflow")["environment"].update(
            MLFLOW_BACKEND_STORE_URI="postgresql://mlflow:mlflow@postgresql:5432/mlflow"),
        "names host 'postgresql', which is not a compose service",
    ),
    "mlflow starts before postgres is healthy": (
        lambda s: _svc(s, "mlflow").pop("depends_on"),
        "mlflow does not wait for 'postgres' to be healthy",
    ),
    "mlflow official image without driver": (
        lambda s: (_svc(s, "mlflow").pop("build"), _svc(s, "mlflow").update(image="ghcr.io/mlflow/mlflow:v3.17.2")),
        "mlflow image has no PostgreSQL driver",
    ),
    "mlflow Dockerfile without psycopg": (
        lambda s: s.dockerfiles.update({k: "FROM ghcr.io/mlflow/mlflow:v3.17.2\n" for k in s.dockerfiles}),
        "does not install a pinned psycopg",
    ),
    "mlflow Dockerfile psycopg unpinned": (
        lambda s: s.dockerfiles.update({k: v.replace("==3.3.9", "") for k, v in s.dockerfiles.items()}),
        "does not install a pinned psycopg",
    ),
    "mlflow Dockerfile base unpinned": (
        lambda s: s.dockerfiles.update({k: v.replace(":v3.17.2", "") for k, v in s.dockerfiles.items()}),
        "mlflow Dockerfile: base image 'ghcr.io/mlflow/mlflow' has no tag",
    ),
    "remove postgres service": (
        lambda s: s.compose["services"].pop("postgres"),
        "service 'postgres' is missing",
    ),
    "postgres 18 volume at the pre-18 path": (
        lambda s: _svc(s, "postgres").update(volumes=["postgres-data:/var/lib/postgresql/data"]),
        "postgres data is not on a named volume at /var/lib/postgresql ",
    ),
    "postgres data on an anonymous volume": (
        lambda s: _svc(s, "postgres").update(volumes=[]),
        "postgres data is not on a named volume",
    ),
    "postgres without password": (
        lambda s: _svc(s, "postgres")["environment"].pop("POSTGRES_PASSWORD"),
        "no POSTGRES_PASSWORD",
    ),
    "postgres healthcheck on the socket": (
        lambda s: _svc(s, "postgres")["healthcheck"].update(test=["CMD", "pg_isready", "-U", "mlflow"]),
        "probes the unix socket",
    ),
    "postgres published on the host": (
        lambda s: _svc(s, "postgres").update(ports=["5432:5432"]),
        "postgres is published on the host",
    ),
    "postgres healthcheck on an unexposed port": (
        lambda s: _svc(s, "postgres")["healthcheck"].update(
            test=["CMD", "pg_isready", "-h", "127.0.0.1", "-p", "5433"]),
        "healthcheck probes port 5433",
    ),
    "mlflow file store": (
        lambda s: _set_flag(s, "mlflow", "--backend-store-uri", "/mlflow/runs"),
        "needs a SQL backend store",
    ),
    "mlflow db off the volume": (
        lambda s: _set_flag(s, "mlflow", "--backend-store-uri", "sqlite:////tmp/mlflow.db"),
        "is not on a volume",
    ),
    "latest image": (
        lambda s: _svc(s, "jaeger").update(image="jaegertracing/jaeger:latest"),
        "is not pinned",
    ),
    "untagged image": (
        lambda s: _svc(s, "mlflow").update(image="ghcr.io/mlflow/mlflow"),
        "has no tag",
    ),
    "untagged image with registry port": (
        lambda s: _svc(s, "mlflow").update(image="registry.local:5000/mlflow"),
        "has no tag",
    ),
    "unpinned Dockerfile base": (
        lambda s: setattr(s, "dockerfile", s.dockerfile.replace("FROM python:3.11.13-slim-bookworm", "FROM python")),
        "Dockerfile: base image 'python' has no tag",
    ),
    "Dockerfile without mlflow extra": (
        lambda s: setattr(s, "dockerfile", s.dockerfile.replace('".[mlflow]"', ".")),
        "[mlflow] extra",
    ),
    "healthcheck removed from dependency": (
        lambda s: _svc(s, "mlflow").pop("healthcheck"),
        "waits for 'mlflow' to be healthy, but 'mlflow' has no healthcheck",
    ),
    "healthcheck probes unexposed port": (
        lambda s: _svc(s, "receiver")["healthcheck"].update(
            test=["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8080/health')"]
        ),
        "healthcheck probes port 8080",
    ),
    "depends on unknown service": (
        lambda s: _svc(s, "collector")["depends_on"].update(tempo={"condition": "service_started"}),
        "depends on unknown service 'tempo'",
    ),
    "depends on profile-only service": (
        lambda s: _svc(s, "collector")["depends_on"].update(phoenix={"condition": "service_healthy"}),
        "which only runs under a profile",
    ),
    "otlp receiver on localhost": (
        lambda s: s.collector["receivers"]["otlp"]["protocols"]["http"].update(endpoint="localhost:4318"),
        "otlp receiver http must listen on 0.0.0.0:4318",
    ),
    "collector OTLP port not published": (
        lambda s: _svc(s, "collector").update(
            ports=[p for p in _svc(s, "collector")["ports"] if ":4318:" not in str(p)]
        ),
        "collector port 4318 (otlp receiver) is not published",
    ),
    "prometheus port not published": (
        lambda s: _svc(s, "collector").update(
            ports=[p for p in _svc(s, "collector")["ports"] if ":8889:" not in str(p)]
        ),
        "collector port 8889 (prometheus) is not published",
    ),
    "host port clash": (
        lambda s: _svc(s, "phoenix")["ports"].append("${INSPECT_OTEL_BIND:-127.0.0.1}:4317:4317"),
        "host port 4317 is published by both",
    ),
    "config mounted at wrong path": (
        lambda s: _svc(s, "collector").update(volumes=["./otel-collector/config.yaml:/etc/otelcol/config.yaml:ro"]),
        "collector config is not mounted",
    ),
    "config source missing": (
        lambda s: _svc(s, "collector").update(
            volumes=["./otel-collector/collector.yaml:/etc/otelcol-contrib/config.yaml:ro"]
        ),
        "does not exist",
    ),
    "env var not passed to collector": (
        lambda s: _svc(s, "collector")["environment"].pop("EXTRA_OTLP_ENDPOINT"),
        "reads ${env:EXTRA_OTLP_ENDPOINT}, which compose does not pass",
    ),
    "traces no longer reach jaeger": (
        lambda s: s.collector["service"]["pipelines"]["traces"]["exporters"].remove("otlp_grpc/jaeger"),
        "traces are not sent to ['jaeger']",
    ),
    "logs no longer reach the receiver": (
        lambda s: _receiver_exporter_in(s, "logs", "debug"),
        "logs are not sent to ['receiver']",
    ),
    "memory_limiter not first": (
        lambda s: s.collector["service"]["pipelines"]["traces"]["processors"].reverse(),
        "must start with memory_limiter",
    ),
    "truncation dropped": (
        lambda s: s.collector["service"]["pipelines"]["logs"]["processors"].remove("transform/truncate"),
        "'logs' does not truncate attributes",
    ),
    "health_check disabled": (
        lambda s: s.collector["service"].update(extensions=[]),
        "health_check extension is not enabled",
    ),
    "metrics not to prometheus": (
        lambda s: s.collector["service"]["pipelines"]["metrics"].update(exporters=["debug"]),
        "metrics are not exported to Prometheus",
    ),
    "port published on every interface": (
        lambda s: _svc(s, "mlflow").update(ports=["5000:5000"]),
        "service 'mlflow' publishes '5000:5000'",
    ),
    "port published on a fixed address": (
        lambda s: _svc(s, "jaeger").update(ports=["0.0.0.0:16686:16686"]),
        "service 'jaeger' publishes '0.0.0.0:16686:16686'",
    ),
    "port published on another variable": (
        lambda s: _svc(s, "phoenix").update(ports=["${BIND:-127.0.0.1}:6006:6006"]),
        "service 'phoenix' publishes",
    ),
    "publishing service does not wait for the guard": (
        lambda s: _svc(s, "jaeger").pop("depends_on"),
        "service 'jaeger' publishes ports but does not wait for 'expose-guard'",
    ),
    "guard only started, not completed": (
        lambda s: _svc(s, "mlflow")["depends_on"].update({"expose-guard": {"condition": "service_started"}}),
        "service 'mlflow' publishes ports but does not wait for 'expose-guard'",
    ),
    "guard removed": (
        lambda s: s.compose["services"].pop("expose-guard"),
        "service 'expose-guard' is missing",
    ),
    "collector gets an empty auth token": (
        lambda s: _svc(s, "collector")["environment"].update(
            OTLP_AUTH_TOKEN="${INSPECT_OTEL_RECEIVER_TOKEN:-}"),
        "'bearertokenauth/otlp' has an empty token",
    ),
    "receiver without log-artifact roots": (
        lambda s: _svc(s, "receiver")["environment"].pop("INSPECT_OTEL_LOG_ARTIFACT_ROOTS"),
        "gets no INSPECT_OTEL_LOG_ARTIFACT_ROOTS",
    ),
    "log root mounted elsewhere": (
        lambda s: _svc(s, "receiver")["volumes"][1].update(target="/srv/logs"),
        "is not bind-mounted read-only at the same path",
    ),
    "log root mounted writable": (
        lambda s: _svc(s, "receiver")["volumes"][1].pop("read_only"),
        "is not bind-mounted read-only at the same path",
    ),
    "log root in the short syntax (Docker creates it, root-owned)": (
        lambda s: _svc(s, "receiver").update(volumes=["receiver-data:/data", "${PWD}/logs:${PWD}/logs:ro"]),
        "without create_host_path",
    ),
    "undeclared named volume": (
        lambda s: s.compose["volumes"].pop("mlflow-data"),
        "mounts undeclared volume 'mlflow-data'",
    ),
}


@pytest.mark.parametrize("mistake", list(MUTATIONS))
def test_planted_mistake_is_reported(stack: Stack, mistake: str) -> None:
    mutate, expected = MUTATIONS[mistake]
    s = stack.clone()
    mutate(s)
    problems = lint_stack(s)
    assert any(expected in p for p in problems), f"{mistake}: expected {expected!r} in {problems}"


def _lb(s: Stack) -> dict:
    return s.collector["exporters"]["loadbalancing/receiver"]


def _receiver_exporter_in(s: Stack, pipeline: str, exporter: str) -> None:
    exporters = s.collector["service"]["pipelines"][pipeline]["exporters"]
    exporters[:] = [exporter if "RECEIVER_EXPORTER" in e else e for e in exporters]


SCALE_MUTATIONS: dict[str, tuple[Callable[[Stack], None], str]] = {
    "replicas without the load balancer": (
        lambda s: _svc(s, "collector")["environment"].update(RECEIVER_EXPORTER="otlp_http/receiver"),
        "3 receiver replicas but the collector does not load-balance",
    ),
    "no routing key": (
        lambda s: _lb(s).pop("routing_key"),
        "must set routing_key: traceID",
    ),
    "routing by service": (
        lambda s: _lb(s).update(routing_key="service"),
        "must set routing_key: traceID",
    ),
    "logs bypass the load balancer": (
        lambda s: _receiver_exporter_in(s, "logs", "otlp_http/receiver"),
        "logs do not go through 'loadbalancing/receiver'",
    ),
    "balancer type of a later release": (
        lambda s: _rename_key(s.collector["exporters"], "loadbalancing/receiver", "load_balancing/receiver"),
        "unknown type 'load_balancing'",
    ),
    "resolver names another host": (
        lambda s: _lb(s)["resolver"]["dns"].update(hostname="receivers"),
        "sends to 'receivers', which is not a compose service",
    ),
    "resolver on the HTTP port": (
        lambda s: _lb(s)["resolver"]["dns"].update(port="4318"),
        "sends to port 4318, the receivers serve OTLP/gRPC on 4317",
    ),
    "static resolver": (
        lambda s: _lb(s).update(resolver={"static": {"hostnames": ["receiver:4317"]}}),
        "resolver.dns.hostname: receiver",
    ),
    "TLS towards the receivers": (
        lambda s: _lb(s)["protocol"]["otlp"]["tls"].update(insecure=False),
        "must use plain gRPC",
    ),
    "endpoint in the otlp template": (
        lambda s: _lb(s)["protocol"]["otlp"].update(endpoint="receiver:4317"),
        "protocol.otlp.endpoint is ignored",
    ),
    "no receiver token": (
        lambda s: _lb(s)["protocol"]["otlp"].pop("headers"),
        "does not send the receiver token",
    ),
    "replicas share the spool volume": (
        lambda s: _svc(s, "receiver").update(volumes=["receiver-data:/data"]),
        "3 receiver replicas share the named volume 'receiver-data' at /data",
    ),
    "replicas with a container name": (
        lambda s: _svc(s, "receiver").update(container_name="receiver"),
        "cannot run as replicas",
    ),
    "replicas publish host ports": (
        lambda s: _svc(s, "receiver").update(ports=["14318:4318"]),
        "receiver replicas publish host ports",
    ),
    "several receivers on sqlite": (
        lambda s: _set_flag(s, "mlflow", "--backend-store-uri", "sqlite:////mlflow/mlflow.db"),
        "several receivers write through MLflow on sqlite",
    ),
}


@pytest.mark.parametrize("mistake", list(SCALE_MUTATIONS))
def test_planted_scale_out_mistake_is_reported(scale_stack: Stack, mistake: str) -> None:
    mutate, expected = SCALE_MUTATIONS[mistake]
    s = scale_stack.clone()
    mutate(s)
    problems = lint_stack(s)
    assert any(expected in p for p in problems), f"{mistake}: expected {expected!r} in {problems}"


def test_broken_yaml_does_not_parse(tmp_path: Path) -> None:
    broken = stack_lint.COLLECTOR_PATH.read_text().replace("  otlp:\n", "  otlp:\n bad", 1)
    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(broken)


def test_docs_list_every_published_port_and_pinned_image(stack: Stack) -> None:
    """The README's stack section (docs/stack.md) names every host port and image tag."""
    docs = (stack_lint.REPO / "docs" / "stack.md").read_text()
    for name, svc in stack.compose["services"].items():
        for host_port in stack_lint.published_ports(svc):
            assert str(host_port) in docs, f"port {host_port} of {name!r} missing from docs/stack.md"
        if "image" in svc:
            assert svc["image"] in docs, f"image {svc['image']!r} missing from docs/stack.md"
    for dockerfile in stack.dockerfiles.values():
        for base in (ln.split()[1] for ln in dockerfile.splitlines() if ln.startswith("FROM ")):
            assert base in docs, f"base image {base!r} missing from docs/stack.md"


def test_docs_name_every_variable_the_compose_files_read() -> None:
    docs = (stack_lint.REPO / "docs" / "stack.md").read_text()
    for path in (stack_lint.COMPOSE_PATH, stack_lint.SCALE_COMPOSE_PATH):
        for var in set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", path.read_text())):
            assert f"`{var}`" in docs, f"{path.name} reads ${{{var}}}, docs/stack.md does not say"


# ------------------------------------------------------------------- exposure (docs/security.md)

TOKEN = {"INSPECT_OTEL_RECEIVER_TOKEN": "t0k3n-for-the-lint"}


@pytest.mark.parametrize("scale", [False, True], ids=["base", "scale"])
@pytest.mark.parametrize("env", [{}, TOKEN, {**TOKEN, "INSPECT_OTEL_BIND": "0.0.0.0"}],
                         ids=["default", "token", "exposed-with-token"])
def test_every_way_the_stack_is_run_has_no_problems(env: dict[str, str], scale: bool) -> None:
    s = load_stack(scale=scale)
    s.env = env
    assert lint_stack(s) == []


def test_published_ports_are_loopback_unless_named() -> None:
    s = load_stack()
    published = [(name, stack_lint.compose_default(p, {}), stack_lint.compose_default(
                  p, {"INSPECT_OTEL_BIND": "0.0.0.0"}))
                 for name, svc in s.compose["services"].items() for p in svc.get("ports") or []]
    assert {name for name, _, _ in published} == {"collector", "mlflow", "jaeger", "phoenix"}
    assert all(local.startswith("127.0.0.1:") and exposed.startswith("0.0.0.0:")
               for _, local, exposed in published)


def test_collector_requires_the_token_exactly_when_it_is_set() -> None:
    s = load_stack()
    cfg = stack_lint.collector_config(s)
    assert cfg["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]
    assert stack_lint._token_receivers(cfg) == {"otlp": ["grpc", "http"]}  # open, on 127.0.0.1
    s.env = TOKEN
    cfg = stack_lint.collector_config(s)
    for pipeline in ("traces", "logs", "metrics"):
        assert cfg["service"]["pipelines"][pipeline]["receivers"] == ["otlp/token"]
    assert stack_lint._token_receivers(cfg) == {}
    assert cfg["extensions"]["bearertokenauth/otlp"]["token"] == TOKEN["INSPECT_OTEL_RECEIVER_TOKEN"]
    # a receiver that forgets its authenticator is reported
    s.collector["receivers"]["otlp/token"]["protocols"]["http"].pop("auth")
    assert any("receiver 'otlp/token' still accepts http without the token" in p
               for p in lint_stack(s))


def _guard(env: dict[str, str]) -> subprocess.CompletedProcess:
    """The guard's own command, as compose hands it to the container's sh, run by this machine's
    sh (POSIX, like busybox's) with the environment compose gives it."""
    guard = load_stack().compose["services"]["expose-guard"]
    cmd = [stack_lint.compose_default(c, env) for c in stack_lint.command_args(guard)]
    assert cmd[:2] == ["sh", "-c"]
    container_env = stack_lint.service_env(guard, env)
    assert "INSPECT_OTEL_RECEIVER_TOKEN" not in container_env  # never the token itself
    return subprocess.run(cmd, env={"PATH": os.environ["PATH"], **container_env},
                          capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("env, starts", [
    ({}, True),
    ({"INSPECT_OTEL_BIND": "127.0.0.1"}, True),
    ({"INSPECT_OTEL_BIND": "127.0.0.2"}, True),
    ({"INSPECT_OTEL_BIND": "[::1]"}, True),
    ({"INSPECT_OTEL_BIND": "0.0.0.0"}, False),
    ({"INSPECT_OTEL_BIND": "192.168.10.5"}, False),
    ({"INSPECT_OTEL_BIND": "0.0.0.0", "INSPECT_OTEL_RECEIVER_TOKEN": ""}, False),
    ({"INSPECT_OTEL_BIND": "0.0.0.0", **TOKEN}, True),
    ({"INSPECT_OTEL_BIND": "192.168.10.5", **TOKEN}, True),
])
def test_the_stack_refuses_to_start_exposed_without_a_token(env: dict[str, str], starts: bool) -> None:
    result = _guard(env)
    assert (result.returncode == 0) is starts, result
    if not starts:
        assert "set INSPECT_OTEL_RECEIVER_TOKEN first" in result.stderr
        assert env["INSPECT_OTEL_BIND"] in result.stderr


@pytest.mark.parametrize("text, env, expected", [
    ("${A:-d}", {}, "d"), ("${A:-d}", {"A": ""}, "d"), ("${A-d}", {"A": ""}, ""),
    ("x${A:+/y}", {}, "x"), ("x${A:+/y}", {"A": ""}, "x"), ("x${A:+/y}", {"A": "1"}, "x/y"),
    ("x${A+/y}", {"A": ""}, "x/y"), ("$$A ${A}", {"A": "1"}, "$A 1"),
])
def test_compose_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert stack_lint.compose_default(text, env) == expected


def test_compose_interpolation_required_variable() -> None:
    with pytest.raises(stack_lint.InterpolationError, match="A: set it"):
        stack_lint.compose_default("${A:?set it}", {"A": ""})
