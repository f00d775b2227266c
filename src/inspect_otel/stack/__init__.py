"""The embedded stack: MLflow and the receiver as local child processes, no Docker.

``inspect-otel up`` (``cli``) starts it and supervises it; ``inspect-otel demo`` uses it too.

MLflow runs with a sqlite store under the data directory (``--data-dir``, env
``INSPECT_OTEL_DATA_DIR``, default ``~/.inspect-otel``), or on a database server given by
``--backend-store-uri`` (env ``MLFLOW_BACKEND_STORE_URI``, as for ``mlflow server``), e.g.
PostgreSQL with several ``--workers``; the receiver listens on the standard OTLP ports so an eval
only needs ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the token header. The receiver is the same either
way: it talks to MLflow's REST API, never to the database. Each child gets its own process group
(MLflow spawns workers), and the whole group is stopped on Ctrl-C or SIGTERM.

Modules, along the stack's life:

- ``_embedded``: ``EmbeddedStack``: preflight checks, the data directory (0700), starting the
  children, what ``up`` prints; ``_process``: one child process and the port probes;
  ``_backend``: MLflow's store URI (redacted for display, checked before the start).
- ``_token``: one receiver token per stack, kept 0600 in the data directory across restarts
  (the operator's ``INSPECT_OTEL_RECEIVER_TOKEN`` wins); what a hostile token file meets.
- ``_supervise``: the receiver restarted with backoff when it dies; MLflow's death ends the stack.
- ``_signals``: SIGTERM handled as Ctrl-C; ``cli``: the ``up`` command.
"""

from ._backend import check_backend_store, redact_uri
from ._embedded import CAPTURE_ENV, EmbeddedStack, otlp_headers
from ._errors import StackError
from ._process import http_ok, mlflow_command, port_in_use
from ._token import TOKEN_ENV, TOKEN_FILE, kept_token

__all__ = [
    "CAPTURE_ENV",
    "EmbeddedStack",
    "StackError",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "check_backend_store",
    "http_ok",
    "kept_token",
    "mlflow_command",
    "otlp_headers",
    "port_in_use",
    "redact_uri",
]
