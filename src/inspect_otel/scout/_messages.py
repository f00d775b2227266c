"""GenAI semconv message JSON -> Inspect chat messages (pure; the inverse of ``content.py``).

Parts map through a table; Inspect's own message and content classes are built directly, with
no provider round trip (Scout's Logfire importer rewrites parts to a provider's format first and
loses tool responses, reasoning and system instructions on the way).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_args, get_type_hints

from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageTool,
    ChatMessageUser,
    Content,
    ContentImage,
    ContentReasoning,
    ContentText,
)
from inspect_ai.tool import ToolCall, ToolCallError

_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"  # shortuuid's


def stable_id(*parts: object) -> str:
    """A 22-character id (the shape of Inspect's shortuuids) derived from ``parts``: imports of
    the same data give the same ids."""
    number = int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest(), "big")
    out = []
    for _ in range(22):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


def json_value(value: Any) -> Any:
    """A JSON-valued attribute: JSON text as the hook and OTLP files carry it, or already decoded
    (MLflow hands JSON text back decoded)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def text_value(value: Any) -> str:
    """A text attribute (MLflow may hand back text that looks like JSON decoded)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


# --- parts ---------------------------------------------------------------------------------------

def _text(part: Mapping[str, Any]) -> Content | None:
    return ContentText(text=text_value(part.get("content")))


def _reasoning(part: Mapping[str, Any]) -> Content | None:
    return ContentReasoning(reasoning=text_value(part.get("content")))


def _media(part: Mapping[str, Any]) -> Content | None:
    """uri / blob / file parts: images become image content, other media a text reference."""
    modality = part.get("modality")
    uri = part.get("uri") or part.get("file_id")
    if part.get("type") == "blob" and part.get("content"):
        uri = f"data:{part.get('mime_type') or 'application/octet-stream'};base64,{part['content']}"
    if modality == "image" and uri:
        return ContentImage(image=str(uri))
    return ContentText(text=f"[{modality or part.get('type')}: {uri or 'inline data'}]")


# semconv part type -> content builder (tool calls and responses are handled by role).
CONTENT_PARTS: Mapping[str, Callable[[Mapping[str, Any]], Content | None]] = {
    "text": _text,
    "reasoning": _reasoning,
    "thinking": _reasoning,
    "uri": _media,
    "blob": _media,
    "file": _media,
    "file_data": _media,
}


def _content(parts: Sequence[Mapping[str, Any]]) -> str | list[Content]:
    items: list[Content] = []
    for part in parts:
        builder = CONTENT_PARTS.get(str(part.get("type")))
        if builder is None and isinstance(part.get("content"), str):
            builder = _text  # an unknown part type that still carries text
        item = builder(part) if builder else None
        if item is not None:
            items.append(item)
    if not items:
        return ""
    if len(items) == 1 and isinstance(items[0], ContentText):
        return items[0].text
    return items


def _arguments(value: Any) -> tuple[dict[str, Any], str | None]:
    value = json_value(value)
    if isinstance(value, dict):
        return value, None
    if value is None or value == "":
        return {}, None
    return {}, f"arguments are not a JSON object: {text_value(value)[:200]}"


def _tool_call(part: Mapping[str, Any], fallback_id: str) -> ToolCall:
    arguments, parse_error = _arguments(part.get("arguments"))
    return ToolCall(id=str(part.get("id") or fallback_id), function=str(part.get("name") or ""),
                    arguments=arguments, parse_error=parse_error, type="function")


_TOOL_ERROR_TYPES = set(get_args(get_type_hints(ToolCallError)["type"]))


def tool_error(error_type: Any, message: Any) -> ToolCallError:
    kind = str(error_type) if error_type in _TOOL_ERROR_TYPES else "unknown"
    return ToolCallError(type=kind, message=text_value(message))  # type: ignore[arg-type]


def _tool_messages(message: Mapping[str, Any], parts: Sequence[Mapping[str, Any]],
                   functions: Mapping[str, str], seed: str) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    for n, part in enumerate(p for p in parts if p.get("type") == "tool_call_response"):
        call_id = str(part.get("id") or "")
        response = part.get("response")
        text = response if isinstance(response, str) else text_value(response)
        error = None
        if isinstance(part.get("error"), Mapping):
            error = tool_error(part["error"].get("type"), part["error"].get("message") or text)
            if text == error.message:
                text = ""
        message_id = message.get("id") if n == 0 else None
        out.append(ChatMessageTool(
            id=str(message_id or stable_id(seed, "tool", n)), content=text,
            tool_call_id=call_id or None, function=part.get("name") or functions.get(call_id),
            error=error,
        ))
    return out


def messages_from_semconv(items: Any, seed: str, model: str | None = None) -> list[ChatMessage]:
    """Inspect messages from a semconv message list (``gen_ai.input.messages`` and the like).

    ``seed`` makes ids stable for messages that carry none; ``model`` is set on assistant
    messages (the model that produced them, when known). Entries that are not messages (e.g. the
    item marker of a truncated list) are skipped."""
    items = json_value(items)
    if not isinstance(items, list):
        return []
    out: list[ChatMessage] = []
    functions: dict[str, str] = {}  # tool call id -> function, for tool responses without a name
    for index, message in enumerate(items):
        if not isinstance(message, Mapping):
            continue
        role = message.get("role")
        parts = [p for p in message.get("parts") or [] if isinstance(p, Mapping)]
        message_id = str(message.get("id") or stable_id(seed, index))
        if role == "tool":
            out += _tool_messages(message, parts, functions, f"{seed}/{index}")
            continue
        content = _content(parts)
        if role == "system":
            out.append(ChatMessageSystem(id=message_id, content=content))
        elif role == "assistant":
            calls = [_tool_call(p, stable_id(seed, index, "call", n))
                     for n, p in enumerate(p for p in parts if p.get("type") == "tool_call")]
            functions.update((c.id, c.function) for c in calls)
            out.append(ChatMessageAssistant(id=message_id, content=content,
                                            tool_calls=calls or None, model=model))
        else:  # user, and unknown roles (the semconv role list is open)
            # some producers put tool responses in user messages (Anthropic's shape)
            responses = _tool_messages(message, parts, functions, f"{seed}/{index}")
            if content or not responses:
                out.append(ChatMessageUser(id=message_id, content=content))
            out += responses
    return out


def system_messages(parts: Any, seed: str) -> list[ChatMessage]:
    """``gen_ai.system_instructions`` (a list of parts) -> one system message."""
    parts = json_value(parts)
    if isinstance(parts, str):
        parts = [{"type": "text", "content": parts}]
    if not isinstance(parts, list) or not parts:
        return []
    content = _content([p for p in parts if isinstance(p, Mapping)])
    return [ChatMessageSystem(id=stable_id(seed, "system"), content=content)]


def output_choices(items: Any, seed: str, model: str | None) -> list[tuple[ChatMessageAssistant, str | None]]:
    """``gen_ai.output.messages`` -> (assistant message, semconv finish reason) per choice."""
    items = json_value(items)
    if not isinstance(items, list):
        return []
    out = []
    for index, entry in enumerate(items):
        if not isinstance(entry, Mapping):
            continue
        messages = messages_from_semconv([{**entry, "role": "assistant"}], f"{seed}/{index}", model)
        if messages and isinstance(messages[0], ChatMessageAssistant):
            out.append((messages[0], entry.get("finish_reason")))
    return out
