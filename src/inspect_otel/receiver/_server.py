"""OTLP/HTTP (starlette + uvicorn) and OTLP/gRPC (grpcio) front ends over one spool + writer.

One receiver per spool: the receiver holds an exclusive lock on ``<data-dir>/receiver/spool.lock``
while it runs (a second one on the same data directory, e.g. a ``--retry-dead-letters`` run
beside a running receiver, refuses to start).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from .. import __version__
from ..config import data_dir
from ..stack import redact_uri
from . import _decode as dec
from ._dead_letters import RetryPolicy
from ._eval_logs import DEFAULT_MAX_LOG_BYTES, Root
from ._mlflow_io import scrub_text
from ._ownership import FOREIGN_MESSAGE
from ._spool import ORPHAN_TTL_S, IngestResult, Spool, SpoolFull
from ._writer import Writer

log = logging.getLogger("inspect_otel.receiver")

RETRY_AFTER_S = 5
BUSY_RETRY_AFTER_S = 1  # too many requests in flight: they finish within milliseconds
STORE_FAILED = "receiver could not store the data (details in its log); retry later"

# OTLP/gRPC service (full name) by signal; each has one method, Export.
GRPC_SERVICES = {
    "traces": trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    "logs": logs_service_pb2.DESCRIPTOR.services_by_name["LogsService"].full_name,
    "metrics": metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
}


VERSION_META = "receiver_version"  # spool meta: the receiver version that last started on it
LOCK_FILE = "spool.lock"

# On stop: how long the writer may go on applying accepted data (the stack gives the receiver 15 s
# between SIGTERM and SIGKILL; the spool keeps the rest for the next start anyway).
DRAIN_S = 10.0


@dataclass
class ReceiverConfig:
    mlflow_uri: str
    experiment_name: str = "inspect_ai"
    host: str = "127.0.0.1"
    port: int = 4318
    grpc_port: int | None = 4317  # None: no gRPC
    data_dir: str | Path = field(default_factory=data_dir)
    token: str | None = None
    max_body_bytes: int = 32 << 20  # per request, compressed and decompressed
    max_spool_bytes: int = 1 << 30  # pending (not yet in MLflow) data before backpressure
    settle_s: float = 10.0  # quiet time after which an incomplete task is finalized anyway
    # eval logs are stored only from under these (see _eval_logs.py); none: off
    log_artifact_roots: tuple[Root, ...] = ()
    max_log_artifact_bytes: int = DEFAULT_MAX_LOG_BYTES
    max_concurrent_requests: int = 64  # OTLP requests in flight, per front end; more: 503
    orphan_ttl_s: float = ORPHAN_TTL_S  # evaluation results whose trace never arrives expire
    # items failing unexpectedly: retried so, then dead letters (see _dead_letters.py)
    retry_policy: RetryPolicy = RetryPolicy()
    retry_dead_letters: bool = False  # on start, every dead letter is tried again

    @property
    def spool_path(self) -> Path:
        return Path(self.data_dir) / "receiver" / "spool.db"


class SpoolInUse(RuntimeError):
    """Another receiver runs on this data directory."""


class _SpoolLock:
    """An exclusive lock on a file beside the spool, held while a receiver runs (released by
    the kernel if the process dies)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: Any = open(path, "a+")  # noqa: SIM115 - held until release()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock (Windows): unguarded, as before
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            raise SpoolInUse("another receiver is running on this --data-dir (its spool is "
                             "locked): stop it first") from None

    def release(self) -> None:
        if not self._file.closed:
            self._file.close()


