"""Attribute, event and metric names: GenAI semantic conventions first, ``inspect.*`` for the rest.

Every name the project emits (hook and replay) or reads (receiver) is a constant here, so the
emitter and the consumer cannot drift apart. ``docs/semantic-conventions.md`` documents them.
"""

from __future__ import annotations

# GenAI semantic conventions v1.41.1 (the last core release carrying GenAI).
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
SEMCONV_VERSION = "1.41.1"
INSTRUMENTATION_NAME = "inspect_otel"

# --- GenAI: common -----------------------------------------------------------------------------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_AGENT_ID = "gen_ai.agent.id"
GEN_AI_WORKFLOW_NAME = "gen_ai.workflow.name"
ERROR_TYPE = "error.type"
# Where a model call went (general semconv, Recommended on GenAI client spans): the host and port
# of the model's base URL, never its credentials.
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# gen_ai.operation.name values
OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"
OP_INVOKE_AGENT = "invoke_agent"
OP_INVOKE_WORKFLOW = "invoke_workflow"

# --- GenAI: inference request / response ---------------------------------------------------------
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES = "gen_ai.request.stop_sequences"
GEN_AI_REQUEST_FREQUENCY_PENALTY = "gen_ai.request.frequency_penalty"
GEN_AI_REQUEST_PRESENCE_PENALTY = "gen_ai.request.presence_penalty"
GEN_AI_REQUEST_CHOICE_COUNT = "gen_ai.request.choice.count"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"

# --- GenAI: usage ----------------------------------------------------------------------------
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"  # includes cache reads and writes
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"

# --- GenAI: content (opt-in) -----------------------------------------------------------------
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"

# --- GenAI: tools ----------------------------------------------------------------------------
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"  # opt-in content
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"  # opt-in content

# --- GenAI: evaluation results (log record event + span event of the same name) --------------
EVENT_EVALUATION_RESULT = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION = "gen_ai.evaluation.explanation"  # opt-in content

# --- GenAI: metrics ---------------------------------------------------------------------------
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
TOKEN_USAGE_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
OPERATION_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
METRIC_SAMPLES = "inspect.samples"
METRIC_TOOL_CALLS = "inspect.tool.calls"

# --- inspect.*: identity (on run, task and sample root spans, and on evaluation results) ------
INSPECT_RUN_ID = "inspect.run_id"
INSPECT_EVAL_ID = "inspect.eval_id"
INSPECT_EVAL_SET_ID = "inspect.eval_set_id"
INSPECT_TASK_NAME = "inspect.task.name"
INSPECT_SAMPLE_ID = "inspect.sample.id"
INSPECT_SAMPLE_EPOCH = "inspect.sample.epoch"
INSPECT_SAMPLE_UUID = "inspect.sample.uuid"
INSPECT_MODEL = "inspect.model"  # full Inspect model name, e.g. "openai/gpt-4o"
# Which of the three span kinds this is: "run", "task", "sample" (roots); absent on inner spans.
INSPECT_SPAN_KIND = "inspect.span.kind"
SPAN_KIND_RUN = "run"
SPAN_KIND_TASK = "task"
SPAN_KIND_SAMPLE = "sample"

# --- inspect.*: run span ------------------------------------------------------------------------
INSPECT_RUN_TASK_NAMES = "inspect.run.task_names"
INSPECT_RUN_STATUS = "inspect.run.status"
INSPECT_RUN_MODELS = "inspect.run.models"  # string[]: the models of the run's tasks
INSPECT_RUN_TAGS = "inspect.run.tags"  # string[]: the eval tags of the run's tasks
INSPECT_ERROR_MESSAGE = "inspect.error.message"

