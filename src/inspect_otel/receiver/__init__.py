"""The MLflow-side OTLP receiver (needs the ``mlflow`` extra).

``inspect-otel receiver`` runs it; ``Receiver(ReceiverConfig(...)).start()`` embeds it.

Modules, in the order data flows through them:

- ``_server``: the HTTP and gRPC front ends; ``cli``: the command.
- ``_decode``: request bodies -> protobuf, 4xx for bad input; ``_values``: OTLP values as
  python; ``_validation``: what is checked before anything is stored.
- ``_spool``: the durable sqlite state (ack after commit), its ingest side, over
  ``_spool_db`` (schema, connections, the byte count); ``_spool_drain``: its writer side (what
  is pending, marking it applied); ``_dead_letters``: what the writer could not apply (kept
  with its cause, retried, re-driven). ``_ownership``: which traces this receiver may write
  (absent, or in its experiment).
- ``_writer``: applies the spool to MLflow, stage by stage: ``_claims`` (one MLflow run per
  Inspect id across several receivers), ``_trace_forwarder`` (spans, running-trace links),
  ``_assessments`` (evaluation results), ``_task_finalizer`` (a task's aggregates, step
  metrics and tables from what MLflow holds), ``_eval_logs`` (a task's eval log as an
  artifact, only from under the operator's roots); ``_mlflow_io``: how failures are sorted and
  told, and the batched writes they share.
- Pure mappings (attributes -> MLflow), one concern each: ``_run_params`` (what becomes a param),
  ``_run_metrics`` (task metrics), ``_run_tags`` (run tags, names, status), ``_run_note`` (the
  results table as the run's description), ``_samples`` (sample
  summaries and step metrics), ``_forward`` (what a span takes to MLflow: span type, root
  inputs/outputs, trace tags), ``_evaluations`` (results -> assessments), ``_finalize`` (a
  task's tables and aggregates), ``_tables`` (artifact tables), ``_mlflow_names`` (the tag names
  and limits on the MLflow side). What looks secret is ``inspect_otel.redaction``, the policy the
  hook uses too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import Receiver, ReceiverConfig

__all__ = ["Receiver", "ReceiverConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _server

        return getattr(_server, name)
    raise AttributeError(name)
