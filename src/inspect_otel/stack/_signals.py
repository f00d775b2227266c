"""SIGTERM handled like Ctrl-C, and signals held off while the stack kills its children."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


class Terminated(Exception):
    """SIGTERM arrived (raised in the main thread, as KeyboardInterrupt is for SIGINT)."""


STOP_SIGNALS = (KeyboardInterrupt, Terminated)


def install_sigterm_handler() -> Callable[[], None]:
    """Turn SIGTERM into an exception so cleanup runs as for Ctrl-C; returns an undo."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated()

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored inside (the last, quick clean-up must not be cut short)."""
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