# --- inspect.*: task span ------------------------------------------------------------------------
INSPECT_TASK_ID = "inspect.task.id"
INSPECT_TASK_VERSION = "inspect.task.version"
INSPECT_TASK_FILE = "inspect.task.file"
INSPECT_TASK_ARGS = "inspect.task.args"  # JSON object, secrets redacted
INSPECT_TASK_STATUS = "inspect.task.status"  # success | error | cancelled | started
INSPECT_TASK_TAGS = "inspect.task.tags"  # string[]: Inspect's eval tags (--tags)
# JSON object, secrets redacted: Inspect's eval metadata (--metadata) merged with the task's own
# metadata, as EvalSpec.metadata holds them.
INSPECT_TASK_METADATA = "inspect.task.metadata"
INSPECT_TASK_EPOCHS = "inspect.task.epochs"
INSPECT_TASK_LIMIT = "inspect.task.limit"
INSPECT_TASK_SOLVER = "inspect.task.solver"
INSPECT_TASK_PLAN = "inspect.task.plan"  # JSON list of {"solver": name, "params": {...}}
INSPECT_TASK_SCORERS = "inspect.task.scorers"  # string[] of scorer names
INSPECT_TASK_MODEL_ARGS = "inspect.task.model_args"  # JSON object, secrets redacted
INSPECT_TASK_LOG_LOCATION = "inspect.task.log_location"
INSPECT_DATASET_NAME = "inspect.dataset.name"
INSPECT_DATASET_LOCATION = "inspect.dataset.location"
INSPECT_DATASET_SAMPLES = "inspect.dataset.samples"
# Prefix for generate-config values without a GenAI name: inspect.generate_config.<key>
INSPECT_GENERATE_CONFIG_PREFIX = "inspect.generate_config."
INSPECT_TASK_SAMPLES_TOTAL = "inspect.task.samples.total"
INSPECT_TASK_SAMPLES_COMPLETED = "inspect.task.samples.completed"
INSPECT_TASK_SAMPLES_ERRORED = "inspect.task.samples.errored"
# JSON list of {"name", "scorer", "reducer", "metric", "value"}: every scorer/metric result.
INSPECT_TASK_RESULTS = "inspect.task.results"
# Flattened copy for trace viewers: inspect.task.metric.<score name>/<metric name> = double
INSPECT_TASK_METRIC_PREFIX = "inspect.task.metric."
# JSON object {model: {input_tokens, output_tokens, total_tokens, input_tokens_cache_read,
# input_tokens_cache_write, reasoning_tokens, total_cost}} with Inspect's own token semantics.
INSPECT_TASK_MODEL_USAGE = "inspect.task.model_usage"

# --- inspect.*: sample root span ---------------------------------------------------------------
INSPECT_SAMPLE_INDEX = "inspect.sample.index"  # 0-based position in the task's dataset order
# Stable order of sample x epoch inside a task: (epoch - 1) * dataset size + index.
INSPECT_SAMPLE_ORDINAL = "inspect.sample.ordinal"
INSPECT_SAMPLE_STATUS = "inspect.sample.status"  # success | error | limit
INSPECT_SAMPLE_LIMIT_TYPE = "inspect.sample.limit.type"
INSPECT_SAMPLE_LIMIT_VALUE = "inspect.sample.limit.value"
INSPECT_SAMPLE_TOTAL_TIME = "inspect.sample.total_time"  # seconds
INSPECT_SAMPLE_WORKING_TIME = "inspect.sample.working_time"  # seconds
INSPECT_SAMPLE_RETRIES = "inspect.sample.retries"  # attempts that errored and were retried
# On the top-level spans of a sample (init, solvers, scorers): the attempt (1-based) they belong to.
# Live, a retried sample's failed attempts stay in its trace next to the final one.
INSPECT_SAMPLE_ATTEMPT = "inspect.sample.attempt"
INSPECT_SAMPLE_INPUT = "inspect.sample.input"  # opt-in content: sample input as text
INSPECT_SAMPLE_TARGET = "inspect.sample.target"  # opt-in content
INSPECT_SAMPLE_OUTPUT = "inspect.sample.output"  # opt-in content: final completion text
# opt-in content: the sample's whole final conversation (EvalSample.messages, system messages
# included) in the GenAI message schema with Inspect's message ids; what a transcript shows.
INSPECT_SAMPLE_MESSAGES = "inspect.sample.messages"
INSPECT_SAMPLE_MESSAGE_COUNT = "inspect.sample.message_count"  # len(EvalSample.messages)
INSPECT_SAMPLE_TOTAL_TOKENS = "inspect.sample.total_tokens"
INSPECT_SAMPLE_COST = "inspect.sample.cost"
INSPECT_SAMPLE_MODEL_CALLS = "inspect.sample.model_calls"
INSPECT_SAMPLE_TOOL_CALLS = "inspect.sample.tool_calls"
INSPECT_SAMPLE_TOOL_ERRORS = "inspect.sample.tool_errors"
INSPECT_SAMPLE_MODEL_ERRORS = "inspect.sample.model_errors"
# Distinct final evaluation results (name x scorer span) the sample emits: a consumer that sees the
# results arrive separately (log records, several receivers) knows when it has them all.
INSPECT_SAMPLE_EVALUATIONS = "inspect.sample.evaluations"
# Per final score, numeric value for trace viewers: inspect.sample.score.<scorer> = double
INSPECT_SAMPLE_SCORE_PREFIX = "inspect.sample.score."
# Scalar sample metadata (e.g. a cluster key for `inspect-otel compare --cluster`):
# inspect.sample.metadata.<key> = str | int | double | bool. Metadata can hold content, so every
# key is sent only under content capture, otherwise only the keys named in
# INSPECT_OTEL_SAMPLE_METADATA_KEYS.
INSPECT_SAMPLE_METADATA_PREFIX = "inspect.sample.metadata."

