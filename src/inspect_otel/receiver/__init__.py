"""The MLflow-side OTLP receiver (needs the ``mlflow`` extra).

``inspect-otel receiver`` runs it; ``Receiver(ReceiverConfig(...)).start()`` embeds it.
Modules: ``_decode`` (bodies -> protobuf, 4xx), ``_spool`` (durable sqlite state),
``_writer`` (applies the spool to MLflow), ``_mapping`` (attributes -> MLflow, pure),
``_server`` (HTTP and gRPC front ends), ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import Receiver, ReceiverConfig

__all__ = ["Receiver", "ReceiverConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _server

        return getattr(_server, name)
    raise AttributeError(name)
