"""The statistics against their references (scipy, statsmodels, Inspect) and the degenerate
cases, on tables built here (no I/O)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from inspect_otel.compare import CompareError, EpochRecord, EvalSource, EvalTable
from inspect_otel.compare._stats import compare_tables, holm, test_scorer as scorer_test


def table(scores: dict[str, dict[str, list[float | None]]], kind: str = "log",
          metadata: dict[str, dict] | None = None, **source) -> EvalTable:
    """{sample id: {name: [epoch values]}} -> an EvalTable."""
    records = []
    names: dict[str, None] = {}
    for sample_id, by_name in scores.items():
        epochs = max(len(v) for v in by_name.values())
        for e in range(epochs):
            values = {n: v[e] for n, v in by_name.items() if e < len(v)}
            names.update(dict.fromkeys(values))
            records.append(EpochRecord(sample_id, e + 1, values, trace_id=f"{sample_id}-{e}",
                                       metadata=(metadata or {}).get(sample_id, {}),
                                       total_tokens=10, total_time=1.0 + e))
    return EvalTable(EvalSource(kind=kind, label=kind, **source), tuple(records), tuple(names))


def paired(a: np.ndarray, b: np.ndarray, name: str = "s") -> tuple[EvalTable, EvalTable]:
    """Per-sample values (one epoch) -> two tables, the samples in array order (compare puts
    them in sample-id order before its bootstrap)."""
    return (table({f"x{i:04d}": {name: [float(v)]} for i, v in enumerate(a)}),
            table({f"x{i:04d}": {name: [float(v)]} for i, v in enumerate(b)}))


RNG = np.random.default_rng(7)


def test_paired_t_equals_scipy():
    a = RNG.normal(0.5, 0.2, 60)
    b = a + RNG.normal(0.05, 0.1, 60)
    r = compare_tables(*paired(a, b)).scorer("s")
    ref = stats.ttest_rel(b, a)
    ci = ref.confidence_interval(0.95)
    assert r.test == "paired t" and r.n == 60 and r.df == 59
    assert r.difference == pytest.approx(np.mean(b - a), rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert r.se == pytest.approx(np.std(b - a, ddof=1) / math.sqrt(60), rel=1e-12)
    assert r.correlation == pytest.approx(stats.pearsonr(a, b).statistic, rel=1e-12)
    # Miller sec. 5 with t quantiles: (t_{0.975} + t_{0.8}) * SE
    assert r.mde == pytest.approx((stats.t.ppf(0.975, 59) + stats.t.ppf(0.8, 59)) * r.se)
    assert r.bootstrap_ci_low < r.difference < r.bootstrap_ci_high


def test_epochs_are_averaged_first():
    """n counts samples; each sample's epoch values are averaged before the test."""
    base = {f"x{i}": {"s": [float(i % 2), 1.0, 0.0]} for i in range(10)}
    cand = {f"x{i}": {"s": [1.0, 1.0, float(i % 3 == 0)]} for i in range(10)}
    r = compare_tables(table(base), table(cand)).scorer("s")
    b = np.array([np.mean(v["s"]) for v in base.values()])
    c = np.array([np.mean(v["s"]) for v in cand.values()])
    assert r.n == 10 and r.epochs == 3
    assert r.p_value == pytest.approx(stats.ttest_rel(c, b).pvalue, rel=1e-12)


def test_epoch_order_does_not_change_the_mean():
    """Exactly rounded epoch means: the same epoch values in another order are identical."""
    values = [0.1, 0.7, 0.2, 1e-17, 0.3]
    base = table({f"x{i}": {"s": values} for i in range(5)})
    cand = table({f"x{i}": {"s": values[::-1]} for i in range(5)})
    r = compare_tables(base, cand).scorer("s")
    assert r.difference == 0.0 and r.p_value == 1.0 and (r.ci_low, r.ci_high) == (0.0, 0.0)


