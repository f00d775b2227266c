"""Static checks of docker-compose.yml (alone, and merged with docker-compose.scale.yml),
otel-collector/config.yaml and the Dockerfiles.

No Docker engine runs on the development machines, so these are the only checks the stack gets
before a user runs it. ``lint_stack`` returns a list of human-readable problems (empty = fine);
tests assert it is empty for the real files and that each kind of real mistake, planted in a
copy, is reported. ``load_stack(scale=True)`` merges the scale-out file the way
``docker compose -f docker-compose.yml -f docker-compose.scale.yml`` does.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_PATH = REPO / "docker-compose.yml"
SCALE_COMPOSE_PATH = REPO / "docker-compose.scale.yml"
COLLECTOR_PATH = REPO / "otel-collector" / "config.yaml"
DOCKERFILE_PATH = REPO / "Dockerfile"

COLLECTOR_CONFIG_IN_CONTAINER = "/etc/otelcol-contrib/config.yaml"

# Component types of the contrib distribution this config may use. A typo or a type the
# distribution does not ship makes the collector refuse to start.
KNOWN_TYPES = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch", "transform", "attributes", "redaction", "filter",
                   "resource", "tail_sampling", "probabilistic_sampler"},
    "exporters": {"otlp_grpc", "otlp_http", "debug", "nop", "prometheus", "file", "loadbalancing"},
    "extensions": {"health_check", "healthcheckv2", "pprof", "zpages", "file_storage",
                   "basicauth", "bearertokenauth"},
}
# Still loaded by the collector, but deprecated since v0.144 (a warning per pipeline).
DEPRECATED_TYPES = {"otlp": "otlp_grpc", "otlphttp": "otlp_http", "logging": "debug"}

# Services that cannot carry a Docker healthcheck, with the reason (shown in docs/comments).
HEALTHCHECK_EXEMPT = {"collector": "distroless image: no shell or HTTP client inside",
                      "expose-guard": "runs once and exits; services wait for it to complete"}

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_COMPOSE_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
# Compose's whole interpolation syntax (https://docs.docker.com/reference/compose-file/interpolation/):
# ${VAR}, ${VAR:-default} / ${VAR-default}, ${VAR:+replacement} / ${VAR+replacement},
# ${VAR:?error} / ${VAR?error}, and $$ for a literal $.
_COMPOSE_ANY_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])([^}]*))?\}")

# The exposure rules of docs/security.md: every published port on ${INSPECT_OTEL_BIND}, loopback
# by default; beyond it only with the stack's token, which the collector then requires.
BIND_VAR = "INSPECT_OTEL_BIND"
TOKEN_VAR = "INSPECT_OTEL_RECEIVER_TOKEN"
GUARD_SERVICE = "expose-guard"
_PUBLISHED = re.compile(r"\$\{INSPECT_OTEL_BIND:-127\.0\.0\.1\}:(\d+):(\d+)(?:/tcp)?")


@dataclass
class Stack:
    compose: dict[str, Any]
    collector: dict[str, Any]
    dockerfile: str
    compose_dir: Path = REPO
    # The receiver CLI's defaults (`inspect-otel receiver --help`).
    receiver_defaults: dict[str, Any] = field(
        default_factory=lambda: {"port": 4318, "grpc_port": 4317}
    )
    # The user's shell variables, e.g. {"EXTRA_OTLP_EXPORTER": "otlp_http/extra"}: compose
    # interpolates them into the services, the collector config reads its container's env.
    env: dict[str, str] = field(default_factory=dict)
    # Dockerfiles that compose services build from other than the receiver's: path -> text.
    dockerfiles: dict[str, str] = field(default_factory=dict)

    def clone(self) -> "Stack":
        return copy.deepcopy(self)


def load_stack(scale: bool = False) -> Stack:
    compose = yaml.safe_load(COMPOSE_PATH.read_text())
    if scale:
        compose = merge_compose(compose, yaml.safe_load(SCALE_COMPOSE_PATH.read_text()))
    dockerfiles = {}
    for svc in (compose.get("services") or {}).values():
        build = (svc or {}).get("build")
        if isinstance(build, dict) and build.get("dockerfile"):
            path = REPO / build.get("context", ".") / build["dockerfile"]
            dockerfiles[build["dockerfile"]] = path.read_text() if path.is_file() else ""
    return Stack(
        compose=compose,
        collector=yaml.safe_load(COLLECTOR_PATH.read_text()),
        dockerfile=DOCKERFILE_PATH.read_text(),
        dockerfiles=dockerfiles,
    )


# Compose's merge of several -f files: mappings merge key by key, these sequences are replaced,
# volumes merge by their target path, environment and other mappings by key, any other sequence
# is appended (https://docs.docker.com/reference/compose-file/merge/).
_REPLACED = {"command", "entrypoint", "test"}


def _volume_target(vol: Any) -> str:
    if isinstance(vol, dict):
        return str(vol.get("target"))
    parts = str(vol).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _as_mapping(env: Any) -> dict[str, Any]:
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return dict(env or {})


def merge_compose(base: Any, override: Any, key: str = "") -> Any:
    if key == "environment":
        return {**_as_mapping(base), **_as_mapping(override)}
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge_compose(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        if key == "volumes":
            merged = {_volume_target(v): v for v in base}
            merged.update({_volume_target(v): v for v in override})
            return list(merged.values())
        return base + [v for v in override if v not in base]
    return override


# --------------------------------------------------------------------------------- helpers


def resolve_env(value: Any, env: dict[str, str]) -> Any:
    """Expand ``${env:NAME:-default}`` the way the collector does (env wins, else default)."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value)
    if isinstance(value, list):
        return [resolve_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: resolve_env(v, env) for k, v in value.items()}
    return value


