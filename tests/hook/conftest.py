from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.capture import CapturedRun, capture


@pytest.fixture(scope="module")
def content_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedRun]:
    """The calculator eval (2 epochs, errors, retries, tools, judge) with content capture on."""
    yield from capture(
        tmp_path_factory.mktemp("content"),
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT"},
    )


@pytest.fixture(scope="module")
def private_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedRun]:
    """The same eval with default settings: no content capture."""
    yield from capture(tmp_path_factory.mktemp("private"), {}, epochs=1)
