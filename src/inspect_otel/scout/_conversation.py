"""A long conversation, rebuilt from the trace.

The hook fits a long conversation to the attribute budget (``inspect_otel.conversation``): the
sample root's ``inspect.sample.messages`` and each chat span's ``gen_ai.input.messages`` keep their
head (system messages, the first user turn) and their newest messages, and mark the middle with
``...[truncated N items]``. Nothing is lost from the trace, though: every message a model call
saw was the newest in some call's input, or is that call's answer. So the conversation is the
root's head, then each model call's new input messages and its answer, in order, then the root's
kept tail (each message once, by Inspect's message id); and each cut call's input is the
conversation up to its answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from inspect_ai.event import ModelEvent
from inspect_ai.model import ChatMessage

from ..content import TRUNCATION_ITEMS_MARKER
from ._messages import json_value, messages_from_semconv

_MARKER = re.compile(re.escape(TRUNCATION_ITEMS_MARKER).replace(r"\{n\}", r"\d+"))


def _marker_at(items: Any) -> int | None:
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, str) and _MARKER.fullmatch(item):
                return index
    return None


def was_cut(value: Any) -> bool:
    """Whether a message-list attribute was fitted to the budget (holds the items marker)."""
    return _marker_at(json_value(value)) is not None


def rebuild(root_messages: Any, seed: str, calls: Sequence[ModelEvent],
            cut: set[int]) -> list[ChatMessage]:
    """The whole conversation from the root's fitted list and the sample's model calls (outside
    scorers, in order); the input of each call in ``cut`` (by ``id()``) becomes the conversation
    up to its answer (module docstring)."""
    items = json_value(root_messages)
    at = _marker_at(items)
    if not isinstance(items, list) or at is None:
        head, tail = messages_from_semconv(items, seed), []
    else:
        head = messages_from_semconv(items[:at], seed)
        tail = messages_from_semconv(items[at + 1:], f"{seed}/tail")
    conversation: dict[str, ChatMessage] = {m.id: m for m in head if m.id}
    root_system = any(m.role == "system" for m in head)
    answered_at: list[int] = []
    for call in calls:
        for message in call.input:
            if message.role != "system" and message.id not in conversation:
                conversation[message.id] = message
        answered_at.append(len(conversation))
        for choice in call.output.choices[:1]:
            conversation.setdefault(choice.message.id, choice.message)
    for message in tail:
        conversation.setdefault(message.id, message)
    messages = list(conversation.values())
    for call, position in zip(calls, answered_at):
        if id(call) in cut:
            prefix = messages[:position]
            own_system = [] if root_system else [m for m in call.input if m.role == "system"]
            call.input = [*own_system, *prefix]
    return messages