def test_exact_mcnemar_equals_statsmodels_and_binomtest():
    from statsmodels.stats.contingency_tables import mcnemar

    # 30 both right, 2 regressed (1 -> 0), 9 improved (0 -> 1), 19 both wrong
    a = np.array([1] * 30 + [1] * 2 + [0] * 9 + [0] * 19, dtype=float)
    b = np.array([1] * 30 + [0] * 2 + [1] * 9 + [0] * 19, dtype=float)
    r = compare_tables(*paired(a, b)).scorer("s")
    assert r.test == "exact McNemar" and (r.regressed_pairs, r.improved_pairs) == (2, 9)
    ref = mcnemar([[30, 2], [9, 19]], exact=True).pvalue
    assert r.p_value == pytest.approx(ref, rel=1e-12) == pytest.approx(0.0654296875)
    assert r.p_value == pytest.approx(stats.binomtest(9, 11, 0.5).pvalue, rel=1e-12)
    assert r.difference == pytest.approx(7 / 60)
    assert r.ci_low < 0 < r.ci_high  # p > alpha: the interval holds 0
    # the paired t is reported beside it, as scipy computes it
    ref_t = stats.ttest_rel(b, a)
    assert r.paired_t_p_value == pytest.approx(ref_t.pvalue, rel=1e-12)
    ci = ref_t.confidence_interval(0.95)
    assert (r.paired_t_ci_low, r.paired_t_ci_high) == pytest.approx((ci.low, ci.high), rel=1e-12)


@pytest.mark.parametrize("improved", range(0, 16))
def test_mcnemar_interval_agrees_with_its_p(improved):
    regressed = 15 - improved
    a = np.array([1.0] * regressed + [0.0] * improved + [1.0] * 20)
    b = np.array([0.0] * regressed + [1.0] * improved + [1.0] * 20)
    r = compare_tables(*paired(a, b)).scorer("s")
    excludes_zero = r.ci_low > 0 or r.ci_high < 0
    assert excludes_zero == (r.p_value < 0.05), (improved, r.p_value, r.ci_low, r.ci_high)


def test_holm_equals_statsmodels():
    from statsmodels.stats.multitest import multipletests

    base, cand = {}, {}
    for i in range(40):
        base[f"x{i}"] = {f"s{k}": [float(RNG.normal())] for k in range(4)}
        cand[f"x{i}"] = {f"s{k}": [base[f"x{i}"][f"s{k}"][0] + float(RNG.normal(0.1 * k, 0.5))]
                         for k in range(4)}
    c = compare_tables(table(base), table(cand))
    raw = [s.p_value for s in c.scorers]
    assert [s.p_adjusted for s in c.scorers] == pytest.approx(
        list(multipletests(raw, method="holm")[1]), rel=1e-12)
    assert [s.p_adjusted for s in c.scorers] != pytest.approx(
        list(multipletests(raw, method="holm-sidak")[1]), rel=1e-12)  # the library default


def test_clustered_se_equals_inspect_and_statsmodels():
    from statsmodels.regression.linear_model import OLS
    from inspect_ai.scorer import SampleScore, Score, stderr

    n = 90
    groups = [f"g{i % 7}" for i in range(n)]
    effect = {g: RNG.normal(0, 0.3) for g in set(groups)}
    a = RNG.normal(0.5, 0.2, n)
    b = a + np.array([effect[g] for g in groups]) + RNG.normal(0.05, 0.1, n)
    meta = {f"x{i}": {"cat": g} for i, g in enumerate(groups)}
    base = table({f"x{i}": {"s": [float(v)]} for i, v in enumerate(a)}, metadata=meta)
    cand = table({f"x{i}": {"s": [float(v)]} for i, v in enumerate(b)}, metadata=meta)
    r = compare_tables(base, cand, cluster="cat").scorer("s")
    d = b - a
    inspect_se = stderr(cluster="cat")([SampleScore(score=Score(value=float(x)), sample_id=i,
                                                    sample_metadata={"cat": g})
                                        for i, (x, g) in enumerate(zip(d, groups))])
    ols = OLS(d, np.ones_like(d)).fit(cov_type="cluster", cov_kwds={"groups": groups})
    assert r.test == "clustered t" and r.clusters == 7 and r.df == 6
    assert r.se == pytest.approx(inspect_se, rel=1e-12) == pytest.approx(ols.bse[0], rel=1e-9)
    assert r.p_value == pytest.approx(2 * stats.t.sf(abs(np.mean(d) / r.se), 6), rel=1e-12)
    half = stats.t.ppf(0.975, 6) * r.se
    assert (r.ci_low, r.ci_high) == (pytest.approx(np.mean(d) - half), pytest.approx(np.mean(d) + half))
    # clusters are resampled whole: the bootstrap interval is about as wide as the clustered one
    assert r.bootstrap_ci_high - r.bootstrap_ci_low > 0.5 * (r.ci_high - r.ci_low)


