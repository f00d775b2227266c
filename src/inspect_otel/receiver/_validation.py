"""Values the spool keys, orders or stores as integers: checked before anything is stored.

The decode step refuses a span or record these functions find a problem with (a clear 4xx,
naming the attribute, never the value)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from inspect_otel import semconv as sc

MAX_ID_CHARS = 256  # inspect.run_id / inspect.eval_id


INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


# Ids the spool keys runs and tasks on (and the writer searches MLflow runs by, inside a quoted
# filter string: a quote or backslash there would make MLflow refuse every search for it).
ID_ATTRIBUTES = (sc.INSPECT_RUN_ID, sc.INSPECT_EVAL_ID)


_ID_BAD_CHARS = re.compile(r"['\\\x00-\x1f\x7f]")


# Integers the spool stores in INTEGER columns and MLflow uses as steps.
INTEGER_ATTRIBUTES = (sc.INSPECT_SAMPLE_ORDINAL, sc.INSPECT_SAMPLE_EPOCH, sc.INSPECT_SAMPLE_INDEX)



def _integer_problem(v: Any) -> str | None:
    if isinstance(v, bool):
        return "must be an integer, not a boolean"
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not (math.isfinite(v) and v.is_integer()):
            return "must be an integer"
        n = int(v)
    elif isinstance(v, str):
        try:
            n = int(v.strip())
        except ValueError:
            return "must be an integer"
    else:
        return "must be an integer"
    if not INT64_MIN <= n <= INT64_MAX:
        return "is out of the 64-bit integer range"
    return None



def value_problem(attrs: Mapping[str, Any], times_ns: Iterable[int] = ()) -> str | None:
    """Why a span or log record cannot be stored as sent (None when it can): a timestamp past
    int64 nanoseconds, an Inspect id of the wrong type or too long, an ordinal/epoch/index that is
    not a 64-bit integer. The message names the attribute, never the value."""
    if any(not 0 <= t <= INT64_MAX for t in times_ns):
        return "timestamps beyond the 64-bit nanosecond range"
    for attr in ID_ATTRIBUTES:
        v = attrs.get(attr)
        if v is None or v == "":
            continue
        if not isinstance(v, str):
            return f"{attr} must be a string"
        if len(v) > MAX_ID_CHARS:
            return f"{attr} is longer than {MAX_ID_CHARS} characters"
        if _ID_BAD_CHARS.search(v):
            return f"{attr} contains a quote, a backslash or a control character"
    for attr in INTEGER_ATTRIBUTES:
        v = attrs.get(attr)
        if v is not None:
            why = _integer_problem(v)
            if why:
                return f"{attr} {why}"
    return None
