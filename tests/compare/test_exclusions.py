"""Every sample compare leaves out is named with its reason, and the samples are put in one order
before the bootstrap resamples them (tables built here, no I/O; the e2e tests check both
readers)."""

from __future__ import annotations

import json
import random

import numpy as np

from inspect_otel.compare import EpochRecord, EvalSource, EvalTable
from inspect_otel.compare._pairing import sample_order
from inspect_otel.compare._report import render
from inspect_otel.compare._stats import compare_tables
from tests.compare.test_stats import table


def _side(samples: dict[str, list[tuple[str, dict[str, float | None]]]]) -> EvalTable:
    """{sample id: [(status, scores) per epoch]} -> a table."""
    records = [EpochRecord(sample_id, epoch + 1, scores, status=status)
               for sample_id, epochs in samples.items()
               for epoch, (status, scores) in enumerate(epochs)]
    names = tuple(dict.fromkeys(n for r in records for n in r.scores))
    return EvalTable(EvalSource(kind="log", label="x"), tuple(records), names)


OK = "success"
BASE = _side({
    "1": [(OK, {"m": 1.0, "q": 0.5})],
    "2": [("error", {})],
    "3": [(OK, {"m": 1.0, "q": None})],
    "4": [("error", {})],
    "5": [(OK, {"m": 0.0, "q": 0.0})],
    "10": [(OK, {"m": 1.0, "q": 1.0})],
    "11": [(OK, {"m": 1.0, "q": 1.0}), ("error", {})],  # one epoch lost: still compared
})
CAND = _side({
    "1": [(OK, {"m": 0.0, "q": 0.5})],
    "2": [("error", {})],
    "3": [(OK, {"m": 0.0})],
    "4": [(OK, {"m": 1.0, "q": 1.0})],
    "6": [(OK, {"m": 1.0, "q": 1.0})],
    "10": [("limit", {})],
    "11": [(OK, {"m": 1.0, "q": 0.0})],
})


def test_every_left_out_sample_is_named_with_its_reason():
    c = compare_tables(BASE, CAND)
    got = [(e.sample_id, e.scorers, e.reason, e.baseline, e.candidate) for e in c.excluded]
    assert got == [
        ("2", None, "errored in both", "errored", "errored"),
        ("3", ("q",), "no numeric score in the baseline; no score in the "
                      "candidate", "non_numeric", "no_score"),
        ("4", None, "errored in the baseline", "errored", "scored"),
        ("5", None, "only in the baseline", "present", "absent"),
        ("6", None, "only in the candidate", "absent", "present"),
        ("10", None, "hit a limit in the candidate", "scored", "limit"),
    ]
    assert c.matched == 6 and c.unmatched_baseline == ["5"] and c.unmatched_candidate == ["6"]
    assert [e.sample_id for e in c.excluded_everywhere] == ["2", "4", "10"]
    assert c.scorer("m").n == 3 and c.scorer("q").n == 2  # 1, 3, 11 / 1, 11
    assert c.scorer("m").unpaired == 2  # 4 and 10: a value on one side only

    data = json.loads(json.dumps(c.to_dict(), allow_nan=False))
    assert data["matched"] == 6
    assert data["excluded"][0] == {"sample_id": "2", "reason": "errored in both",
                                   "baseline": "errored", "candidate": "errored",
                                   "scorers": None}
    assert data["excluded"][1]["scorers"] == ["q"]

    text = render(c)
    assert ("samples: 6 matched, 1 only in the baseline, 1 only in the candidate; 3 matched "
            "left out of every test, 1 left out of some (why: below)") in text
    section = text.split("Samples left out of the tests, and why:\n", 1)[1].split("\n\n")[0]
    assert section.splitlines() == [
        "  every scorer: errored in both (1): 2",
        "  every scorer: errored in the baseline (1): 4",
        "  every scorer: only in the baseline (1): 5",
        "  every scorer: only in the candidate (1): 6",
        "  every scorer: hit a limit in the candidate (1): 10",
        "  q: no numeric score in the baseline; no score in the candidate (1): 3",
    ]


def test_nothing_left_out_says_nothing():
    base = table({f"x{i}": {"s": [float(i % 2)]} for i in range(6)})
    cand = table({f"x{i}": {"s": [float(i % 3 == 0)]} for i in range(6)})
    c = compare_tables(base, cand)
    assert c.excluded == [] and c.matched == 6
    text = render(c)
    assert "samples: 6 matched, 0 only in the baseline, 0 only in the candidate\n" in text
    assert "left out" not in text


def test_many_left_out_for_one_reason_are_listed_in_short():
    base = table({f"x{i:02d}": {"s": [1.0], "n": [None]} for i in range(30)})
    cand = table({f"x{i:02d}": {"s": [0.0], "n": [None]} for i in range(30)})
    c = compare_tables(base, cand)
    assert len(c.excluded) == 30 and {e.scorers for e in c.excluded} == {("n",)}
    assert ("  n: no numeric score in both (30): x00, x01, x02, x03, x04, x05, x06, x07, x08, "
            "x09, x10, x11, x12, x13, x14, x15, x16, x17, x18, x19, ... (10 more)") in render(c)


def test_natural_sample_order():
    ids = ["10", "2", "b", "1", "a", "02", "x10", "x9"]
    assert sorted(ids, key=sample_order) == ["1", "02", "2", "10", "a", "b", "x10", "x9"]


def test_the_order_records_arrive_in_changes_no_number():
    """The bootstrap resamples by position: the same samples handed over in any order (as a log
    and the receiver's table do) must give the same interval, and every other number."""
    rng = np.random.default_rng(3)
    base = {str(i): {"s": [float(v)], "t": [float(rng.normal())]}
            for i, v in enumerate(rng.normal(0.5, 0.2, 40))}
    cand = {k: {"s": [v["s"][0] + float(rng.normal(0.05, 0.2))], "t": [float(rng.normal())]}
            for k, v in base.items()}
    ordered = compare_tables(table(base), table(cand)).to_dict()
    assert [s["bootstrap_ci_low"] is not None for s in ordered["scorers"]] == [True, True]
    for seed in range(3):
        shuffled = [table(base), table(cand)]
        for i, t in enumerate(shuffled):
            records = list(t.records)
            random.Random(seed + 10 * i).shuffle(records)
            shuffled[i] = EvalTable(t.source, tuple(records), t.names)
        assert compare_tables(*shuffled).to_dict() == ordered
