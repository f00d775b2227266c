"""The collector's attribute truncation leaves JSON-valued attributes whole (issue 10, item 5).

``truncate_all`` cuts a string at a byte count without a marker, which turns JSON into invalid
JSON. The config parks the JSON-valued attributes in the per-item ``cache``, truncates the rest and
restores them; this checks that the key pattern covers exactly the hook's JSON attributes, in every
context that truncates traces and logs, in that order. (No collector runs here: static check.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from inspect_otel import semconv as sc

CONFIG = Path(__file__).resolve().parents[2] / "otel-collector" / "config.yaml"
_CALL = re.compile(r'^(\w+)\((\w+), (.*)\)$')


def _contexts():
    processor = yaml.safe_load(CONFIG.read_text())["processors"]["transform/truncate"]
    for group in ("trace_statements", "log_statements"):
        for entry in processor[group]:
            if entry["context"] != "resource":
                yield entry["context"], entry["statements"]


@pytest.mark.parametrize("context,statements", list(_contexts()))
def test_json_attributes_are_parked_truncated_around_and_restored(context, statements):
    calls = [_CALL.match(s).groups() for s in statements]
    assert [(c[0], c[1]) for c in calls] == [
        ("merge_maps", "cache"), ("keep_matching_keys", "cache"),
        ("delete_matching_keys", "attributes"), ("truncate_all", "attributes"),
        ("merge_maps", "attributes"),
    ], context
    assert calls[0][2] == 'attributes, "upsert"' and calls[4][2] == 'cache, "upsert"'
    keep, delete = (json.loads(c[2]) for c in calls[1:3])  # the OTTL string literals
    assert keep == delete
    pattern = re.compile(keep)
    assert all(pattern.fullmatch(key) for key in sc.JSON_ATTRIBUTES)
    plain = (sc.INSPECT_SAMPLE_INPUT, sc.INSPECT_SAMPLE_OUTPUT, sc.GEN_AI_EVALUATION_EXPLANATION,
             sc.INSPECT_ERROR_MESSAGE, sc.INSPECT_SANDBOX_OUTPUT, sc.GEN_AI_TOOL_NAME,
             "gen_ai.input.messages.extra", "xgen_ai.output.messages")
    assert not any(pattern.search(key) for key in plain)
    assert int(calls[3][2]) == 65536