def env_refs(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, str):
        found |= {m.group(1) for m in _ENV_REF.finditer(value)}
    elif isinstance(value, list):
        for v in value:
            found |= env_refs(v)
    elif isinstance(value, dict):
        for v in value.values():
            found |= env_refs(v)
    return found


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def parse_endpoint(endpoint: str, exporter_type: str) -> tuple[str | None, int | None]:
    """Host and port of an exporter endpoint (``host:port`` for gRPC, a URL for HTTP)."""
    if "://" not in endpoint:
        endpoint = "//" + endpoint
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        return parts.hostname, None
    return parts.hostname, port


class InterpolationError(ValueError):
    """``${VAR:?message}`` met an unset variable: compose refuses the file with the message."""


def compose_default(value: Any, env: dict[str, str] | None = None) -> Any:
    """Value a compose file yields from the user's variables ``env`` (none: the defaults)."""
    if not isinstance(value, str):
        return value
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        present = name in env
        usable = present and env[name] != "" if op and op.startswith(":") else present
        if op in (":-", "-"):
            return env[name] if usable else arg
        if op in (":+", "+"):
            return arg if usable else ""
        if op in (":?", "?"):
            if not usable:
                raise InterpolationError(f"{name}: {arg}")
            return env[name]
        return env.get(name, "")

    return _COMPOSE_ANY_REF.sub(sub, value)


