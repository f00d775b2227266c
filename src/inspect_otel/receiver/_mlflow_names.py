"""Names and limits on the MLflow side: the tags and trace tags the receiver writes, artifact
paths, MLflow's value limits, and the text and key forms MLflow accepts."""

from __future__ import annotations

import re

# Bookkeeping tags go under MLflow's own prefix: its UI leaves tags starting with "mlflow." out of
# a run's tag list (isUserFacingTag in MLflow 3.17's JS), so they do not crowd the run page.
HIDDEN_TAG_PREFIX = "mlflow.inspect_otel."

# Tags the receiver itself writes on MLflow runs (not span attributes).
TAG_ROLE = "inspect.otel.role"  # "run" (parent) or "task" (nested child)


# Comma-separated task attributes whose JSON could not be used as structure (nested deeper than
# MAX_ATTRIBUTE_JSON_DEPTH, or not JSON): their params hold the raw text, truncated.
TAG_UNPARSED = "inspect.otel.unparsed"


ROLE_RUN = "run"


ROLE_TASK = "task"


TAG_PARENT_RUN_ID = "mlflow.parentRunId"


TAG_RUN_NAME = "mlflow.runName"


TAG_LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"


TAG_SOURCE_NAME = "mlflow.source.name"


# The run's description (MLflow's key, mlflow.utils.mlflow_tags.MLFLOW_RUN_NOTE): shown at the top
# of the run page.
TAG_RUN_NOTE = "mlflow.note.content"


# MLflow's own mark of an evaluation run (mlflow.genai.evaluate sets it): task runs carry it, so
# they are what MLflow's "Evaluation runs" page and its side-by-side comparison show.
TAG_RUN_TYPE = "mlflow.runType"


RUN_TYPE_EVALUATION = "genai_evaluate"


# Inspect's labels on runs: one tag per eval tag (`tags."inspect.tag.<label>" = 'true'` finds
# them), all eval tags in one tag (a column of the runs list), one tag per metadata key.
TAG_LABEL_PREFIX = "inspect.tag."


TAG_LABEL_VALUE = "true"


TAG_LABELS = "inspect.tags"


TAG_METADATA_PREFIX = "inspect.metadata."


MAX_LABEL_TAGS = 50  # eval tags and metadata keys each become at most this many tags


LABEL_VALUE_MAX = 500  # characters of one metadata value


# Assessment metadata: the scorer span an evaluation result came from (the assessment itself
# sits on the trace, as MLflow's evaluations put it), and the run that produced it (MLflow's
# own key, mlflow.tracing.constant.AssessmentMetadataKey.SOURCE_RUN_ID).
ASSESSMENT_SCORER_SPAN = "inspect.scorer.span_id"


ASSESSMENT_SOURCE_RUN = "mlflow.assessment.sourceRunId"


# The finalization a task run holds: "<samples>/<assessments>/<digest of its tables and
# aggregates>". Receivers compare it with what they see in MLflow before writing again.
TAG_FINALIZED = HIDDEN_TAG_PREFIX + "finalized"


# The eval log stored under the task run's artifacts (LOG_ARTIFACT_DIR): its location, or why not.
TAG_LOG_ARTIFACT = "inspect.otel.log_artifact"


TAG_LOG_ARTIFACT_ERROR = "inspect.otel.log_artifact_error"


LOG_ARTIFACT_DIR = "inspect/logs"


# Trace tags the receiver writes (as mlflow.traceTag.* root attributes): the kind of trace, so
# one filter (`tags.inspect.trace.kind = 'sample'`) shows only sample traces; and the sample
# summary every receiver reads back to build a task's tables and aggregates (JSON, see
# sample_summary_tag). The summary is bookkeeping: under MLflow's own prefix, which its UI
# leaves out of a trace's tags, its tag columns and its tag filters (trace tags starting with
# "mlflow." are MLflow's, as for runs). Receivers before it wrote it as "inspect.otel.sample",
# which is still read.
TRACE_TAG_KIND = "inspect.trace.kind"


TRACE_KIND_SAMPLE = "sample"


TRACE_KIND_RUN = "run"


TRACE_TAG_SAMPLE = HIDDEN_TAG_PREFIX + "sample"


LEGACY_TRACE_TAG_SAMPLE = "inspect.otel.sample"


# MLflow limits (3.x): param values up to 6000 chars, tag values up to 8000.
PARAM_VALUE_MAX = 6000


TAG_VALUE_MAX = 8000


TRUNCATION_MARKER = "...[truncated]"


TABLE_DIR = "inspect"


SAMPLES_TABLE = f"{TABLE_DIR}/samples.json"


SCORES_TABLE = f"{TABLE_DIR}/scores.json"


MODEL_USAGE_TABLE = f"{TABLE_DIR}/model_usage.json"



def truncate(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    return s[: limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER



def mlflow_text(s: str, limit: int) -> str:
    """A param/tag value MLflow stores on any backend: NUL dropped (PostgreSQL text refuses it),
    truncated to ``limit``."""
    return truncate(s.replace("\x00", ""), limit)


_METRIC_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. /:]")



def metric_key(key: str) -> str:
    """A metric or param name MLflow accepts: letters, digits, ``_ - . space / :``, and a
    normalised path (no empty, ``.`` or ``..`` segment, no leading or trailing ``/``), else MLflow
    refuses the whole batch it travels in."""
    key = _METRIC_KEY_BAD.sub("_", key)[:250]
    if "/" in key or key in ("", ".", ".."):  # normalising never makes the key longer
        key = "/".join("_" if p in (".", "..") else p for p in key.split("/") if p) or "_"
    return key


SPAN_INPUTS = "mlflow.spanInputs"


SPAN_OUTPUTS = "mlflow.spanOutputs"


SPAN_TYPE = "mlflow.spanType"


TRACE_TAG_PREFIX = "mlflow.traceTag."