def test_bootstrap_is_seeded_and_is_scipys():
    a = RNG.normal(0.5, 0.2, 50)
    b = a + RNG.normal(0.05, 0.1, 50)
    first = compare_tables(*paired(a, b), seed=3).scorer("s")
    again = compare_tables(*paired(a, b), seed=3).scorer("s")
    other = compare_tables(*paired(a, b), seed=4).scorer("s")
    assert (first.bootstrap_ci_low, first.bootstrap_ci_high) == (again.bootstrap_ci_low,
                                                                   again.bootstrap_ci_high)
    assert first.bootstrap_ci_low != other.bootstrap_ci_low
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(y - x, axis=axis), paired=True,
                          n_resamples=2000, batch=200, method="percentile",
                          rng=np.random.default_rng(3)).confidence_interval
    assert (first.bootstrap_ci_low, first.bootstrap_ci_high) == pytest.approx((ref.low, ref.high))


def test_identical_results():
    a = RNG.integers(0, 2, 30).astype(float)
    for r in compare_tables(*paired(a, a)).scorers:
        assert (r.difference, r.p_value, r.ci_low, r.ci_high) == (0.0, 1.0, 0.0, 0.0)
        assert r.verdict == "no significant difference" and r.mde is None
    frac = RNG.random(30)
    r = compare_tables(*paired(frac, frac)).scorer("s")
    assert (r.test, r.p_value, r.ci_low, r.ci_high, r.p_adjusted) == ("paired t", 1.0, 0.0, 0.0, 1.0)
    assert (r.bootstrap_ci_low, r.bootstrap_ci_high) == (0.0, 0.0)


def test_one_sample():
    r = compare_tables(*paired(np.array([0.2]), np.array([0.7]))).scorer("s")
    assert r.n == 1 and r.difference == pytest.approx(0.5)
    assert r.p_value is None and r.ci_low is None and r.verdict == "not tested"
    assert "one paired sample" in r.note
    binary = compare_tables(*paired(np.array([0.0]), np.array([1.0]))).scorer("s")
    assert binary.test == "exact McNemar" and binary.p_value == 1.0  # one discordant pair


def test_same_change_everywhere_uses_the_sign_test():
    a = RNG.random(8)
    r = compare_tables(*paired(a, a + 0.25)).scorer("s")
    assert r.test == "sign test" and r.p_value == pytest.approx(2 * 0.5 ** 8)
    assert r.ci_low is None and r.verdict == "better" and "same amount" in r.note


def test_all_nan_scorer_is_reported_not_tested():
    base = table({f"x{i}": {"s": [1.0], "bad": [None, None]} for i in range(5)})
    cand = table({f"x{i}": {"s": [0.0], "bad": [None]} for i in range(5)})
    c = compare_tables(base, cand)
    bad = c.scorer("bad")
    assert (bad.n, bad.p_value, bad.test, bad.verdict) == (0, None, "none", "not tested")
    assert (bad.excluded_baseline, bad.excluded_candidate) == (10, 5)
    assert c.scorer("s").p_adjusted == c.scorer("s").p_value  # Holm over the tested one only
    json.dumps(c.to_dict(), allow_nan=False)


def test_nan_values_are_excluded_and_counted():
    base = table({f"x{i}": {"s": [1.0, None]} for i in range(6)})
    cand = table({f"x{i}": {"s": [None, None] if i == 0 else [0.0]} for i in range(6)})
    r = compare_tables(base, cand).scorer("s")
    assert r.n == 5 and r.unpaired == 1 and r.excluded_baseline == 6 and r.excluded_candidate == 2


