"""inspect-otel: OpenTelemetry (GenAI semantic conventions) for Inspect AI evaluations."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inspect-otel")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
