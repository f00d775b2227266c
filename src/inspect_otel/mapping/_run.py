"""Run and task spans (the run trace), from Inspect's EvalSpec / EvalLog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import ids
from .. import semconv as sc
from ..content import ContentPolicy, to_json
from ._common import attribute_value, error_type, generate_config_attributes, model_attributes, to_ns
from ._server import model_endpoints
from ._types import Kind, SpanData, TaskContext

RUN_WORKFLOW_NAME = "inspect.run"


def task_context(spec: Any, environ: Mapping[str, str] | None = None) -> TaskContext:
    """What every sample of a task needs; ``environ``: the eval's environment (provider base
    URLs; none given means each provider's default)."""
    dataset = spec.dataset
    sample_ids = tuple(str(i) for i in (getattr(dataset, "sample_ids", None) or ()))
    return TaskContext(
        run_id=spec.run_id,
        eval_id=spec.eval_id,
        eval_set_id=spec.eval_set_id,
        task_name=spec.task,
        model=spec.model,
        sample_ids=sample_ids,
        epochs=int(getattr(spec.config, "epochs", None) or 1),
        retries=int(getattr(spec.config, "retry_on_error", None) or 0),
        endpoints=model_endpoints(spec, environ or {}),
        tags=tuple(str(t) for t in spec.tags or ()),
    )


def _plan_attributes(plan: Any, policy: ContentPolicy) -> dict[str, Any]:
    if plan is None:
        return {}
    steps = [{"solver": step.solver, "params": step.params} for step in plan.steps]
    if plan.finish is not None:
        steps.append({"solver": plan.finish.solver, "params": plan.finish.params})
    return {sc.INSPECT_TASK_PLAN: policy.clean_json(steps)}


def _results_attributes(results: Any) -> dict[str, Any]:
    if results is None:
        return {}
    rows = []
    attrs: dict[str, Any] = {
        sc.INSPECT_TASK_SAMPLES_TOTAL: results.total_samples,
        sc.INSPECT_TASK_SAMPLES_COMPLETED: results.completed_samples,
    }
    for score in results.scores:
        for metric in score.metrics.values():
            rows.append({
                "name": score.name, "scorer": score.scorer, "reducer": score.reducer,
                "metric": metric.name, "value": metric.value,
            })
            attrs[f"{sc.INSPECT_TASK_METRIC_PREFIX}{score.name}/{metric.name}"] = float(
                metric.value
            )
    attrs[sc.INSPECT_TASK_RESULTS] = to_json(rows)
    return attrs


def _usage_json(model_usage: dict[str, Any]) -> str:
    return to_json({model: usage.model_dump(exclude_none=True) for model, usage in model_usage.items()})


