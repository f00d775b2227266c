"""OTLP attribute values as python, and the small conversions every mapping uses.

Decoding is bounded (``MAX_VALUE_DEPTH``, ``MAX_ATTRIBUTE_JSON_DEPTH``): a sender controls
these values, so nothing here recurses or parses without a limit."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from inspect_otel import semconv as sc

from ._decode import json_depth_exceeds

# The only instrumentation scope the hook emits under.
INSPECT_SCOPE = sc.INSTRUMENTATION_NAME


# Limits on what a sender controls (see docs/receiver.md, "Bad input").
MAX_VALUE_DEPTH = 16  # nested kvlist/array levels in one attribute value


MAX_ATTRIBUTE_JSON_DEPTH = 32  # nesting of JSON carried in string attributes (task args, usage)



class ValueTooDeep(ValueError):
    """An attribute value nests kvlists/arrays deeper than ``MAX_VALUE_DEPTH``."""



def any_value(v: Any, depth: int = 0) -> Any:
    """Decode an OTLP ``AnyValue`` protobuf message into a python value."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value"):
        if depth >= MAX_VALUE_DEPTH:
            raise ValueTooDeep(f"attribute values nested deeper than {MAX_VALUE_DEPTH} levels")
        if kind == "array_value":
            return [any_value(x, depth + 1) for x in v.array_value.values]
        return {kv.key: any_value(kv.value, depth + 1) for kv in v.kvlist_value.values}
    return getattr(v, kind)



def attributes(kvs: Iterable[Any]) -> dict[str, Any]:
    """Attributes as a dict; raises ValueTooDeep (a ValueError) for over-nested values."""
    return {kv.key: any_value(kv.value) for kv in kvs}



def is_inspect(scope_name: str, attrs: Mapping[str, Any]) -> bool:
    """True for telemetry the hook emitted (its scope) or that carries ``inspect.*`` attributes."""
    return scope_name == INSPECT_SCOPE or any(k.startswith("inspect.") for k in attrs)



def as_num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None



def as_int(v: Any) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v  # exact: going through float would round large ids and ordinals
    f = as_num(v)
    return int(f) if f is not None else None



class Unparsed:
    """What ``json_value`` returns for text that is not usable JSON structure."""


UNPARSED = Unparsed()



def json_value(v: Any) -> Any:
    """A JSON-carrying attribute as python data; ``UNPARSED`` when the text is not JSON or nests
    deeper than ``MAX_ATTRIBUTE_JSON_DEPTH`` (checked before parsing, so no input recurses)."""
    if isinstance(v, str):
        if json_depth_exceeds(v, MAX_ATTRIBUTE_JSON_DEPTH):
            return UNPARSED
        try:
            return json.loads(v)
        except (ValueError, RecursionError):
            return UNPARSED
    return v



def jsonable(o: Any) -> Any:
    return o.hex() if isinstance(o, (bytes, bytearray)) else str(o)



def as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        return ",".join(as_text(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, separators=(",", ":"), default=jsonable)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)



def compact_json(obj: Any) -> str:
    # ensure_ascii=False: MLflow limits tag values in characters, and escapes would count 6 each
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def no_nul(v: Any) -> Any:
    """``v`` without NUL characters in any string, also inside lists and dicts: MLflow parses the
    root's inputs/outputs JSON into text columns (the model name, the previews), where an escaped
    NUL is a NUL again."""
    if isinstance(v, str):
        return v.replace("\x00", "")
    if isinstance(v, (list, tuple)):
        return [no_nul(x) for x in v]
    if isinstance(v, dict):
        return {no_nul(k): no_nul(x) for k, x in v.items()}
    return v
