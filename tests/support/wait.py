"""Bounded polling for a condition: tests wait for states, never assert on timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float = 90.0, what: str = "condition",
             interval: float = 0.25, fatal: tuple[type[BaseException], ...] = ()) -> Any:
    """Return ``cond()``'s first truthy value, or fail after ``timeout`` seconds.

    Exceptions from ``cond`` count as "not yet" (a server still starting), except ``fatal`` ones,
    which end the wait at once (e.g. the process being waited on died)."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = cond()
            if value:
                return value
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))
