"""The Collector-format OTLP file writer lives in the package (``inspect-otel export --to-file``);
the tests write their files with the same code."""

from inspect_otel.otlp_file import FileLogExporter, FileSpanExporter, otlp_file

__all__ = ["FileLogExporter", "FileSpanExporter", "otlp_file"]
