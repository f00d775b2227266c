"""Span model -> OpenTelemetry SDK -> OTLP, and why an export failed.

``TelemetryPipeline`` owns (or borrows) the SDK providers; the SDK's own OTLP exporters send
(``_exporters``); what it needs of the SDK beyond public API is behind fallbacks (``_sdk``); the
exporters' complaints become causes a user can act on (``_diagnosis``).
"""

from ._diagnosis import export_cause, traces_url
from ._pipeline import FlushReport, TelemetryPipeline, build_resource
from ._sdk import sampler_from_env

__all__ = ["FlushReport", "TelemetryPipeline", "build_resource", "export_cause",
           "sampler_from_env", "traces_url"]
