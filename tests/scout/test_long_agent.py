"""Scout's reading of an agent's log and the Scout import of its traces are the same, except for
true secrets (issue 25). The long agent reads real source code (full of the words password,
token, session, cookie, auth and key), looks up its settings with `lookup(key="settings")` and
gets back a config in which a secret of every high-confidence shape is planted. With the budget
raised so that nothing is cut, every message and event of the import equals Scout's own reading
of the .eval log, but for the lines that hold a planted secret, which are redacted. With the
default budget the conversation is fitted on every span (the first turn, a marker, the newest
messages), and the import rebuilds it whole from the spans: the same again."""

from __future__ import annotations

import difflib
import json

import pytest

from inspect_otel.scout import ImportReport, otlp_transcripts
from tests.scout.support import (
    COMPARED_EVENTS,
    event_view,
    import_into,
    message_view,
    produce,
    read_transcripts,
)
from tests.support.long_agent import CORPUS_LITERALS
from tests.support.planted_secrets import SHAPES, USER_PATTERN

SAMPLES = 2
# (turns, INSPECT_OTEL_MAX_ATTRIBUTE_LENGTH): nothing cut; cut on every long span and the root
CASES = {"whole": (8, 1_000_000), "fitted": (30, 16_384)}


@pytest.fixture(scope="module", params=sorted(CASES))
def both(request, tmp_path_factory):
    turns, budget = CASES[request.param]
    root = tmp_path_factory.mktemp(f"scout-long-agent-{request.param}")
    produce(root, "--long-agent", str(turns), "--samples", str(SAMPLES), "--jsonl",
            str(root / "otlp.jsonl"), "--max-attribute-length", str(budget),
            "--redact-pattern", USER_PATTERN)
    report = ImportReport()
    import_into(root / "db", otlp_transcripts([root / "otlp.jsonl"], report=report))
    assert report.transcripts == SAMPLES and not report.problems
    if request.param == "fitted":  # the spans really were fitted
        text = (root / "otlp.jsonl").read_text()
        assert "...[truncated " in text
    return read_transcripts(root / "db"), read_transcripts(root / "logs"), turns


def _only_secrets_differ(ours: str, theirs: str) -> int:
    """Each run of lines that differs held planted secrets (or one of the corpus's literal
    values, CORPUS_LITERALS), which are gone (a PEM block of three lines becomes one); returns
    how many planted secrets the runs held."""
    mine, yours = ours.splitlines(), theirs.splitlines()
    runs = [op for op in difflib.SequenceMatcher(a=mine, b=yours, autojunk=False).get_opcodes()
            if op[0] != "equal"]
    for _, i1, i2, j1, j2 in runs:
        got, expected = "\n".join(mine[i1:i2]), "\n".join(yours[j1:j2])
        assert any(secret in expected for secret in (*SHAPES.values(), *CORPUS_LITERALS)), (
            got, expected)
        assert not any(secret in got for secret in SHAPES.values()) and "[REDACTED]" in got
    return sum(secret in "\n".join(yours[j1:j2]) for _, _, _, j1, j2 in runs
               for secret in SHAPES.values())


def test_the_import_is_scouts_reading_but_for_true_secrets(both):
    ours, scouts, turns = both
    assert sorted(ours) == sorted(scouts)
    redacted = 0
    for tid, expected in scouts.items():
        got = ours[tid]
        assert len(got.messages) == len(expected.messages) == 2 * turns + 1
        for mine, theirs in zip(got.messages, expected.messages):
            a, b = message_view(mine), message_view(theirs)
            if a != b:  # only the settings' tool result may differ, and only at its secrets
                assert theirs.role == "tool", (a, b)
                assert a[:2] == b[:2] and a[3:] == b[3:]
                redacted += _only_secrets_differ(a[2], b[2])
        events = [event_view(e) for e in got.events if e.event in COMPARED_EVENTS]
        reference = [event_view(e) for e in expected.events if e.event in COMPARED_EVENTS]
        assert len(events) == len(reference)
        for mine, theirs in zip(events, reference):
            if mine != theirs:
                assert theirs[0] == "tool", theirs
                assert json.loads(json.dumps(mine[4])) == json.loads(json.dumps(theirs[4]))
                _only_secrets_differ(mine[5], theirs[5])
    # every planted secret, and none of the real code: the source chunks came through unchanged
    assert redacted == SAMPLES * len(SHAPES)