def service_env(service: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as its container sees it."""
    return {k: str(compose_default(v, env)) if v is not None else "" for k, v in
            _as_mapping(service.get("environment")).items()}


def collector_config(stack: Stack) -> Any:
    """The collector config with ${env:...} resolved from its container's environment."""
    services = (stack.compose or {}).get("services") or {}
    return resolve_env(stack.collector, service_env(services.get("collector") or {}, stack.env))


def replicas(service: dict[str, Any]) -> int:
    value = (service.get("deploy") or {}).get("replicas", service.get("scale", 1))
    try:
        return int(compose_default(value))
    except (TypeError, ValueError):
        return 1


def service_ports(service: dict[str, Any]) -> set[int]:
    """Container ports a service listens on, as declared by `expose` and `ports`."""
    result: set[int] = set()
    for p in service.get("expose") or []:
        result.add(int(str(p).split("/")[0]))
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            result.add(int(p["target"]))
        else:
            result.add(int(str(p).split("/")[0].rsplit(":", 1)[-1]))
    return result


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """host port -> container port."""
    result: dict[int, int] = {}
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            result[int(p.get("published", p["target"]))] = int(p["target"])
            continue
        spec = str(p).split("/")[0].split(":")
        if len(spec) == 1:
            continue  # ephemeral host port
        result[int(spec[-2])] = int(spec[-1])
    return result


def command_args(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def image_pin_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return f"image {image!r} has no tag (that means `latest`)"
    tag = name.split(":", 1)[1]
    if not tag or tag == "latest" or "${" in tag:
        return f"image {image!r} is not pinned to a version"
    return None


def healthcheck_port(service: dict[str, Any]) -> int | None:
    test = (service.get("healthcheck") or {}).get("test")
    text = " ".join(test) if isinstance(test, list) else str(test or "")
    if "pg_isready" in text:
        m = re.search(r"(?:-p|--port)[ =](\d+)", text)
        return int(m.group(1)) if m else 5432
    m = re.search(r"https?://(?:localhost|127\.0\.0\.1)(?::(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else 80


# ---------------------------------------------------------------------------------- checks


def lint_collector(stack: Stack) -> list[str]:
    problems: list[str] = []
    cfg = collector_config(stack)
    if not isinstance(cfg, dict):
        return ["collector config is not a mapping"]
    service = cfg.get("service") or {}
    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("collector: no pipelines under service.pipelines")

    for kind, known in KNOWN_TYPES.items():
        for cid in (cfg.get(kind) or {}):
            ctype = component_type(cid)
            if ctype in DEPRECATED_TYPES and kind != "receivers":
                problems.append(
                    f"collector: {kind[:-1]} {cid!r} uses deprecated type {ctype!r}; "
                    f"use {DEPRECATED_TYPES[ctype]!r}"
                )
            elif ctype not in known:
                problems.append(f"collector: {kind[:-1]} {cid!r} has unknown type {ctype!r}")

    for ext in service.get("extensions") or []:
        if ext not in (cfg.get("extensions") or {}):
            problems.append(f"collector: extension {ext!r} is enabled but not defined")

    for name, pipe in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            ids = pipe.get(kind) or []
            if kind != "processors" and not ids:
                problems.append(f"collector: pipeline {name!r} has no {kind}")
            if len(ids) != len(set(ids)):
                problems.append(f"collector: pipeline {name!r} lists a {kind[:-1]} twice")
            for cid in ids:
                if cid not in (cfg.get(kind) or {}):
                    problems.append(
                        f"collector: pipeline {name!r} uses {kind[:-1]} {cid!r}, "
                        f"which is not defined under {kind}"
                    )
        procs = pipe.get("processors") or []
        if not procs or component_type(procs[0]) != "memory_limiter":
            problems.append(f"collector: pipeline {name!r} must start with memory_limiter")
        if "batch" not in {component_type(p) for p in procs}:
            problems.append(f"collector: pipeline {name!r} has no batch processor")
        if name.split("/")[0] in ("traces", "logs"):
            truncating = [
                p for p in procs
                if component_type(p) == "transform" and "truncate_all" in str(cfg["processors"].get(p))
            ]
            if not truncating:
                problems.append(f"collector: pipeline {name!r} does not truncate attributes")

    for rid, otlp in (cfg.get("receivers") or {}).items():
        if component_type(rid) != "otlp":
            continue
        protocols = (otlp or {}).get("protocols") or {}
        for proto, port in (("grpc", 4317), ("http", 4318)):
            endpoint = (protocols.get(proto) or {}).get("endpoint")
            if endpoint != f"0.0.0.0:{port}":
                problems.append(
                    f"collector: {rid} receiver {proto} must listen on 0.0.0.0:{port} "
                    f"(got {endpoint!r}; localhost is unreachable from other containers)"
                )
    if "health_check" not in (service.get("extensions") or []):
        problems.append("collector: health_check extension is not enabled")
    return problems


def _exporter_targets(cfg: dict[str, Any]) -> dict[str, list[tuple[str | None, int | None]]]:
    """Where each network exporter sends: (host, port) per destination."""
    targets: dict[str, list[tuple[str | None, int | None]]] = {}
    for cid, conf in (cfg.get("exporters") or {}).items():
        ctype, conf = component_type(cid), conf or {}
        if ctype == "loadbalancing":
            resolver = conf.get("resolver") or {}
            dns = resolver.get("dns") or {}
            if dns.get("hostname"):
                port = dns.get("port", 4317)  # the exporter's documented default
                targets[cid] = [(dns["hostname"], int(port) if str(port).isdigit() else None)]
            else:
                targets[cid] = [parse_endpoint(str(h) if ":" in str(h) else f"{h}:4317", "otlp")
                                for h in (resolver.get("static") or {}).get("hostnames") or []]
                targets[cid] = targets[cid] or [(None, None)]
            continue
        if ctype not in ("otlp_http", "otlp_grpc", "otlphttp", "otlp"):
            continue
        endpoint = conf.get("endpoint") or conf.get("traces_endpoint")
        targets[cid] = [parse_endpoint(str(endpoint), ctype) if endpoint else (None, None)]
    return targets


def lint_compose(stack: Stack) -> list[str]:
    problems: list[str] = []
    compose = stack.compose
    if not isinstance(compose, dict) or not isinstance(compose.get("services"), dict):
        return ["compose: no services"]
    services: dict[str, dict[str, Any]] = compose["services"]
    declared_volumes = set((compose.get("volumes") or {}).keys())

    for name in ("collector", "postgres", "mlflow", "receiver", "jaeger"):
        if name not in services:
            problems.append(f"compose: service {name!r} is missing")

    host_ports: dict[int, str] = {}
    for name, svc in services.items():
        svc = svc or {}
        if "image" in svc:
            p = image_pin_problem(str(svc["image"]))
            if p:
                problems.append(f"compose: service {name!r}: {p}")
        elif "build" not in svc:
            problems.append(f"compose: service {name!r} has neither image nor build")

        if "healthcheck" not in svc and name not in HEALTHCHECK_EXEMPT:
            problems.append(f"compose: service {name!r} has no healthcheck")
        hc_port = healthcheck_port(svc)
        if "healthcheck" in svc and hc_port is not None and hc_port not in service_ports(svc):
            problems.append(
                f"compose: service {name!r}: healthcheck probes port {hc_port}, "
                f"which the service does not expose"
            )

        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"compose: service {name!r} depends on unknown service {dep!r}")
                continue
            if (spec or {}).get("condition") == "service_healthy" and "healthcheck" not in (services[dep] or {}):
                problems.append(
                    f"compose: service {name!r} waits for {dep!r} to be healthy, "
                    f"but {dep!r} has no healthcheck"
                )
            if "profiles" in (services[dep] or {}) and "profiles" not in svc:
                problems.append(
                    f"compose: service {name!r} depends on {dep!r}, which only runs under a profile"
                )

        for vol in svc.get("volumes") or []:
            source = compose_default(vol.get("source") if isinstance(vol, dict)
                                     else str(vol).split(":")[0], stack.env)
            if source and not source.startswith((".", "/", "~")) and source not in declared_volumes:
                problems.append(f"compose: service {name!r} mounts undeclared volume {source!r}")

        for host, _container in published_ports(svc).items():
            if host in host_ports:
                problems.append(
                    f"compose: host port {host} is published by both {host_ports[host]!r} and {name!r}"
                )
            host_ports[host] = name
    return problems


def lint_wiring(stack: Stack) -> list[str]:
    """Cross-file checks: the collector's exporters, mounts and env against compose."""
    problems: list[str] = []
    services = (stack.compose or {}).get("services") or {}
    collector_svc = services.get("collector") or {}
    cfg = collector_config(stack)
    if not isinstance(cfg, dict):
        return problems

    # Every exporter endpoint must name a compose service and a port that service listens on.
    for cid, dests in _exporter_targets(cfg).items():
        for host, port in dests:
            if host is None:
                problems.append(f"collector: exporter {cid!r} has no endpoint")
                continue
            if host not in services:
                problems.append(f"collector: exporter {cid!r} sends to {host!r}, which is not a compose service")
                continue
            if port is None:
                problems.append(f"collector: exporter {cid!r} endpoint names no explicit port")
            elif port not in service_ports(services[host] or {}):
                problems.append(
                    f"collector: exporter {cid!r} sends to {host}:{port}, but {host!r} exposes "
                    f"{sorted(service_ports(services[host] or {}))}"
                )

    # Fan-out: traces to MLflow (receiver) and Jaeger, logs to MLflow, metrics to Prometheus.
    targets = _exporter_targets(cfg)
    pipelines = ((cfg.get("service") or {}).get("pipelines") or {})

    def pipeline_hosts(signal: str) -> set[str]:
        hosts = set()
        for pname, pipe in pipelines.items():
            if pname.split("/")[0] == signal:
                hosts |= {h for e in pipe.get("exporters") or [] if e in targets for h, _ in targets[e]}
        return hosts

    for signal, needed in (("traces", {"receiver", "jaeger"}), ("logs", {"receiver"})):
        missing = needed - pipeline_hosts(signal)
        if missing:
            problems.append(f"collector: {signal} are not sent to {sorted(missing)}")
    metric_exporters = {
        component_type(e)
        for pname, pipe in pipelines.items() if pname.split("/")[0] == "metrics"
        for e in pipe.get("exporters") or []
    }
    if "prometheus" not in metric_exporters:
        problems.append("collector: metrics are not exported to Prometheus")

    # Ports the collector listens on must be published, or nothing outside reaches them.
    published = set(published_ports(collector_svc).values())
    listen = [("otlp receiver", p) for p in (4317, 4318)]
    for section in ("exporters", "extensions"):
        for cid, conf in (cfg.get(section) or {}).items():
            ep = (conf or {}).get("endpoint") if isinstance(conf, dict) else None
            if isinstance(ep, str) and ep.startswith("0.0.0.0:"):
                listen.append((cid, int(ep.rsplit(":", 1)[1])))
    for what, port in listen:
        if port not in published:
            problems.append(f"compose: collector port {port} ({what}) is not published")

    # The config file must be mounted where the contrib image reads it.
    mounted = False
    for vol in collector_svc.get("volumes") or []:
        parts = str(vol).split(":")
        if len(parts) >= 2 and parts[1] == COLLECTOR_CONFIG_IN_CONTAINER:
            mounted = True
            src = (stack.compose_dir / parts[0]).resolve()
            if not src.is_file():
                problems.append(f"compose: collector config source {parts[0]!r} does not exist")
    if not mounted:
        problems.append(f"compose: collector config is not mounted at {COLLECTOR_CONFIG_IN_CONTAINER}")
    cfg_flag = flag_value(command_args(collector_svc), "--config")
    if cfg_flag is not None and cfg_flag != COLLECTOR_CONFIG_IN_CONTAINER:
        problems.append(f"compose: collector --config points at {cfg_flag!r}, not the mounted file")

    # Every variable the config reads must reach the container, or users cannot set it.
    env = collector_svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    for var in sorted(env_refs(stack.collector)):
        if var not in env:
            problems.append(f"compose: collector config reads ${{env:{var}}}, which compose does not pass")
    # A variable compose passes through (`${VAR:-default}`) must default to what the config's
    # own `${env:VAR:-default}` says, or the config read alone misleads about the stack.
    config_defaults = {m.group(1): m.group(2) or "" for m in _ENV_REF.finditer(yaml.safe_dump(stack.collector))}
    for var, value in env.items():
        m = _COMPOSE_REF.fullmatch(str(value or ""))
        if m and m.group(1) == var and var in config_defaults and (m.group(2) or "") != config_defaults[var]:
            problems.append(f"collector: config default for {var} ({config_defaults[var]!r}) differs "
                            f"from the compose default ({m.group(2) or ''!r})")
    return problems


def lint_receiver(stack: Stack) -> list[str]:
    problems: list[str] = []
    services = (stack.compose or {}).get("services") or {}
    svc = services.get("receiver")
    if not svc:
        return problems
    args = command_args(svc)
    if not args or args[0] != "receiver":
        problems.append("compose: receiver command must start with `receiver`")
    ports = service_ports(svc)
    for flag, key in (("--port", "port"), ("--grpc-port", "grpc_port")):
        value = flag_value(args, flag)
        default = int(stack.receiver_defaults[key])
        effective = int(value) if value is not None else default
        if effective != default:
            problems.append(
                f"compose: receiver {flag} {effective} differs from the CLI default {default}"
            )
        if effective not in ports:
            problems.append(f"compose: receiver listens on {effective} ({flag}) but does not expose it")
    host = flag_value(args, "--host")
    if host != "0.0.0.0":
        problems.append(f"compose: receiver must listen on 0.0.0.0 (got --host {host!r})")
    uri = flag_value(args, "--mlflow-uri")
    if not uri:
        problems.append("compose: receiver has no --mlflow-uri")
    else:
        h, p = parse_endpoint(uri, "otlp_http")
        if h not in services:
            problems.append(f"compose: receiver --mlflow-uri names {h!r}, which is not a compose service")
        elif p not in service_ports(services[h] or {}):
            problems.append(f"compose: receiver --mlflow-uri port {p} is not exposed by {h!r}")
        else:
            allowed = flag_value(command_args(services[h]), "--allowed-hosts") or ""
            allowed_set = {a.strip() for a in allowed.split(",")}
            if h not in allowed_set and f"{h}:{p}" not in allowed_set and "*" not in allowed_set:
                problems.append(
                    f"compose: {h!r} does not allow the Host header {h!r} (--allowed-hosts); "
                    "the receiver's requests would be rejected"
                )
    deps = svc.get("depends_on") or {}
    if "mlflow" not in deps:
        problems.append("compose: receiver does not wait for mlflow")
    if "build" not in svc:
        problems.append("compose: receiver is not built from the repository's Dockerfile")
    return problems


def mlflow_store(service: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """The backend store `mlflow server` gets: its flag, else MLFLOW_BACKEND_STORE_URI."""
    flag = flag_value(command_args(service), "--backend-store-uri")
    return flag if flag is not None else service_env(service, env).get("MLFLOW_BACKEND_STORE_URI", "")


def mlflow_workers(service: dict[str, Any], env: dict[str, str] | None = None) -> int:
    """`--workers`, else MLFLOW_WORKERS, else mlflow server's default of 4."""
    value = flag_value(command_args(service), "--workers")
    if value is None:
        value = service_env(service, env).get("MLFLOW_WORKERS") or "4"
    try:
        return int(value)
    except ValueError:
        return 0


def _pg_major(image: str) -> int | None:
    m = re.match(r"(?:.*/)?postgres:(\d+)", image)
    return int(m.group(1)) if m else None


def lint_mlflow(stack: Stack) -> list[str]:
    problems: list[str] = []
    compose = stack.compose or {}
    services = compose.get("services") or {}
    svc = services.get("mlflow")
    if not svc:
        return problems
    args = command_args(svc)
    workers = mlflow_workers(svc, stack.env)
    if flag_value(args, "--host") != "0.0.0.0":
        problems.append("compose: mlflow must listen on 0.0.0.0")
    store = str(compose_default(mlflow_store(svc, stack.env), stack.env))
    scheme = store.split("://", 1)[0].lower() if "://" in store else ""
    if store.startswith("sqlite:"):
        if workers != 1:
            problems.append("compose: mlflow on sqlite should run with --workers 1 "
                            "(one writer at a time; several take minutes to boot)")
        db_path = store.split("sqlite:///", 1)[-1]
        mounts = [str(v).split(":") for v in svc.get("volumes") or []]
        if not any(len(m) >= 2 and db_path.startswith(m[1].rstrip("/") + "/") for m in mounts):
            problems.append(f"compose: mlflow database {db_path!r} is not on a volume (data lost on restart)")
    elif scheme in ("postgresql", "postgresql+psycopg"):
        problems += _lint_mlflow_postgres(stack, svc, store, workers)
    elif scheme == "postgres":
        problems.append("compose: mlflow store must be postgresql:// (SQLAlchemy rejects postgres://)")
    else:
        problems.append("compose: mlflow needs a SQL backend store (OTLP ingest answers 501 on files)")
    if not flag_value(args, "--allowed-hosts"):
        problems.append("compose: mlflow has no --allowed-hosts for its in-network name")
    return problems


def _lint_mlflow_postgres(stack: Stack, svc: dict[str, Any], store: str, workers: int) -> list[str]:
    problems: list[str] = []
    services = (stack.compose or {}).get("services") or {}
    if workers < 2:
        problems.append(f"compose: mlflow on PostgreSQL runs {workers} worker(s); run several "
                        "(MLFLOW_WORKERS), the database takes concurrent writers")
    # The image must bring the driver: the official one has none (docker/mlflow.Dockerfile).
    build = svc.get("build")
    dockerfile = stack.dockerfiles.get(build.get("dockerfile", "")) if isinstance(build, dict) else None
    if dockerfile is None:
        if not str(svc.get("image", "")).endswith("-full"):
            problems.append("compose: mlflow image has no PostgreSQL driver (build "
                            "docker/mlflow.Dockerfile, or use the -full image)")
    else:
        lines = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        for base in (ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")):
            p = image_pin_problem(base)
            if p:
                problems.append(f"mlflow Dockerfile: base {p}")
        if not any(re.search(r"psycopg(\[binary\])?==\d", ln) for ln in lines if ln.upper().startswith("RUN ")):
            problems.append("mlflow Dockerfile: does not install a pinned psycopg (psycopg[binary]==X), "
                            "which MLflow needs for postgresql://")
    parts = urlsplit(store.replace("postgresql+psycopg://", "postgresql://"))
    host, port = parts.hostname, parts.port or 5432
    if host not in services:
        problems.append(f"compose: mlflow store names host {host!r}, which is not a compose service")
        return problems
    pg = services[host] or {}
    if port not in service_ports(pg):
        problems.append(f"compose: mlflow store port {port} is not exposed by {host!r}")
    pg_env = service_env(pg, stack.env)
    for what, want, got in (("user", pg_env.get("POSTGRES_USER", "postgres"), parts.username),
                            ("password", pg_env.get("POSTGRES_PASSWORD"), parts.password),
                            ("database", pg_env.get("POSTGRES_DB") or pg_env.get("POSTGRES_USER", "postgres"),
                             parts.path.lstrip("/"))):
        if want != got:
            problems.append(f"compose: mlflow store {what} does not match the {host!r} service's "
                            "POSTGRES_* settings")
    if ((svc.get("depends_on") or {}).get(host) or {}).get("condition") != "service_healthy":
        problems.append(f"compose: mlflow does not wait for {host!r} to be healthy")
    return problems


def lint_postgres(stack: Stack) -> list[str]:
    problems: list[str] = []
    compose = stack.compose or {}
    svc = (compose.get("services") or {}).get("postgres")
    if not svc:
        return problems
    image = str(svc.get("image", ""))
    major = _pg_major(image)
    if major is None:
        problems.append(f"compose: postgres image {image!r} is not the official postgres image")
    if not service_env(svc, stack.env).get("POSTGRES_PASSWORD"):
        problems.append("compose: postgres has no POSTGRES_PASSWORD (the image refuses to start)")
    # 18+ keeps data in /var/lib/postgresql/<major>/docker and refuses a volume at .../data.
    data_target = "/var/lib/postgresql" if (major or 0) >= 18 else "/var/lib/postgresql/data"
    named = set((compose.get("volumes") or {}).keys())
    if not any(_volume_target(v) == data_target and str(v).split(":")[0] in named
               for v in svc.get("volumes") or []):
        problems.append(f"compose: postgres data is not on a named volume at {data_target} "
                        f"(the path postgres:{major} keeps its cluster under)")
    test = " ".join(str(t) for t in (svc.get("healthcheck") or {}).get("test") or [])
    if "pg_isready" not in test:
        problems.append("compose: postgres healthcheck does not use pg_isready")
    elif not re.search(r"(?:-h|--host)[ =](127\.0\.0\.1|localhost)", test):
        problems.append("compose: postgres healthcheck probes the unix socket; during first-start "
                        "initialisation that server is not the real one: probe TCP (-h 127.0.0.1)")
    if published_ports(svc):
        problems.append("compose: postgres is published on the host; only MLflow needs it")
    return problems


def lint_scale(stack: Stack) -> list[str]:
    """Several receivers: the collector must route by trace id, each replica keep its own spool,
    and MLflow take concurrent writers. Applies when the receiver runs as several replicas or
    the collector load-balances."""
    problems: list[str] = []
    services = (stack.compose or {}).get("services") or {}
    receiver = services.get("receiver") or {}
    cfg = collector_config(stack)
    pipelines = ((cfg.get("service") or {}).get("pipelines") or {}) if isinstance(cfg, dict) else {}
    exporters = (cfg.get("exporters") or {}) if isinstance(cfg, dict) else {}
    used = {e for pipe in pipelines.values() for e in pipe.get("exporters") or []}
    balancers = sorted(e for e in used if component_type(e) == "loadbalancing")
    n = replicas(receiver)
    if n <= 1 and not balancers:
        return problems
    if n > 1 and not balancers:
        problems.append(f"compose: {n} receiver replicas but the collector does not load-balance "
                        "them by trace id (RECEIVER_EXPORTER=loadbalancing/receiver)")
    args = command_args(receiver)
    grpc_port = int(flag_value(args, "--grpc-port") or stack.receiver_defaults["grpc_port"])
    for cid in balancers:
        conf = exporters.get(cid) or {}
        if conf.get("routing_key") != "traceID":
            problems.append(f"collector: {cid!r} must set routing_key: traceID (logs default to "
                            "`service`, which sends every eval result to one receiver)")
        for signal in ("traces", "logs"):
            if not any(cid in (p.get("exporters") or []) for name, p in pipelines.items()
                       if name.split("/")[0] == signal):
                problems.append(f"collector: {signal} do not go through {cid!r}: one sample's "
                                "spans and scores could land on different receivers")
        otlp = (conf.get("protocol") or {}).get("otlp")
        if not isinstance(otlp, dict):
            problems.append(f"collector: {cid!r} has no protocol.otlp settings")
            otlp = {}
        if "endpoint" in otlp:
            problems.append(f"collector: {cid!r} protocol.otlp.endpoint is ignored (the resolver "
                            "sets it); remove it")
        if not (otlp.get("tls") or {}).get("insecure"):
            problems.append(f"collector: {cid!r} must use plain gRPC (tls.insecure): the receiver "
                            "serves no TLS inside the compose network")
        raw = ((stack.collector.get("exporters") or {}).get(cid) or {})
        auth = str((((raw.get("protocol") or {}).get("otlp") or {}).get("headers") or {})
                   .get("authorization", ""))
        if not auth.startswith("Bearer ${env:INSPECT_OTEL_RECEIVER_TOKEN"):
            problems.append(f"collector: {cid!r} does not send the receiver token "
                            "(authorization: Bearer ${env:INSPECT_OTEL_RECEIVER_TOKEN})")
        dns = (conf.get("resolver") or {}).get("dns") or {}
        if dns.get("hostname") != "receiver":
            problems.append(f"collector: {cid!r} must resolve the receiver replicas by DNS "
                            "(resolver.dns.hostname: receiver)")
        elif str(dns.get("port", 4317)) != str(grpc_port):
            problems.append(f"collector: {cid!r} sends to port {dns.get('port', 4317)}, the "
                            f"receivers serve OTLP/gRPC on {grpc_port}")
    if n > 1:
        if "container_name" in receiver:
            problems.append("compose: receiver has a container_name, so it cannot run as replicas")
        if published_ports(receiver):
            problems.append("compose: receiver replicas publish host ports (they would clash)")
        data_dir = flag_value(args, "--data-dir") or "/data"
        named = set(((stack.compose or {}).get("volumes") or {}).keys())
        for vol in receiver.get("volumes") or []:
            source = vol.get("source") if isinstance(vol, dict) else str(vol).split(":")[0]
            if _volume_target(vol) == data_dir and source in named:
                problems.append(f"compose: {n} receiver replicas share the named volume "
                                f"{source!r} at {data_dir}: each needs its own spool")
        mlflow = services.get("mlflow") or {}
        if mlflow_store(mlflow, stack.env).startswith("sqlite:"):
            problems.append("compose: several receivers write through MLflow on sqlite; use PostgreSQL")
    return problems


def lint_dockerfile(stack: Stack) -> list[str]:
    problems: list[str] = []
    lines = [ln.strip() for ln in stack.dockerfile.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    if not froms:
        problems.append("Dockerfile: no FROM")
    for image in froms:
        p = image_pin_problem(image)
        if p:
            problems.append(f"Dockerfile: base {p}")
    installs = [ln for ln in lines if ln.upper().startswith("RUN ") and "install" in ln]
    if not any(re.search(r"\.\[[^\]]*\bmlflow\b", ln) for ln in installs):
        problems.append("Dockerfile: does not install the package with its [mlflow] extra")
    for ln in lines:
        if ln.upper().startswith("COPY ") and "--from" not in ln:
            for src in ln.split()[1:-1]:
                if not (stack.compose_dir / src).exists():
                    problems.append(f"Dockerfile: COPY source {src!r} does not exist in the repository")
    exposed = {int(p) for ln in lines if ln.upper().startswith("EXPOSE ") for p in ln.split()[1:]}
    for key in ("port", "grpc_port"):
        if int(stack.receiver_defaults[key]) not in exposed:
            problems.append(f"Dockerfile: does not EXPOSE the receiver's {key} {stack.receiver_defaults[key]}")
    if not any("inspect-otel" in ln for ln in lines if ln.upper().startswith(("ENTRYPOINT", "CMD"))):
        problems.append("Dockerfile: does not run `inspect-otel`")
    return problems


def _bind_mount(vol: Any, env: dict[str, str]) -> tuple[str, str, bool, bool]:
    """(source, target, read-only, creates a missing source) of a volume entry."""
    if isinstance(vol, dict):
        return (str(compose_default(vol.get("source", ""), env)),
                str(compose_default(vol.get("target", ""), env)), bool(vol.get("read_only")),
                bool((vol.get("bind") or {}).get("create_host_path", False)))
    parts = str(compose_default(vol, env)).split(":")
    # The short syntax always creates a missing source (as root, on Linux).
    return (parts[0], parts[1] if len(parts) > 1 else "", len(parts) > 2 and "ro" in parts[2].split(","),
            True)


def _token_receivers(cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Per OTLP receiver a pipeline uses: the protocols it serves without an authenticator that
    is defined and enabled."""
    service = cfg.get("service") or {}
    enabled = set(service.get("extensions") or [])
    defined = cfg.get("extensions") or {}
    used = {r for pipe in (service.get("pipelines") or {}).values() for r in pipe.get("receivers") or []}
    open_protocols: dict[str, list[str]] = {}
    for rid in sorted(used):
        protocols = (((cfg.get("receivers") or {}).get(rid) or {}).get("protocols") or {})
        for proto, conf in protocols.items():
            auth = ((conf or {}).get("auth") or {}).get("authenticator")
            if not (auth in defined and auth in enabled and component_type(auth) == "bearertokenauth"):
                open_protocols.setdefault(rid, []).append(proto)
    return open_protocols


def lint_exposure(stack: Stack) -> list[str]:
    """Published ports on the loopback unless the operator names an interface; beyond it only
    with a token, which every OTLP receiver the collector runs then requires."""
    problems: list[str] = []
    services = (stack.compose or {}).get("services") or {}
    for name, svc in services.items():
        ports = (svc or {}).get("ports") or []
        for p in ports:
            m = _PUBLISHED.fullmatch(str(p)) if not isinstance(p, dict) else None
            if m is None or m.group(1) != m.group(2):
                problems.append(f"compose: service {name!r} publishes {p!r}: write "
                                f"\"${{{BIND_VAR}:-127.0.0.1}}:PORT:PORT\" (loopback unless the "
                                "operator names an interface)")
        if ports and name != GUARD_SERVICE:
            dep = (((svc or {}).get("depends_on") or {}) if isinstance((svc or {}).get("depends_on"), dict)
                   else {d: {} for d in (svc or {}).get("depends_on") or []}).get(GUARD_SERVICE)
            if (dep or {}).get("condition") != "service_completed_successfully":
                problems.append(f"compose: service {name!r} publishes ports but does not wait for "
                                f"{GUARD_SERVICE!r} to complete successfully")
    if any((svc or {}).get("ports") for svc in services.values()) and GUARD_SERVICE not in services:
        problems.append(f"compose: service {GUARD_SERVICE!r} is missing: nothing refuses to publish "
                        "the stack beyond the loopback without a token")
    cfg = collector_config(stack)
    if isinstance(cfg, dict) and stack.env.get(TOKEN_VAR):
        for rid, protocols in _token_receivers(cfg).items():
            problems.append(f"collector: with {TOKEN_VAR} set, receiver {rid!r} still accepts "
                            f"{'/'.join(protocols)} without the token")
        for ext, conf in (cfg.get("extensions") or {}).items():
            if component_type(ext) == "bearertokenauth" and (conf or {}).get("token") != stack.env[TOKEN_VAR]:
                problems.append(f"collector: {ext!r} does not require {TOKEN_VAR} "
                                f"(token resolves to {(conf or {}).get('token')!r})")
    if isinstance(cfg, dict):
        for ext, conf in (cfg.get("extensions") or {}).items():
            if component_type(ext) == "bearertokenauth" and not (conf or {}).get("token"):
                problems.append(f"collector: {ext!r} has an empty token: the collector refuses to "
                                "start (an empty bearer token fails validation even when unused)")
    receiver = services.get("receiver") or {}
    roots = service_env(receiver, stack.env).get("INSPECT_OTEL_LOG_ARTIFACT_ROOTS")
    if receiver and not roots:
        problems.append("compose: the receiver gets no INSPECT_OTEL_LOG_ARTIFACT_ROOTS: eval logs "
                        "never reach MLflow")
    elif receiver:
        mounts = [_bind_mount(v, stack.env) for v in receiver.get("volumes") or []]
        for root in roots.split(","):
            if (root, root, True, False) not in mounts:
                problems.append(f"compose: log-artifact root {root!r} is not bind-mounted read-only "
                                "at the same path in the receiver (the spans name host paths), "
                                "without create_host_path")
    return problems


def lint_stack(stack: Stack) -> list[str]:
    return (
        lint_exposure(stack)
        + lint_collector(stack)
        + lint_compose(stack)
        + lint_wiring(stack)
        + lint_receiver(stack)
        + lint_mlflow(stack)
        + lint_postgres(stack)
        + lint_scale(stack)
        + lint_dockerfile(stack)
    )