class InFlight:
    """OTLP requests between arrival and answer, per front end (``/health`` shows them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = {"http": 0, "grpc": 0}

    def enter(self, front: str, cap: int | None = None) -> bool:
        """Count one more request, unless ``cap`` are in flight already (then False)."""
        with self._lock:
            if cap is not None and self._n[front] >= cap:
                return False
            self._n[front] += 1
            return True

    def leave(self, front: str) -> None:
        with self._lock:
            self._n[front] -= 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._n)


def _response(signal: str, res: IngestResult) -> Any:
    if signal == "traces":
        msg = trace_service_pb2.ExportTraceServiceResponse()
        if res.rejected:
            msg.partial_success.rejected_spans = res.rejected
            msg.partial_success.error_message = res.message
    elif signal == "logs":
        msg = logs_service_pb2.ExportLogsServiceResponse()
        if res.rejected:
            msg.partial_success.rejected_log_records = res.rejected
            msg.partial_success.error_message = res.message
    else:
        msg = metrics_service_pb2.ExportMetricsServiceResponse()
    return msg


class Receiver:
    """The running receiver: spool, writer, HTTP server and (optionally) gRPC server."""

    def __init__(self, config: ReceiverConfig):
        self.config = config
        self._lock = _SpoolLock(config.spool_path.with_name(LOCK_FILE))
        try:
            self.spool = Spool(config.spool_path, max_bytes=config.max_spool_bytes,
                               orphan_ttl_s=config.orphan_ttl_s)
        except BaseException:
            self._lock.release()
            raise
        self.writer = Writer(self.spool, config.mlflow_uri, config.experiment_name,
                             settle_s=config.settle_s, log_roots=config.log_artifact_roots,
                             max_log_bytes=config.max_log_artifact_bytes,
                             retry_policy=config.retry_policy)
        self.in_flight = InFlight()
        self._uvicorn: Any = None
        self._http_thread: threading.Thread | None = None
        self._grpc: Any = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._probe_cache: tuple[float, bool, str | None] = (0.0, False, None)
        self._ingest_lock = threading.Lock()

    # --- shared ingest path ---------------------------------------------------------------------
    def ingest(self, signal: str, msg: Any) -> IngestResult:
        if signal == "metrics":
            return IngestResult()  # accepted, not mapped (the writer derives its own)
        refused = self._drop_foreign(signal, msg)
        res = (self.spool.ingest_traces if signal == "traces" else self.spool.ingest_logs)(msg)
        if refused:
            res.reject(refused, FOREIGN_MESSAGE)
        return res

    def _drop_foreign(self, signal: str, msg: Any) -> int:
        """Remove the spans or log records of traces the writer found in another MLflow
        experiment from ``msg``; returns how many. From the cache only: the acknowledgement
        never waits on MLflow (a trace seen for the first time is checked by the writer, before
        anything of it is written)."""
        groups = ([ss.spans for rs in msg.resource_spans for ss in rs.scope_spans]
                  if signal == "traces" else
                  [sl.log_records for rl in msg.resource_logs for sl in rl.scope_logs])
        ids = {item.trace_id.hex() for items in groups for item in items
               if len(item.trace_id) == 16}
        foreign = self.writer.ownership.known_foreign(ids) if ids else set()
        refused = 0
        for items in groups if foreign else ():
            kept = [item for item in items if item.trace_id.hex() not in foreign]
            if len(kept) < len(items):
                refused += len(items) - len(kept)
                del items[:]
                items.extend(kept)
        if refused:
            self.writer.ownership.rejected += refused
        return refused

    def authorized(self, header: str | None) -> bool:
        token = self.config.token
        if not token:
            return True
        if not header or not header.lower().startswith("bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), token.encode())

    def probe_mlflow(self) -> tuple[bool, str | None]:
        at, ok, err = self._probe_cache
        if time.monotonic() - at < 3.0:
            return ok, err
        try:
            r = requests.get(self.config.mlflow_uri.rstrip("/") + "/health", timeout=2)
            ok, err = r.status_code == 200, None if r.status_code == 200 else f"HTTP {r.status_code}"
        except requests.RequestException as e:
            ok, err = False, f"{type(e).__name__}"
        self._probe_cache = (time.monotonic(), ok, err)
        return ok, err

    def _nothing_pending(self, stats: dict[str, Any]) -> bool:
        """Nothing in the spool the writer can still apply (orphaned results wait for a trace,
        dead letters for a re-drive, see health()), no item waiting for its next try, and no
        eval log still to store."""
        return all(v == 0 for k, v in stats.items()
                   if k.startswith("pending_") and k != "pending_bytes") \
            and stats["retrying"] == 0 and not self.writer.logs_pending()

    def health(self, detailed: bool = True) -> dict[str, Any]:
        """The receiver's state. Not ``detailed`` (a caller without the token, when one is
        set): only ``status``. Never the spool's path or the tracking URI's credentials.
        ``degraded``: MLflow does not answer, or items failed (dead letters, items retried)."""
        reachable, probe_error = self.probe_mlflow()
        dead_letters, retrying = self.spool.dead_letters.counts()
        status = "ok" if reachable and not dead_letters and not retrying else "degraded"
        if not detailed:
            return {"status": status}
        stats = self.spool.stats()
        st = self.writer.status
        return {
            "status": status,
            # busy: tasks still polled until complete (finalization from MLflow's state)
            "idle": self._nothing_pending(stats) and not self.writer.busy(),
            "spool": {**stats, "full": self.spool.is_full()},
            "orphaned": {"waiting": stats["orphaned_results"], "expired": stats["expired_results"],
                         "ttl_seconds": self.spool.orphan_ttl_s},
            # identities whose MLflow run MLflow refused for good (their data goes on without it)
            "failed_runs": [{**f, "error": self._scrub(f["error"])}
                            for f in self.spool.drain.failed_identities()],
            # what the writer could not apply, kept in the spool (see _dead_letters.py)
            "dead_letters": {
                "count": dead_letters, "retrying": retrying,
                "causes": [{**c, "cause": self._scrub(c["cause"])}
                           for c in self.spool.dead_letters.causes()],
                "retry_command": "inspect-otel receiver --retry-dead-letters",
            },
            "mlflow": {
                "tracking_uri": redact_uri(self.config.mlflow_uri),
                "experiment_name": self.config.experiment_name,
                "reachable": reachable,
                "probe_error": probe_error,
                "writer_ok": st.mlflow_ok,
                "last_error": self._scrub(st.last_error),
                "last_error_at": st.last_error_at,
                "last_success_at": st.last_success_at,
            },
            "writer": {"passes": st.passes, "applied": dict(st.applied),
                       # spans and results of traces in another experiment, never written
                       "foreign_rejected": self.writer.ownership.rejected},
            "ports": {"http": self.http_port, "grpc": self.grpc_port},
            "requests_in_flight": self.in_flight.counts(),
        }

    def _scrub(self, text: str | None) -> str | None:
        """``text`` without the tracking URI's password (an error may quote the URI), URLs,
        host names or paths (``scrub_text``; errors are stored so, this is for spools written
        before)."""
        if text is None:
            return None
        parts = urlsplit(self.config.mlflow_uri)
        text = text.replace(self.config.mlflow_uri, redact_uri(self.config.mlflow_uri))
        if parts.password:
            text = text.replace(parts.password, "***")
        return scrub_text(text, (parts.hostname or "",))

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> "Receiver":
        self._redrive_dead_letters()
        self.writer.start()
        # gRPC first: once /health answers, every port is bound (callers wait on /health)
        if self.config.grpc_port is not None:
            self._start_grpc()
        self._start_http()
        log.info("inspect-otel receiver: OTLP/HTTP on %s:%s, OTLP/gRPC on %s, MLflow %s "
                 "(experiment %r), spool %s, eval logs %s", self.config.host, self.http_port,
                 self.grpc_port if self.grpc_port else "off",
                 redact_uri(self.config.mlflow_uri), self.config.experiment_name,
                 self.spool.path,
                 "from " + ", ".join(map(str, self.config.log_artifact_roots))
                 if self.config.log_artifact_roots else "off (no --log-artifact-root)")
        return self

    def _redrive_dead_letters(self) -> None:
        """Dead letters are tried again when asked (``retry_dead_letters``) and on the first
        start of another receiver version (an upgrade may well have fixed their cause)."""
        previous = self.spool.get_meta(VERSION_META)
        reason = ("--retry-dead-letters" if self.config.retry_dead_letters else
                  f"the receiver version changed ({previous or 'unknown'} -> {__version__})"
                  if previous != __version__ else None)
        if reason is not None:
            n = self.spool.dead_letters.redrive()
            if n or self.config.retry_dead_letters:
                log.info("%d dead letter(s) tried again: %s", n, reason)
        if previous != __version__:
            self.spool.set_meta(VERSION_META, __version__)

    def stop(self, drain_s: float = DRAIN_S) -> None:
        """Stop accepting, then give the writer up to ``drain_s`` to apply what was accepted
        while MLflow answers (what is left stays in the spool for the next start)."""
        if self._grpc is not None:
            self._grpc.stop(grace=2).wait(5)
            self._grpc = None
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            if self._http_thread is not None:
                self._http_thread.join(10)
            self._uvicorn = None
        deadline = time.monotonic() + drain_s
        while self.writer.status.mlflow_ok is not False and time.monotonic() < deadline \
                and not self._nothing_pending(self.spool.stats()):
            self.writer.wake()
            time.sleep(0.1)
        self.writer.stop()
        self.spool.close()
        self._lock.release()

    def _start_http(self) -> None:
        import socket

        import uvicorn

        app = build_app(self)
        sock = socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        sock.listen(512)
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_keep_alive=30)
        server = uvicorn.Server(config)
        self._uvicorn = server
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)

            async def serve() -> None:
                task = asyncio.ensure_future(server.serve(sockets=[sock]))
                while not server.started and not task.done():
                    await asyncio.sleep(0.02)
                started.set()
                await task

            try:
                loop.run_until_complete(serve())
            finally:
                started.set()
                loop.close()

        self._http_thread = threading.Thread(target=run, name="inspect-otel-http", daemon=True)
        self._http_thread.start()
        started.wait(30)
        if not server.started:
            raise RuntimeError(f"HTTP server failed to start on {self.config.host}:{self.config.port}")

    def _start_grpc(self) -> None:
        import grpc

        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="inspect-otel-grpc"),
            options=[("grpc.max_receive_message_length", self.config.max_body_bytes)],
            # beyond it grpc answers RESOURCE_EXHAUSTED itself (retried by OTLP exporters)
            maximum_concurrent_rpcs=self.config.max_concurrent_requests,
        )
        # Requests arrive as raw bytes (no request_deserializer) and are parsed by the same decoder
        # as HTTP: a malformed message is then INVALID_ARGUMENT, not grpc's INTERNAL.
        server.add_generic_rpc_handlers(tuple(
            grpc.method_handlers_generic_handler(service, {
                "Export": grpc.unary_unary_rpc_method_handler(_GrpcExport(self, signal),
                                                              response_serializer=_serialize)})
            for signal, service in GRPC_SERVICES.items()))
        host = self.config.host
        addr = f"[{host}]" if ":" in host else host
        port = server.add_insecure_port(f"{addr}:{self.config.grpc_port}")
        if port == 0:
            raise RuntimeError(f"cannot bind OTLP/gRPC to {host}:{self.config.grpc_port}")
        server.start()
        self.grpc_port = port
        self._grpc = server


# --- HTTP -----------------------------------------------------------------------------------------
def build_app(receiver: Receiver) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    cfg = receiver.config

    def error(status: int, message: str, mt: str = dec.JSON,
              headers: dict[str, str] | None = None) -> Response:
        body, ctype = dec.error_body(status, message, mt)
        return Response(body, status_code=status, media_type=ctype, headers=headers)

    async def read_body(request: Request) -> bytes:
        from starlette.requests import ClientDisconnect

        try:
            return await read_limited(request)
        except ClientDisconnect:
            raise _ClientGone() from None

    async def read_limited(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > cfg.max_body_bytes:
                    raise dec.BadRequest(413, f"body of {length} bytes exceeds the limit of "
                                         f"{cfg.max_body_bytes} bytes")
            except ValueError:
                raise dec.BadRequest(400, "invalid Content-Length") from None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_body_bytes:
                raise dec.BadRequest(413, f"body exceeds the limit of {cfg.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def handle(signal: str, body: bytes, ctype: str | None, cenc: str | None) -> tuple[bytes, str]:
        msg, mt = dec.decode(signal, body, ctype, cenc, cfg.max_body_bytes)
        res = receiver.ingest(signal, msg)
        return dec.encode_response(_response(signal, res), mt), mt

    async def otlp(request: Request) -> Response:
        if not receiver.in_flight.enter("http", cfg.max_concurrent_requests):
            mt = dec.media_type(request.headers.get("content-type"))
            return error(503, f"more than {cfg.max_concurrent_requests} requests in flight, "
                         "retry later", mt if mt in dec.CONTENT_TYPES else dec.JSON,
                         {"Retry-After": str(BUSY_RETRY_AFTER_S)})
        try:
            return await handle_otlp(request)
        finally:
            receiver.in_flight.leave("http")

    async def handle_otlp(request: Request) -> Response:
        signal = dec.PATHS[request.url.path]
        mt = dec.media_type(request.headers.get("content-type"))
        mt = mt if mt in dec.CONTENT_TYPES else dec.JSON
        if not receiver.authorized(request.headers.get("authorization")):
            return error(401, "missing or invalid bearer token (INSPECT_OTEL_RECEIVER_TOKEN)", mt,
                         {"WWW-Authenticate": 'Bearer realm="inspect-otel"'})
        if receiver.spool.is_full():
            return error(503, "spool full: MLflow is behind, retry later", mt,
                         {"Retry-After": str(RETRY_AFTER_S)})
        try:
            dec.check_content_type(request.headers.get("content-type"))
            body = await read_body(request)
            out, rmt = await asyncio.get_running_loop().run_in_executor(
                None, handle, signal, body, request.headers.get("content-type"),
                request.headers.get("content-encoding"))
        except dec.BadRequest as e:
            return error(e.status, e.message, mt)
        except _ClientGone:
            # nothing to answer and nothing lost: the client resends what it did not get a 2xx for
            log.info("client %s disconnected before sending the whole %s body",
                     request.client.host if request.client else "?", request.url.path)
            return error(400, "client disconnected before the body was complete", mt)
        except SpoolFull:
            return error(503, "spool full: MLflow is behind, retry later", mt,
                         {"Retry-After": str(RETRY_AFTER_S)})
        except Exception:  # noqa: BLE001 - e.g. disk full: retryable for the client
            log.exception("ingest failed")
            return error(503, STORE_FAILED, mt, {"Retry-After": str(RETRY_AFTER_S)})
        return Response(out, status_code=200, media_type=rmt)

    async def health(request: Request) -> Response:
        detailed = receiver.authorized(request.headers.get("authorization"))
        data = await asyncio.get_running_loop().run_in_executor(None, receiver.health, detailed)
        return JSONResponse(data, status_code=200)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(404, f"unknown path {request.url.path}: OTLP paths are "
                     f"{', '.join(dec.PATHS)}; health is /health")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error(405, f"method {request.method} not allowed on {request.url.path}")

    routes = [Route(p, otlp, methods=["POST"]) for p in dec.PATHS]
    routes.append(Route("/health", health, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})


# --- gRPC -----------------------------------------------------------------------------------------
class _ClientGone(Exception):
    """The HTTP client went away mid-body."""


def _serialize(msg: Any) -> bytes:
    return msg.SerializeToString()


class _GrpcExport:
    """``Export`` of one OTLP/gRPC service, on the request's raw bytes."""

    def __init__(self, receiver: Receiver, signal: str):
        self.receiver = receiver
        self.signal = signal

    def __call__(self, body: bytes, context: Any) -> Any:
        # (grpc caps the calls in flight itself, maximum_concurrent_rpcs: this only counts)
        self.receiver.in_flight.enter("grpc")
        try:
            return self._export(body, context)
        finally:
            self.receiver.in_flight.leave("grpc")

    def _export(self, body: bytes, context: Any) -> Any:
        import grpc

        md = dict(context.invocation_metadata() or ())
        if not self.receiver.authorized(md.get("authorization")):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
        try:
            msg = dec.parse_protobuf(self.signal, body)
        except dec.BadRequest as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
        if self.receiver.spool.is_full():
            context.abort(grpc.StatusCode.UNAVAILABLE, "spool full: MLflow is behind, retry later")
        try:
            res = self.receiver.ingest(self.signal, msg)
        except SpoolFull:
            context.abort(grpc.StatusCode.UNAVAILABLE, "spool full: MLflow is behind, retry later")
        except Exception:  # noqa: BLE001 - e.g. disk full: retryable for the client
            log.exception("ingest failed")
            context.abort(grpc.StatusCode.UNAVAILABLE, STORE_FAILED)
        return _response(self.signal, res)


def dumps_health(receiver: Receiver) -> str:
    return json.dumps(receiver.health(), indent=2)