# --- inspect.*: inner spans ---------------------------------------------------------------------
INSPECT_SPAN_ID = "inspect.span.id"  # Inspect's own span id
INSPECT_SPAN_TYPE = "inspect.span.type"  # solvers, solver, scorers, scorer, tool, agent, ...
INSPECT_EVENT_UUID = "inspect.event.uuid"
INSPECT_MODEL_ROLE = "inspect.model.role"
INSPECT_MODEL_RETRIES = "inspect.model.retries"
INSPECT_MODEL_CACHE = "inspect.model.cache"  # read | write
INSPECT_USAGE_COST = "inspect.usage.cost"
# The provider's own request and response JSON of a model call (Inspect's ModelEvent.call), on
# chat spans with INSPECT_OTEL_CAPTURE_PROVIDER_CALL=true and content capture on spans; headers
# dropped, secrets redacted.
INSPECT_MODEL_CALL_REQUEST = "inspect.model.call.request"
INSPECT_MODEL_CALL_RESPONSE = "inspect.model.call.response"
INSPECT_TOOL_TRUNCATED = "inspect.tool.truncated"
INSPECT_TOOL_AGENT = "inspect.tool.agent"
INSPECT_TOOL_ERROR_MESSAGE = "inspect.tool.error.message"
INSPECT_SANDBOX_ACTION = "inspect.sandbox.action"
INSPECT_SANDBOX_CMD = "inspect.sandbox.cmd"  # opt-in content
INSPECT_SANDBOX_RESULT = "inspect.sandbox.result"  # exit code
INSPECT_SANDBOX_OUTPUT = "inspect.sandbox.output"  # opt-in content
INSPECT_SCORER_NAME = "inspect.scorer.name"
INSPECT_SCORER_MODEL_GRADED = "inspect.scorer.model_graded"

# --- inspect.*: evaluation results ----------------------------------------------------------------
INSPECT_SCORE_INTERMEDIATE = "inspect.score.intermediate"
INSPECT_SCORE_VALUE_JSON = "inspect.score.value_json"  # raw Inspect value, JSON
INSPECT_SCORE_ANSWER = "inspect.score.answer"  # opt-in content
INSPECT_SCORE_SPAN_ID = "inspect.score.span_id"  # hex OTel span id of the scorer span

# --- inspect.*: span events on inner spans -------------------------------------------------------
EVENT_SAMPLE_RETRY = "inspect.sample.retry"
# Live export: a log record (event) in a sample trace's context when the sample starts, with the
# sample's identity attributes: its trace is running. Spans stay exactly once; a consumer (the
# MLflow receiver) links the running trace to its task before the root arrives.
EVENT_SAMPLE_START = "inspect.sample.start"
EVENT_SAMPLE_LIMIT = "inspect.sample.limit"
EVENT_APPROVAL = "inspect.approval"
EVENT_ERROR = "exception"
EVENT_INFO = "inspect.info"
EVENT_LOGGER = "inspect.logger"
EVENT_INPUT = "inspect.input"
EVENT_INTERRUPT = "inspect.interrupt"
EVENT_COMPACTION = "inspect.compaction"
INSPECT_APPROVAL_DECISION = "inspect.approval.decision"
INSPECT_APPROVAL_APPROVER = "inspect.approval.approver"
INSPECT_APPROVAL_EXPLANATION = "inspect.approval.explanation"  # opt-in content
INSPECT_MESSAGE = "inspect.message"
INSPECT_LIMIT_TYPE = "inspect.limit.type"
INSPECT_LIMIT_VALUE = "inspect.limit.value"
INSPECT_RETRY_ATTEMPT = "inspect.retry.attempt"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"

# Attributes whose value is JSON text. The hook keeps each one valid JSON within
# INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH (content.truncate_json); the collector config exempts them from
# its byte-level truncate_all, which would cut them into invalid JSON.
JSON_ATTRIBUTES: tuple[str, ...] = (
    GEN_AI_INPUT_MESSAGES, GEN_AI_OUTPUT_MESSAGES, GEN_AI_SYSTEM_INSTRUCTIONS,
    GEN_AI_TOOL_DEFINITIONS, GEN_AI_TOOL_CALL_ARGUMENTS, GEN_AI_TOOL_CALL_RESULT,
    INSPECT_SAMPLE_MESSAGES, INSPECT_TASK_ARGS, INSPECT_TASK_MODEL_ARGS, INSPECT_TASK_METADATA,
    INSPECT_TASK_PLAN, INSPECT_TASK_RESULTS, INSPECT_TASK_MODEL_USAGE, INSPECT_SCORE_VALUE_JSON,
    INSPECT_MESSAGE, INSPECT_MODEL_CALL_REQUEST, INSPECT_MODEL_CALL_RESPONSE,
)
