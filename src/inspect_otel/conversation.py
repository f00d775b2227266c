"""The conversation on chat spans, in linear time (content capture on).

Every model call's input is the whole conversation so far: converting, redacting and serialising
it on every chat span costs O(turns) per call and O(turns^2) per sample, and an agent has 50-300
turns. So, per sample:

- **Each message is converted and redacted once** (:class:`Conversation`): its GenAI-semconv form,
  content-redacted, and its JSON, cached by Inspect's message id and checked by identity (as
  Inspect's own log writer caches, ``WalkContext.message_cache``). A message seen again (it is in
  every later call's input) costs a dictionary lookup.
- **What fits the attribute budget is chosen before anything is serialised** (:func:`fit`): the
  first user turn and the newest messages, whole, newest first; the middle is cut and marked by one
  item, ``"...[truncated N items]"``, as :func:`~.content.truncate_json` marks it. Only the chosen
  messages' cached JSON is joined, so the work per call is bounded by the budget, not by the
  conversation. A message too long alone is cut inside its strings (JSON-safe).
- The cache is bounded (least recently used out, by characters): a running sample holds at most a
  few budgets of converted content.

The rest of the conversation is in the trace: each turn's output is its chat span's
``gen_ai.output.messages`` and each tool result its ``execute_tool`` span's
``gen_ai.tool.call.result`` (docs/semantic-conventions.md).

The provider's raw request (opt-in) gets the same treatment (:func:`fit_call`): its conversation
list is cut to the budget element by element, from the end, before the rest is serialised.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .content import (
    TRUNCATION_ITEMS_MARKER,
    ContentPolicy,
    finish_reason,
    message_to_semconv,
    to_json,
    tool_definitions,
    truncate_json,
)
from .redaction import Redacted, without_headers

# Over the budget, the head (system messages kept, the first user turn) gets at most this share;
# the newest messages matter more.
_HEAD_SHARE = 4
# The cache holds about this many budgets of converted messages per sample.
_CACHE_BUDGETS = 8
# Below this many characters a cut keeps nothing readable: the piece is left out instead.
_MIN_CUT = 64


@dataclass(frozen=True)
class Piece:
    """One list element as JSON, and the data it was made from (to cut it when alone too long)."""

    json: str
    data: Any


@dataclass(frozen=True)
class _Entry:
    message: Any  # the Inspect message (identity check: Inspect reuses the object in every call)
    piece: Piece


def _marker(omitted: int) -> str:
    return to_json(TRUNCATION_ITEMS_MARKER.format(n=omitted))


def _cut(piece: Piece, limit: int) -> str:
    return piece.json if len(piece.json) <= limit else truncate_json(piece.data, limit)


def _cut_head(head: Sequence[Piece], share: int) -> list[str]:
    """The head within ``share`` characters: short pieces whole, the long ones sharing the rest
    equally (water-filling, in the head's order)."""
    caps: dict[int, int] = {}
    left, count = share, len(head)
    for index in sorted(range(count), key=lambda i: len(head[i].json)):
        caps[index] = max(min(len(head[index].json), left // count), _MIN_CUT)
        left -= caps[index]
        count -= 1
    return [_cut(p, caps[i]) for i, p in enumerate(head)]


def fit(head: Sequence[Piece], tail: Iterator[Piece], total: int, budget: int) -> str:
    """A JSON list of at most ``budget`` characters standing for ``total`` pieces: ``head`` (the
    first pieces) and ``tail`` (the others, newest first, consumed only as far as they fit: the
    caller's work stops there). All of them when they fit; otherwise the head (within a share of
    the budget), an item marker counting what was left out, and the newest pieces that fit, the
    newest always (cut inside its strings if it must be)."""
    size = 2 + sum(len(p.json) + 1 for p in head)  # a comma counted after every piece
    chosen: list[Piece] = []
    overflow: Piece | None = None
    for piece in tail:
        if size + len(piece.json) + 1 > budget:
            overflow = piece
            break
        chosen.append(piece)
        size += len(piece.json) + 1
    if overflow is None and size - 1 <= budget:
        return "[" + ",".join([p.json for p in head] + [p.json for p in reversed(chosen)]) + "]"
    head_json = _cut_head(head, budget // _HEAD_SHARE) if head else []
    room = budget - (2 + sum(len(h) + 1 for h in head_json) + len(_marker(total)) + 1)
    kept: list[str] = []
    for index, piece in enumerate([*chosen, *([overflow] if overflow is not None else [])]):
        if len(piece.json) + 1 <= room:
            kept.append(piece.json)
            room -= len(piece.json) + 1
            continue
        if index == 0 and room - 1 >= _MIN_CUT:  # the newest alone is too long: cut it
            kept.append(_cut(piece, room - 1))
        break
    omitted = total - len(head) - len(kept)
    out = "[" + ",".join(head_json + ([_marker(omitted)] if omitted else []) + kept[::-1]) + "]"
    if len(out) <= budget:
        return out
    return truncate_json([p.data for p in head], budget)  # a budget too small for any of it


class Conversation:
    """One sample's messages, each converted and content-redacted once (module docstring)."""

    def __init__(self, policy: ContentPolicy) -> None:
        self.policy = policy
        self._budget = policy.max_length
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cached_chars = 0
        self._cache_limit = _CACHE_BUDGETS * policy.max_length
        self._tools: tuple[tuple[Any, ...], str] = ((), "")

    # --- one message ------------------------------------------------------------------------------
    def piece(self, message: Any) -> Piece:
        """``message`` in GenAI-semconv form, content-redacted, and its JSON (cached)."""
        key = getattr(message, "id", None)
        if key is not None:
            entry = self._cache.get(key)
            if entry is not None and entry.message is message:
                self._cache.move_to_end(key)
                return entry.piece
        data = self.policy.redactor.content_data(message_to_semconv(message))
        piece = Piece(to_json(data), data)
        if key is not None:
            self._remember(key, _Entry(message, piece))
        return piece

    def _remember(self, key: str, entry: _Entry) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._cached_chars -= len(old.piece.json)
        self._cache[key] = entry
        self._cached_chars += len(entry.piece.json)
        while self._cached_chars > self._cache_limit and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_chars -= len(dropped.piece.json)

    # --- a chat span's content ----------------------------------------------------------------------
    def system_instructions(self, messages: Sequence[Any]) -> str | None:
        """The leading system messages' parts (``gen_ai.system_instructions``), or None. A system
        message later in the conversation stays in its place among the messages."""
        parts: list[Any] = []
        for message in messages:
            if message.role != "system":
                break
            parts.extend(self.piece(message).data["parts"])
        if not parts:
            return None
        return Redacted(truncate_json(parts, self._budget))

    def input_messages(self, messages: Sequence[Any], keep_system: bool = False) -> str:
        """``gen_ai.input.messages``: the conversation after its leading system messages (or
        with them, ``keep_system``: the sample root's whole conversation), fitted to the budget.
        The head is the system messages kept and the first user turn."""
        start = 0
        if not keep_system:
            while start < len(messages) and messages[start].role == "system":
                start += 1
        first = start
        while first < len(messages) and messages[first].role == "system":
            first += 1
        head_end = min(first + 1, len(messages))
        head = [self.piece(m) for m in messages[start:head_end]]
        tail = (self.piece(messages[i]) for i in range(len(messages) - 1, head_end - 1, -1))
        return Redacted(fit(head, tail, len(messages) - start, self._budget))

    def output_messages(self, output: Any) -> str:
        """``gen_ai.output.messages``: each choice's message (cached: it is in the next call's
        input) with its finish reason."""
        choices = getattr(output, "choices", None) or []
        data = [{**self.piece(c.message).data, "finish_reason": finish_reason(c.stop_reason)}
                for c in choices]
        return Redacted(truncate_json(data, self._budget))

    def tool_definitions(self, tools: Sequence[Any]) -> str:
        """``gen_ai.tool.definitions``, converted once for as long as the same tools are offered."""
        cached, text = self._tools
        if text and len(cached) == len(tools) and all(a is b for a, b in zip(cached, tools)):
            return Redacted(text)
        out = self.policy.content_json(tool_definitions(tools))
        self._tools = (tuple(tools), str.__str__(out))
        return out


# --- the provider's raw call (opt-in) ------------------------------------------------------------

# Where providers put the conversation in their request (Inspect's ModelCall.call_key says so for
# the ones it condenses): OpenAI chat and Anthropic "messages", Google "contents", OpenAI
# Responses "input".
_CONVERSATION_KEYS = ("messages", "contents", "input")
_ATTACHMENT = "attachment://"
_LEGACY_ATTACHMENT = "tc://"


def resolve_attachments(value: Any, attachments: Mapping[str, str]) -> Any:
    """``value`` with Inspect's ``attachment://<hash>`` references replaced by their content
    (what Inspect's own ``resolve_attachments`` does to a condensed ModelEvent.call: strings
    over 100 characters moved to the sample's attachments). Unknown references stay."""
    if isinstance(value, str):
        for prefix in (_ATTACHMENT, _LEGACY_ATTACHMENT):
            if value.startswith(prefix):
                return attachments.get(value[len(prefix):], value)
        return value
    if isinstance(value, dict):
        return {k: resolve_attachments(v, attachments) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_attachments(v, attachments) for v in value]
    return value


def _conversation_key(request: Mapping[str, Any]) -> str | None:
    for key in _CONVERSATION_KEYS:
        if isinstance(request.get(key), list):
            return key
    return None


def fit_call(request: Mapping[str, Any], attachments: Mapping[str, str],
             policy: ContentPolicy) -> str:
    """A raw provider request as JSON within the budget: headers dropped, attachments resolved,
    content-redacted, and its conversation list cut to the budget from the newest element back
    (the first kept, the middle marked) before the rest is serialised: only what is kept is ever
    resolved, redacted or serialised. Keys keep their order."""
    budget = policy.max_length

    def clean(value: Any) -> Any:
        return policy.redactor.content_data(without_headers(resolve_attachments(value, attachments)))

    key = _conversation_key(request)
    if key is None:
        return Redacted(truncate_json(clean(request), budget))
    items = request[key]
    others = clean({k: v for k, v in request.items() if k != key})
    fields = {k: to_json(v) for k, v in others.items()}
    room = max(budget - sum(len(k) + len(v) + 4 for k, v in fields.items()) - len(key) - 4,
               budget // 2)

    def piece(item: Any) -> Piece:
        data = clean(item)
        return Piece(to_json(data), data)

    head = [piece(items[0])] if items else []
    tail = (piece(items[i]) for i in range(len(items) - 1, 0, -1))
    fields[key] = fit(head, tail, len(items), room)
    text = "{" + ",".join(to_json(k) + ":" + fields[k] for k in request if k in fields) + "}"
    if len(text) <= budget:
        return Redacted(text)
    return Redacted(truncate_json(json.loads(text), budget))  # other fields too long (tools)