def map_task(
    spec: Any,
    plan: Any,
    log: Any | None,
    policy: ContentPolicy,
    *,
    errored_samples: int,
    start_ns: int,
    end_ns: int,
    status: str | None = None,
    error: str | None = None,
) -> SpanData:
    """The task span. ``log`` is the finished EvalLog when there is one (not for cancelled tasks)."""
    status = status or (log.status if log is not None else "cancelled")
    error = error or (log.error.message if log is not None and log.error is not None else None)
    config = spec.config
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_WORKFLOW,
        sc.GEN_AI_WORKFLOW_NAME: spec.task,
        sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_TASK,
        sc.INSPECT_RUN_ID: spec.run_id,
        sc.INSPECT_EVAL_ID: spec.eval_id,
        sc.INSPECT_TASK_NAME: spec.task,
        sc.INSPECT_TASK_ID: spec.task_id,
        sc.INSPECT_TASK_VERSION: attribute_value(spec.task_version, policy),
        sc.INSPECT_TASK_ARGS: policy.clean_json(spec.task_args or {}),
        sc.INSPECT_TASK_MODEL_ARGS: policy.clean_json(spec.model_args or {}),
        sc.INSPECT_TASK_EPOCHS: int(getattr(config, "epochs", None) or 1),
        sc.INSPECT_TASK_STATUS: status,
        sc.INSPECT_TASK_SAMPLES_ERRORED: errored_samples,
        **model_attributes(spec.model),
        **generate_config_attributes(spec.model_generate_config, policy),
    }
    optional = {
        sc.INSPECT_EVAL_SET_ID: spec.eval_set_id,
        sc.INSPECT_TASK_FILE: spec.task_file,
        sc.INSPECT_TASK_SOLVER: spec.solver,
        sc.INSPECT_DATASET_NAME: getattr(spec.dataset, "name", None),
        sc.INSPECT_DATASET_LOCATION: getattr(spec.dataset, "location", None),
        sc.INSPECT_DATASET_SAMPLES: getattr(spec.dataset, "samples", None),
        sc.INSPECT_TASK_LIMIT: attribute_value(config.limit, policy) if config.limit else None,
        sc.INSPECT_TASK_TAGS: tuple(spec.tags) if spec.tags else None,
        sc.INSPECT_TASK_METADATA: policy.clean_json(spec.metadata) if spec.metadata else None,
        sc.INSPECT_TASK_SCORERS: tuple(s.name for s in spec.scorers) if getattr(spec, "scorers", None) else None,
        sc.INSPECT_TASK_LOG_LOCATION: getattr(log, "location", None) or None,
    }
    attrs.update({k: v for k, v in optional.items() if v is not None})
    attrs.update(_plan_attributes(plan, policy))
    if log is not None:
        attrs.update(_results_attributes(log.results))
        if log.stats is not None and log.stats.model_usage:
            attrs[sc.INSPECT_TASK_MODEL_USAGE] = _usage_json(log.stats.model_usage)
    failed = status in ("error", "cancelled")
    if failed:
        attrs[sc.ERROR_TYPE] = error_type(error, f"task_{status}")
        if error:
            attrs[sc.INSPECT_ERROR_MESSAGE] = policy.clean(error)
    trace_id = ids.run_trace_id(spec.run_id)
    return SpanData(
        trace_id=trace_id,
        span_id=ids.task_span_id(spec.run_id, spec.eval_id),
        parent_span_id=ids.run_span_id(spec.run_id),
        name=f"{sc.OP_INVOKE_WORKFLOW} {spec.task}",
        kind=Kind.INTERNAL,
        start_ns=start_ns,
        end_ns=max(end_ns, start_ns),
        attributes=attrs,
        error=(policy.clean(error) if error else f"task {status}") if failed else None,
    )


def task_times(log: Any | None, fallback_start: int, fallback_end: int) -> tuple[int, int]:
    """Task start/end from the log's own stats (identical live and replayed)."""
    stats = getattr(log, "stats", None)
    start = to_ns(getattr(stats, "started_at", None)) or fallback_start
    end = to_ns(getattr(stats, "completed_at", None)) or fallback_end
    return start, end


def map_run(
    run_id: str,
    eval_set_id: str | None,
    task_names: Sequence[str],
    *,
    start_ns: int,
    end_ns: int,
    status: str,
    error: BaseException | str | None,
    policy: ContentPolicy,
    specs: Sequence[Any] = (),
) -> SpanData:
    """The run span; ``specs`` (the EvalSpecs of its tasks) give the run's labels: its models and
    eval tags, which tell one run from another in a backend's run list."""
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_WORKFLOW,
        sc.GEN_AI_WORKFLOW_NAME: RUN_WORKFLOW_NAME,
        sc.INSPECT_SPAN_KIND: sc.SPAN_KIND_RUN,
        sc.INSPECT_RUN_ID: run_id,
        sc.INSPECT_RUN_TASK_NAMES: tuple(task_names),
        sc.INSPECT_RUN_STATUS: status,
    }
    if eval_set_id:
        attrs[sc.INSPECT_EVAL_SET_ID] = eval_set_id
    models = tuple(dict.fromkeys(spec.model for spec in specs if spec.model))
    tags = tuple(dict.fromkeys(tag for spec in specs for tag in (spec.tags or ())))
    if models:
        attrs[sc.INSPECT_RUN_MODELS] = models
    if tags:
        attrs[sc.INSPECT_RUN_TAGS] = tags
    description = None
    if status != "success":
        if isinstance(error, BaseException):
            attrs[sc.ERROR_TYPE] = type(error).__name__
            description = policy.clean(f"{type(error).__name__}: {error}")
        else:
            attrs[sc.ERROR_TYPE] = error_type(error, f"run_{status}")
            description = policy.clean(error) if error else f"run {status}"
        attrs[sc.INSPECT_ERROR_MESSAGE] = description
    return SpanData(
        trace_id=ids.run_trace_id(run_id),
        span_id=ids.run_span_id(run_id),
        parent_span_id=None,
        name=f"{sc.OP_INVOKE_WORKFLOW} {RUN_WORKFLOW_NAME}",
        kind=Kind.INTERNAL,
        start_ns=start_ns,
        end_ns=max(end_ns, start_ns),
        attributes=attrs,
        error=description,
    )
