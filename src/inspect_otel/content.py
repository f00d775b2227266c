"""Content policy: what may leave the process, redacted and truncated.

Converts Inspect messages to the GenAI semconv JSON message schema. Content is only produced when
the capture mode allows it; parameters (task args, model args) are always redacted because they
can carry credentials even when content capture is off. What looks secret is decided in
``redaction.py``, the one secret policy of the hook and the receiver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import ContentCapture, Settings
from .redaction import REDACTED, Redacted, Redactor  # noqa: F401 (REDACTED: part of this module's API)

TRUNCATION_MARKER = "...[truncated {n} chars]"
# Stands in for list elements dropped from the middle when a JSON value's structure alone is over
# the limit (e.g. thousands of short messages).
TRUNCATION_ITEMS_MARKER = "...[truncated {n} items]"


@dataclass(frozen=True)
class ContentPolicy:
    """Capture mode plus redaction and truncation, applied to everything that leaves."""

    capture: ContentCapture = ContentCapture.NO_CONTENT
    max_length: int = 16384
    extra_patterns: tuple[str, ...] = ()
    # Sample metadata keys sent even without content capture (INSPECT_OTEL_SAMPLE_METADATA_KEYS).
    metadata_keys: tuple[str, ...] = ()
    # INSPECT_OTEL_CAPTURE_PROVIDER_CALL: the provider's raw request and response on chat spans.
    provider_call: bool = False
    redactor: Redactor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "redactor", Redactor(self.extra_patterns))

    @property
    def on_spans(self) -> bool:
        return self.capture.on_spans

    @property
    def on_events(self) -> bool:
        return self.capture.on_events

    @property
    def raw_provider_call(self) -> bool:
        """The provider's own request and response go on chat spans (content on spans only)."""
        return self.provider_call and self.capture.on_spans

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentPolicy:
        return cls(
            capture=settings.content,
            max_length=settings.max_attribute_length,
            extra_patterns=settings.redact_patterns,
            metadata_keys=settings.sample_metadata_keys,
            provider_call=settings.capture_provider_call,
        )

    def redact(self, text: str) -> str:
        return self.redactor.text(text)

    def truncate(self, text: str) -> str:
        if len(text) <= self.max_length:
            return text
        marker = TRUNCATION_MARKER.format(n=len(text) - self.max_length)
        return text[: max(self.max_length - len(marker), 0)] + marker

    def clean(self, text: str) -> str:
        """Metadata (errors, log messages, arguments): redact then truncate. Redacting first keeps
        a cut from splitting a secret into a part no pattern recognises any more. The exporter
        redacts every other string on its way out (``export.py``); this one is marked as done
        (:class:`Redacted`)."""
        return Redacted(self.truncate(self.redact(text)))

    def clean_json(self, value: Any) -> str:
        """Metadata as redacted JSON within ``max_length`` that always parses (see
        :func:`truncate_json`). Secret keys' values go whole (the structure is still known)."""
        return Redacted(truncate_json(redact_mapping(value, self), self.max_length))

    def content(self, text: str) -> str:
        """Captured content (what the model saw and did): only its high-confidence secrets
        redacted (``redaction.py``, the content tier), then truncated."""
        return Redacted(self.truncate(self.redactor.content(text)))

    def content_json(self, value: Any) -> str:
        """Captured content as JSON within ``max_length`` that always parses."""
        return Redacted(truncate_json(self.redactor.content_data(value), self.max_length))


def redact_mapping(value: Any, policy: ContentPolicy) -> Any:
    """JSON-like data with secret keys' values and secret shapes redacted (:meth:`Redactor.data`)."""
    return policy.redactor.data(value)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def to_json(value: Any) -> str:
    return json.dumps(value, default=_safe_str, ensure_ascii=False, separators=(",", ":"))


# --- JSON-safe truncation ----------------------------------------------------------------------
# A JSON-valued attribute cut mid-string is no longer JSON, and every consumer (trace viewers,
# MLflow, the Scout import) then loses the whole value. Long values are cut inside their string
# leaves instead, the longest first, each cut marked; the value's shape is kept.

_Leaf = tuple[Any, Any, str]  # (container, key or index, string)
_ITEMS_MARKER = re.compile(re.escape(TRUNCATION_ITEMS_MARKER).replace(r"\{n\}", r"(\d+)"))


def _json_len(text: str) -> int:
    return len(json.dumps(text, ensure_ascii=False))


def _cut(text: str, cap: int) -> str:
    """``text`` cut to about ``cap`` characters with a marker, or unchanged if that is not shorter."""
    if len(text) <= cap:
        return text
    keep = max(cap - len(TRUNCATION_MARKER.format(n=len(text) - cap)), 0)
    cut = text[:keep] + TRUNCATION_MARKER.format(n=len(text) - keep)
    return cut if len(cut) < len(text) else text


def _string_leaves(value: Any, leaves: list[_Leaf]) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        if isinstance(item, str):
            leaves.append((value, key, item))
        elif isinstance(item, (dict, list)):
            _string_leaves(item, leaves)


def _largest_list(value: Any) -> list[Any] | None:
    best: list[Any] | None = None
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list) and len(node) > 3 and (best is None or len(node) > len(best)):
            best = node
        if isinstance(node, (dict, list)):
            stack.extend(node.values() if isinstance(node, dict) else node)
    return best


def _drop_middle(items: list[Any], excess: int) -> None:
    """Replace enough middle elements to save about ``excess`` characters by one marker."""
    average = max(len(to_json(items)) / len(items), 1.0)
    count = min(len(items) - 2, max(2, int(excess / average) + 2))
    start = (len(items) - count) // 2
    dropped = 0
    for item in items[start:start + count]:  # an earlier round's marker counts what it stood for
        match = _ITEMS_MARKER.fullmatch(item) if isinstance(item, str) else None
        dropped += int(match.group(1)) if match else 1
    items[start:start + count] = [TRUNCATION_ITEMS_MARKER.format(n=dropped)]


