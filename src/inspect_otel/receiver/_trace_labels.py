"""Each sample trace carries what tells its run apart, as trace tags: Inspect's eval tags
(``inspect.tag.<label>`` = ``true``, as on the task's run, so MLflow's Traces table filters to
one label: ``tags.`inspect.tag.baseline` = 'true'``) and the name of its task run
(``inspect.run_name``).

A sample root carries neither (the hook sends a task's eval tags with the task span, at the
task's end), so they are set when the task is finalized, on the traces that lack them: MLflow
sets trace tags one request at a time, so the requests go out concurrently, and a trace that has
them gets none. (A root that carries ``inspect.task.tags`` gets the label tags on the way in,
_root_view.py.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from typing import Any

from ._mlflow_io import TRANSIENT, Transient, classify
from ._mlflow_names import TAG_LABEL_PREFIX, TAG_VALUE_MAX, mlflow_text

log = logging.getLogger("inspect_otel.receiver")

TRACE_TAG_RUN_NAME = "inspect.run_name"


def run_labels(run_tags: Mapping[str, str], run_name: str | None) -> dict[str, str]:
    """The trace tags every sample trace of a task run should carry."""
    labels = {k: v for k, v in run_tags.items() if k.startswith(TAG_LABEL_PREFIX)}
    if run_name:
        labels[TRACE_TAG_RUN_NAME] = mlflow_text(run_name, TAG_VALUE_MAX)
    return labels


def missing_labels(labels: Mapping[str, str], trace_tags: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if trace_tags.get(k) != v}


class TraceLabeller:
    """Sets the labels of a task run on its sample traces (through ``mlflow()``, a client), the
    requests on ``executor`` (the writer's, idle while tasks are finalized)."""

    def __init__(self, mlflow: Callable[[], Any], executor: Executor):
        self._mlflow = mlflow
        self._pool = executor

    def label(self, run: Any, traces: Iterable[tuple[str, Mapping[str, str]]]) -> int:
        """Set what each (trace id, its tags) lacks of ``run``'s labels; the number of tags
        set. MLflow failing is raised (after the others finished: the finalization is tried
        again); any other failure (a trace MLflow refuses, deleted meanwhile) is logged, its
        cause scrubbed, and the trace left: labels never hold up a task's tables and metrics."""
        labels = run_labels(run.data.tags, run.info.run_name)
        writes = [(trace_id, k, v) for trace_id, tags in traces
                  for k, v in missing_labels(labels, tags).items()]
        client = self._mlflow()
        futures = [self._pool.submit(client.set_trace_tag, *w) for w in writes]
        failures = [(w, classify(e)) for w, f in zip(writes, futures)
                    if (e := f.exception()) is not None]
        for (trace_id, key, _), failure in failures:
            if failure.kind == TRANSIENT:
                raise Transient(failure.cause)
            log.warning("trace %s left without its tag %s: %s", trace_id, key, failure.cause)
        return len(writes) - len(failures)

