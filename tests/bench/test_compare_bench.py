"""Keeps bench/compare.py from rotting: tiny logs through Inspect's writer, one measurement of
each kind in-process, the table renders. No timing assertions."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import compare as bench_compare  # noqa: E402


def test_compare_bench_smoke(tmp_path: Path) -> None:
    a, b = bench_compare.make_logs(tmp_path, samples=6, epochs=2)
    runs = [bench_compare.child(mode, a, b) for mode in ("read_eval_log", "compare_evals",
                                                         "compare_evals --cluster")]
    assert runs[0]["samples"] == 24
    assert {k: v[0] for k, v in runs[1]["scorers"].items()} == {
        "match": 6, "rubric/accuracy": 6, "rubric/style": 6}
    for r in runs:
        r["wall_s"] = r["work_s"]
    text = bench_compare.table({"runs": runs})
    assert "| compare_evals |" in text and "x |" in text