def test_single_cluster():
    meta = {f"x{i}": {"cat": "only"} for i in range(10)}
    a = RNG.random(10)
    base = table({f"x{i}": {"s": [float(v)]} for i, v in enumerate(a)}, metadata=meta)
    cand = table({f"x{i}": {"s": [float(v) + 0.1 * (i % 3)]} for i, v in enumerate(a)},
                 metadata=meta)
    r = compare_tables(base, cand, cluster="cat").scorer("s")
    assert r.clusters == 1 and r.p_value is None and "one cluster" in r.note


def test_missing_cluster_key_is_an_error():
    meta = {"x0": {"cat": "a"}}
    base = table({f"x{i}": {"s": [1.0]} for i in range(3)}, metadata=meta)
    with pytest.raises(CompareError, match="2 of 3 paired samples have no 'cat'"):
        compare_tables(base, base, cluster="cat")


def test_lower_is_better_turns_the_verdict():
    a = RNG.random(40)
    up = compare_tables(*paired(a, a + RNG.normal(0.3, 0.1, 40)), lower_is_better=["s"])
    assert up.scorer("s").verdict == "worse" and up.regressions == [up.scorer("s")]
    down = compare_tables(*paired(a, a - RNG.normal(0.3, 0.1, 40)))
    assert down.scorer("s").verdict == "worse"


def test_scorer_selection():
    base = table({"x": {"m": [1.0], "q/a": [1.0], "q/b": [0.0]}})
    cand = table({"x": {"m": [1.0], "q/a": [0.0], "q/b": [0.0], "new": [1.0]}})
    with pytest.raises(CompareError, match="scorer 'new' is only in the candidate.*m, q/a, q/b"):
        compare_tables(base, cand)
    c = compare_tables(base, cand, scorers=["q"])
    assert [s.scorer for s in c.scorers] == ["q/a", "q/b"]
    with pytest.raises(CompareError, match="no scorer named 'z'"):
        compare_tables(base, cand, scorers=["z"])


def test_unmatched_samples_are_listed():
    base = table({"a": {"s": [1.0]}, "b": {"s": [1.0]}, "only-base": {"s": [0.0]}})
    cand = table({"a": {"s": [1.0]}, "b": {"s": [0.0]}, "only-cand": {"s": [1.0]}})
    c = compare_tables(base, cand)
    assert c.unmatched_baseline == ["only-base"] and c.unmatched_candidate == ["only-cand"]
    assert {r.sample_id for r in c.rows} == {"a", "b"}
    with pytest.raises(CompareError, match="no common samples"):
        compare_tables(table({"a": {"s": [1.0]}}), table({"b": {"s": [1.0]}}))


def test_false_positive_rate_with_epochs():
    """No real difference, 100 questions x 5 epochs, per-question success probabilities from
    Beta(0.3, 0.3) for each model (the simulation of the issue): pairing epoch k with epoch k
    rejects ~28% of the time; averaging epochs first keeps the nominal 5%."""
    rng = np.random.default_rng(2024)
    rejections = 0
    reps = 300
    for _ in range(reps):
        pa, pb = rng.beta(0.3, 0.3, 100), rng.beta(0.3, 0.3, 100)
        a = (rng.random((5, 100)) < pa).mean(axis=0)
        b = (rng.random((5, 100)) < pb).mean(axis=0)
        r = scorer_test("s", a, b, epochs=(5, 5), resamples=100)
        rejections += r.p_value < 0.05
    assert 0.02 <= rejections / reps <= 0.09, rejections / reps


def test_holm_verdicts_without_p():
    r = scorer_test("s", np.array([]), np.array([]))
    assert holm([r], 0.05)[0].verdict == "not tested"


def test_bad_arguments():
    base = table({"x": {"s": [1.0]}})
    with pytest.raises(CompareError, match="alpha"):
        compare_tables(base, base, alpha=0)
    with pytest.raises(CompareError, match="--lower-is-better"):
        compare_tables(base, base, lower_is_better=["nope"])
