"""Entry-point target (``[project.entry-points.inspect_ai]``): registers the hook with Inspect."""

from inspect_ai.hooks import hooks

from .hook import OtelHooks


@hooks(
    name="inspect_otel",
    description="Export Inspect runs, tasks, samples, model and tool calls and scores as "
    "OpenTelemetry GenAI spans, evaluation results and metrics over OTLP.",
)
class InspectOtelHooks(OtelHooks):
    pass
