"""What a span takes to MLflow when it is forwarded: its MLflow span type, what a root shows
(``_root_view.py``), which attributes stay behind, and NUL-free strings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc

from ._mlflow_names import (
    SPAN_TYPE,
    TRACE_KIND_SAMPLE,
    TRACE_TAG_KIND,
    TRACE_TAG_PREFIX,
    TRACE_TAG_SAMPLE,
)
from . import _root_view
from ._samples import sample_summary, sample_summary_tag

# Every span the hook emits gets an MLflow span type, decided by the first table that knows it:
# the root kind, then gen_ai.operation.name (as MLflow's own gen_ai translation types them), then
# Inspect's span type, then sandbox actions; any other Inspect span (a user's `span("name")` has
# its name as type) is a step of its parent: CHAIN.
SPAN_TYPE_BY_KIND: Mapping[str, str] = {
    sc.SPAN_KIND_RUN: "WORKFLOW",
    sc.SPAN_KIND_TASK: "TASK",
    sc.SPAN_KIND_SAMPLE: "AGENT",
}


SPAN_TYPE_BY_OPERATION: Mapping[str, str] = {
    sc.OP_CHAT: "CHAT_MODEL",
    "text_completion": "LLM",
    "generate_content": "LLM",
    "embeddings": "EMBEDDING",
    sc.OP_EXECUTE_TOOL: "TOOL",
    sc.OP_INVOKE_AGENT: "AGENT",
    "create_agent": "AGENT",
    sc.OP_INVOKE_WORKFLOW: "WORKFLOW",
}


SPAN_TYPE_BY_INSPECT_TYPE: Mapping[str, str] = {
    "scorer": "EVALUATOR",
    "scorers": "EVALUATOR",
    "solver": "CHAIN",
    "solvers": "CHAIN",
    "init": "CHAIN",
    "sample_init": "CHAIN",
    "subtask": "CHAIN",
    "task": "CHAIN",
    "branch": "CHAIN",
    "handoff": "AGENT",
    "agent": "AGENT",
    "tool": "TOOL",
}


SPAN_TYPE_SANDBOX = "TOOL"


SPAN_TYPE_DEFAULT = "CHAIN"



def span_type(attrs: Mapping[str, Any]) -> str:
    """The MLflow span type of a span the hook emitted (never None)."""
    for attr, table in ((sc.INSPECT_SPAN_KIND, SPAN_TYPE_BY_KIND),
                        (sc.GEN_AI_OPERATION_NAME, SPAN_TYPE_BY_OPERATION),
                        (sc.INSPECT_SPAN_TYPE, SPAN_TYPE_BY_INSPECT_TYPE)):
        v = attrs.get(attr)
        if isinstance(v, str) and v in table:
            return table[v]
    if attrs.get(sc.INSPECT_SANDBOX_ACTION) is not None:
        return SPAN_TYPE_SANDBOX
    return SPAN_TYPE_DEFAULT


# Attributes a sample root does not take to MLflow. MLflow sums token usage over a trace tree-aware
# (a span's usage counts unless an ancestor has usage) over the spans it holds at each write, and
# recomputes only when a write brings usage. The root's sample-wide gen_ai.usage.* would count
# again beside chat spans whose parent reaches MLflow in a later request (a trace split over
# requests or receivers), and the connecting span brings no usage: doubled for good. Without them
# the trace's usage is the sum of its chat spans in any order (the same tokens: Inspect's sample
# usage is the sum of its model calls). The spool keeps them; the sample summary has the totals.
ROOT_ATTRIBUTES_NOT_FORWARDED = frozenset({
    sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
})



def forwarded_attribute(key: str, enrich: Mapping[str, str]) -> bool:
    """Whether a span attribute goes to MLflow (``enrich``: the span's enrichment)."""
    return not ((key in ROOT_ATTRIBUTES_NOT_FORWARDED
                 or key in _root_view.SAMPLE_ROOT_ATTRIBUTES_NOT_FORWARDED)
                and enrich.get(TRACE_TAG_PREFIX + TRACE_TAG_KIND) == TRACE_KIND_SAMPLE)


def span_enrichment(attrs: Mapping[str, Any], is_root: bool) -> dict[str, str]:
    """Extra attributes for MLflow: span type, and root inputs/outputs/trace tags (the trace
    kind; on sample roots the summary every receiver reads back, see sample_summary_tag)."""
    out: dict[str, str] = {}
    if SPAN_TYPE not in attrs:
        out[SPAN_TYPE] = span_type(attrs)
    kind = attrs.get(sc.INSPECT_SPAN_KIND)
    if not is_root or kind is None:
        return out
    if kind in (sc.SPAN_KIND_SAMPLE, sc.SPAN_KIND_RUN):
        out[TRACE_TAG_PREFIX + TRACE_TAG_KIND] = str(kind)
    if kind == sc.SPAN_KIND_SAMPLE:
        summary = sample_summary("", 0, 0, attrs)
        if summary is not None:
            out[TRACE_TAG_PREFIX + TRACE_TAG_SAMPLE] = sample_summary_tag(summary, attrs)
    out.update(_root_view.root_io(kind, attrs))
    out.update(_root_view.root_trace_tags(attrs))
    return out



def _drop_nul_value(v: Any) -> None:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        if "\x00" in v.string_value:
            v.string_value = v.string_value.replace("\x00", "")
    elif kind == "array_value":
        for x in v.array_value.values:
            _drop_nul_value(x)
    elif kind == "kvlist_value":
        _drop_nul_attributes(v.kvlist_value.values)



def _drop_nul_attributes(kvs: Any) -> None:
    for kv in kvs:
        if "\x00" in kv.key:
            kv.key = kv.key.replace("\x00", "")
        _drop_nul_value(kv.value)



def drop_nul(msg: Any) -> Any:
    """Remove NUL characters from the strings of a span or a resource, in place. OTLP allows
    them; PostgreSQL text does not, and MLflow copies span names, models, statuses, tags and
    previews into text columns, so on PostgreSQL one NUL made MLflow refuse the whole trace."""
    _drop_nul_attributes(msg.attributes)
    if not hasattr(msg, "events"):  # a Resource
        return msg
    for holder, name in ((msg, "name"), (msg, "trace_state"), (msg.status, "message")):
        text = getattr(holder, name)
        if "\x00" in text:
            setattr(holder, name, text.replace("\x00", ""))
    for ev in msg.events:
        if "\x00" in ev.name:
            ev.name = ev.name.replace("\x00", "")
        _drop_nul_attributes(ev.attributes)
    for link in msg.links:
        if "\x00" in link.trace_state:
            link.trace_state = link.trace_state.replace("\x00", "")
        _drop_nul_attributes(link.attributes)
    return msg