def truncate_json(value: Any, max_length: int) -> str:
    """``value`` as JSON of at most ``max_length`` characters that always parses.

    String leaves are cut to the largest common cap that fits (so short strings stay whole and
    the longest lose the most), each with a visible marker. When that would leave strings under
    a floor (the structure itself is too big, e.g. thousands of messages), middle elements of the
    longest list are first replaced by one item marker, keeping the start and the end. ``value``
    must be plain JSON data (as :func:`redact_mapping` returns it); it is never changed.
    """
    text = to_json(value)
    if len(text) <= max_length:
        return text
    data = json.loads(text)  # a private copy with plain types only
    if not isinstance(data, (dict, list)):
        data = [data]
        wrapped = True
    else:
        wrapped = False
    floor = min(256, max_length // 16)  # what each kept string may keep at least, if it can
    for _ in range(64):  # each round drops list elements: bounded
        leaves: list[_Leaf] = []
        _string_leaves(data, leaves)
        base = len(to_json(data))
        lengths = [_json_len(s) for _, _, s in leaves]

        def total(cap: int) -> int:
            return base - sum(n - _json_len(_cut(s, cap))
                              for (_, _, s), n in zip(leaves, lengths) if len(s) > cap)

        # Prefer dropping whole middle elements to cutting every string down to its marker.
        longest = _largest_list(data)
        if total(floor) > max_length and longest is not None:
            _drop_middle(longest, total(floor) - max_length)
            continue
        if total(0) <= max_length:
            low, high = 0, max((len(s) for _, _, s in leaves), default=0)
            while low < high:  # the largest cap that fits
                mid = (low + high + 1) // 2
                if total(mid) <= max_length:
                    low = mid
                else:
                    high = mid - 1
            for container, key, string in leaves:
                container[key] = _cut(string, low)
            out = to_json(data[0] if wrapped else data)
            if len(out) <= max_length:
                return out
        break
    # Nothing left to cut that keeps the shape (or a limit below a marker's length).
    marker = to_json(TRUNCATION_MARKER.format(n=len(text)))
    return marker if len(marker) <= max_length else "null"


# --- Inspect messages -> GenAI semconv message schema -------------------------------------------

FINISH_REASONS: Mapping[str, str] = {
    "stop": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "tool_calls": "tool_call",
    "content_filter": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop" if not stop_reason else stop_reason)


def _content_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for item in content or []:
        kind = getattr(item, "type", None)
        if kind == "text":
            parts.append({"type": "text", "content": item.text})
        elif kind == "reasoning":
            text = item.summary if item.redacted else item.reasoning
            parts.append({"type": "reasoning", "content": text or ""})
        elif kind in ("image", "audio", "video", "document"):
            ref = (
                getattr(item, "image", None)
                or getattr(item, "audio", None)
                or getattr(item, "video", None)
                or getattr(item, "document", None)
                or ""
            )
            # Inline base64 payloads are bulky and rarely useful in a trace viewer.
            if isinstance(ref, str) and ref.startswith("data:"):
                ref = ref.split(",", 1)[0] + ",<omitted>"
            parts.append({"type": "uri", "modality": kind, "uri": ref})
        elif kind == "tool_use":
            parts.append(
                {
                    "type": "tool_call",
                    "id": getattr(item, "id", None),
                    "name": getattr(item, "name", None),
                    "arguments": getattr(item, "arguments", None),
                }
            )
        elif kind == "data":
            parts.append({"type": "text", "content": to_json(getattr(item, "data", None))})
    return parts


def _tool_call_parts(tool_calls: Iterable[Any] | None) -> list[dict[str, Any]]:
    return [
        {"type": "tool_call", "id": call.id, "name": call.function, "arguments": call.arguments}
        for call in tool_calls or []
    ]


def message_to_semconv(message: Any) -> dict[str, Any]:
    """One Inspect message in the GenAI message schema, plus Inspect's message ``id`` and, on a
    tool response, the tool ``name`` and ``error`` (extra properties the schema allows), so that
    a reader can rebuild the Inspect message exactly (``docs/semantic-conventions.md``)."""
    role = message.role
    if role == "tool":
        part: dict[str, Any] = {"type": "tool_call_response", "id": message.tool_call_id}
        if message.function:
            part["name"] = message.function
        if message.error:
            part["response"] = message.text or message.error.message
            part["error"] = {"type": message.error.type, "message": message.error.message}
        else:
            part["response"] = message.text
        out: dict[str, Any] = {"role": "tool", "parts": [part]}
    else:
        parts = _content_parts(message.content)
        if role == "assistant":
            parts += _tool_call_parts(message.tool_calls)
        out = {"role": role, "parts": parts}
    if getattr(message, "id", None):
        out["id"] = message.id
    return out


def split_system(messages: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system instruction parts, non-system messages) in semconv form."""
    system_parts: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            system_parts += _content_parts(message.content)
        else:
            others.append(message_to_semconv(message))
    return system_parts, others


def output_messages(output: Any) -> list[dict[str, Any]]:
    messages = []
    for choice in getattr(output, "choices", None) or []:
        entry = message_to_semconv(choice.message)
        entry["finish_reason"] = finish_reason(choice.stop_reason)
        messages.append(entry)
    return messages


def tool_definitions(tools: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters.model_dump(exclude_none=True),
        }
        for tool in tools
    ]


def text_of(value: Any) -> str:
    """Plain text of a sample input/target: a string, a list of strings, or messages."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "\n".join(text_of(v) for v in value)
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else _safe_str(value)
