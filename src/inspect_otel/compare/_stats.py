"""Paired, epoch-aware statistics over two tables of sample x epoch records (pure: no I/O).

The method follows E. Miller, "Adding Error Bars to Evals" (arXiv 2411.00640):

- samples are paired by id and each sample's epochs are averaged first, so ``n`` is the number of
  samples, never samples x epochs (epochs of one sample are not independent evidence);
- the difference is the mean of the paired differences, its standard error sd(d)/sqrt(n), with a
  t(n-1) interval and p-value (``scipy.stats.ttest_rel``);
- binary scores with one epoch use the exact McNemar test (a binomial test on the discordant
  pairs, ``scipy.stats.binomtest``) and the matching exact interval, so p and CI always agree;
- with a cluster key, the standard error is Inspect's own ``stderr(cluster=...)`` of the paired
  differences, with t(C-1);
- Holm's correction across every scorer tested (``statsmodels`` ``multipletests``);
- a seeded paired bootstrap interval (``scipy.stats.bootstrap``; clusters resampled whole when
  clustering) as a cross-check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from ._pairing import SideSample, by_sample, exclusions
from ._types import (
    CompareError,
    Comparison,
    EpochRecord,
    EvalTable,
    SampleRow,
    ScorerResult,
    SideSummary,
    check_options,
)

POWER = 0.8
DEFAULT_RESAMPLES = 2000
_BOOTSTRAP_BATCH = 200  # resamples per batch: bounds memory at n x batch floats


def _epoch_mean(values: Sequence[float]) -> float:
    # fsum: an exactly rounded sum, so the same epoch values in another order give the same mean
    return math.fsum(values) / len(values)


def select_scorers(baseline: EvalTable, candidate: EvalTable,
                   wanted: Sequence[str] | None) -> list[str]:
    """The evaluation names to test. A name present on one side only is an error; so is a
    requested name on neither. ``scorer`` selects all its ``scorer/key`` names too."""
    base, cand = set(baseline.names), set(candidate.names)
    if wanted:
        chosen: list[str] = []
        for name in wanted:
            matches = sorted(n for n in base | cand if n == name or n.startswith(name + "/"))
            if not matches:
                raise CompareError(f"no scorer named {name!r} (scorers: "
                                   f"{', '.join(sorted(base | cand)) or 'none'})")
            chosen += [m for m in matches if m not in chosen]
    else:
        chosen = sorted(base | cand)
    for name in chosen:
        if name not in base or name not in cand:
            side = "candidate" if name in cand else "baseline"
            common = sorted(base & cand)
            raise CompareError(
                f"scorer {name!r} is only in the {side}; choose common scorers with --scorer "
                f"({', '.join(common) if common else 'there are none'})")
    if not chosen:
        raise CompareError("neither side has any scores to compare")
    return chosen


def compare_tables(baseline: EvalTable, candidate: EvalTable, *,
                   scorers: Sequence[str] | None = None, alpha: float = 0.05,
                   cluster: str | None = None, lower_is_better: Iterable[str] = (),
                   seed: int = 0, resamples: int = DEFAULT_RESAMPLES) -> Comparison:
    check_options(alpha, resamples)
    names = select_scorers(baseline, candidate, scorers)
    lower = set(lower_is_better)
    unknown = sorted(n for n in lower if n not in names
                     and not any(x.startswith(n + "/") for x in names))
    if unknown:
        raise CompareError(f"--lower-is-better names no compared scorer: {', '.join(unknown)}")
    # in sample order (by_sample): the bootstrap resamples by position, so every source must
    # hand the same samples over in the same order
    base, cand = by_sample(baseline.records), by_sample(candidate.records)
    common = [s for s in base if s in cand]
    if not common:
        raise CompareError(f"no common samples: the baseline has {len(base)} sample ids, the "
                           f"candidate {len(cand)}, none shared")
    clusters = _cluster_ids(cluster, common, base, cand, baseline, candidate) if cluster else {}

    results: list[ScorerResult] = []
    rows: list[SampleRow] = []
    for name in names:
        higher = not (name in lower or name.split("/", 1)[0] in lower)
        b_vals, c_vals, ids_, b_k, c_k = [], [], [], 0, 0
        unpaired = 0
        for sample_id in common:
            b, c = base[sample_id], cand[sample_id]
            bv, cv = b.values.get(name), c.values.get(name)
            b_mean = _epoch_mean(bv) if bv else None
            c_mean = _epoch_mean(cv) if cv else None
            has_any = name in b.values or name in c.values or name in b.excluded \
                or name in c.excluded
            if not has_any:
                continue
            rows.append(SampleRow(
                sample_id=sample_id, scorer=name, baseline=b_mean, candidate=c_mean,
                difference=(c_mean - b_mean) if b_mean is not None and c_mean is not None else None,
                baseline_epochs=len(bv or ()), candidate_epochs=len(cv or ()),
                cluster=clusters.get(sample_id), baseline_trace_id=b.trace_id,
                candidate_trace_id=c.trace_id,
            ))
            if b_mean is None or c_mean is None:
                unpaired += (b_mean is None) != (c_mean is None)
                continue
            b_vals.append(b_mean)
            c_vals.append(c_mean)
            ids_.append(sample_id)
            b_k, c_k = max(b_k, len(bv)), max(c_k, len(cv))
        result = test_scorer(
            name, np.asarray(b_vals, dtype=float), np.asarray(c_vals, dtype=float),
            alpha=alpha, clusters=[clusters[i] for i in ids_] if cluster else None,
            cluster_key=cluster, epochs=(b_k, c_k), seed=seed, resamples=resamples,
        )
        results.append(replace(
            result, higher_is_better=higher, unpaired=unpaired,
            excluded_baseline=sum(base[s].excluded.get(name, 0) for s in base),
            excluded_candidate=sum(cand[s].excluded.get(name, 0) for s in cand),
        ))
    results = holm(results, alpha)
    return Comparison(
        baseline=baseline.source, candidate=candidate.source, alpha=alpha, cluster=cluster,
        scorers=results, rows=rows,
        unmatched_baseline=[s for s in base if s not in cand],
        unmatched_candidate=[s for s in cand if s not in base],
        baseline_summary=summarize(baseline.records),
        candidate_summary=summarize(candidate.records),
        seed=seed, resamples=resamples, matched=len(common),
        excluded=exclusions(base, cand, names),
    )


def _cluster_ids(key: str, common: list[str], base: Mapping[str, SideSample],
                 cand: Mapping[str, SideSample], baseline: EvalTable,
                 candidate: EvalTable) -> dict[str, Any]:
    for table in (baseline, candidate):
        keys = table.source.metadata_keys
        if keys is not None and key not in keys:
            held = f"only {', '.join(keys)}" if keys else "no sample metadata"
            raise CompareError(
                f"--cluster {key}: MLflow run {table.source.mlflow_run_id} carries {held} (the "
                "hook sends metadata with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true "
                f"or INSPECT_OTEL_SAMPLE_METADATA_KEYS={key})")
    ids: dict[str, Any] = {}
    missing = []
    for sample_id in common:
        value = base[sample_id].metadata.get(key, cand[sample_id].metadata.get(key))
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing.append(sample_id)
        else:
            ids[sample_id] = value
    if missing:
        raise CompareError(f"--cluster {key}: {len(missing)} of {len(common)} paired samples have "
                           f"no {key!r} in their metadata (e.g. {missing[0]!r})")
    return ids


# --- one scorer ------------------------------------------------------------------------------------
def test_scorer(name: str, baseline: np.ndarray, candidate: np.ndarray, *, alpha: float = 0.05,
                clusters: Sequence[Any] | None = None, cluster_key: str | None = None,
                epochs: tuple[int, int] = (1, 1), seed: int = 0,
                resamples: int = DEFAULT_RESAMPLES) -> ScorerResult:
    """Paired test of one scorer over per-sample (epoch-averaged) scores, aligned by index."""
    n = len(baseline)
    common = dict(scorer=name, n=n, epochs=max(epochs), baseline_epochs=epochs[0],
                  candidate_epochs=epochs[1])
    if n == 0:
        return ScorerResult(**common, baseline_mean=None, candidate_mean=None, difference=None,
                            ci_low=None, ci_high=None, p_value=None, p_adjusted=None,
                            test="none", note="no sample has a numeric score on both sides")
    common.update(score_min=float(min(np.min(baseline), np.min(candidate))),
                  score_max=float(max(np.max(baseline), np.max(candidate))))
    d = candidate - baseline
    diff = float(np.mean(d))
    means = dict(baseline_mean=float(np.mean(baseline)), candidate_mean=float(np.mean(candidate)),
                 difference=diff, correlation=_correlation(baseline, candidate))
    binary = epochs == (1, 1) and _is_binary(baseline) and _is_binary(candidate)
    discordant = {}
    if binary:
        discordant = dict(regressed_pairs=int(np.sum(d < 0)), improved_pairs=int(np.sum(d > 0)))
    # "The same change for every sample" up to floating-point rounding (a + 0.25 - a is not
    # always 0.25): t is undefined there, and rounding noise must not pass for evidence.
    tolerance = 1e-12 * max(1.0, float(np.max(np.abs(baseline))),
                            float(np.max(np.abs(candidate))))
    constant = float(np.ptp(d)) <= tolerance
    units = n
    if clusters is not None:
        units = len(set(clusters))
        common.update(clusters=units)
    test = "clustered t" if clusters is not None else (
        "exact McNemar" if binary else "paired t")
    if constant and abs(diff) <= tolerance:
        # identical results: nothing to test against, nothing changed
        return ScorerResult(**common, **means, **discordant, ci_low=diff, ci_high=diff,
                            p_value=1.0, p_adjusted=None, test=test, se=0.0,
                            df=units - 1 if units > 1 else None,
                            bootstrap_ci_low=diff, bootstrap_ci_high=diff)
    if constant and not binary and units > 1:
        # Every sample moved by the same amount: no variance for t. The exact sign test over the
        # independent units still gives a valid p; no honest interval exists.
        p = float(stats.binomtest(units, units, 0.5).pvalue)
        return ScorerResult(**common, **means, ci_low=None, ci_high=None, p_value=p,
                            p_adjusted=None, test="sign test", se=0.0, df=units - 1,
                            bootstrap_ci_low=diff, bootstrap_ci_high=diff,
                            note="every paired sample changed by the same amount: no variance "
                                 "for t, p from the exact sign test")

    if clusters is not None:
        groups = list(clusters)
        if units < 2:
            return ScorerResult(**common, **means, **discordant, ci_low=None, ci_high=None,
                                p_value=None, p_adjusted=None, test=test,
                                note="one cluster: a clustered standard error needs 2 or more")
        se = _clustered_se(d, groups, cluster_key or "cluster")
        df = units - 1
        if se <= tolerance:
            return ScorerResult(**common, **means, **discordant, ci_low=None, ci_high=None,
                                p_value=None, p_adjusted=None, test=test, se=se, df=df,
                                note="the clustered standard error is 0 (every cluster's "
                                     "differences average out): no test")
        p, low, high = _t_from_se(diff, se, df, alpha)
        boot = _bootstrap_clusters(d, groups, alpha, seed, resamples)
    else:
        if n == 1 and not binary:
            return ScorerResult(**common, **means, ci_low=None, ci_high=None, p_value=None,
                                p_adjusted=None, test=test,
                                note="one paired sample: no variance to test against")
        se = float(stats.sem(d)) if n > 1 else None
        df = n - 1
        if binary:
            p, low, high = _exact_mcnemar(discordant["improved_pairs"],
                                          discordant["regressed_pairs"], n, alpha)
            if n > 1 and not constant:  # t needs variance in the differences
                t_p, t_low, t_high = _paired_t(baseline, candidate, alpha)
                discordant.update(paired_t_p_value=t_p, paired_t_ci_low=t_low,
                                  paired_t_ci_high=t_high)
        else:
            p, low, high = _paired_t(baseline, candidate, alpha)
        boot = _bootstrap(baseline, candidate, alpha, seed, resamples) if n > 1 else (None, None)
    return ScorerResult(
        **common, **means, **discordant, ci_low=low, ci_high=high, p_value=p, p_adjusted=None,
        test=test, se=se, df=df, mde=_mde(se, df, alpha),
        bootstrap_ci_low=boot[0], bootstrap_ci_high=boot[1],
    )


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def _correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) <= 1e-12 * max(1.0, float(np.max(np.abs(a)))) \
            or np.ptp(b) <= 1e-12 * max(1.0, float(np.max(np.abs(b)))):
        return None  # undefined for constant scores
    return float(stats.pearsonr(a, b).statistic)


def _paired_t(baseline: np.ndarray, candidate: np.ndarray,
              alpha: float) -> tuple[float, float, float]:
    """Paired t (Miller's paired SE with t(n-1)): p and the (1 - alpha) interval."""
    result = stats.ttest_rel(candidate, baseline)
    ci = result.confidence_interval(1 - alpha)
    return float(result.pvalue), float(ci.low), float(ci.high)


def _t_from_se(diff: float, se: float, df: int, alpha: float) -> tuple[float, float, float]:
    """Two-sided t p-value and CI from a (positive) standard error."""
    t = stats.t
    half = float(t.ppf(1 - alpha / 2, df)) * se
    return float(2 * t.sf(abs(diff / se), df)), diff - half, diff + half


def _exact_mcnemar(improved: int, regressed: int, n: int,
                   alpha: float) -> tuple[float, float, float]:
    """Exact McNemar: binomial test of the improved share among the discordant pairs, and its
    Clopper-Pearson interval mapped onto the difference, (m/n)(2*pi - 1). Both conditional on the
    m discordant pairs, so the interval excludes 0 exactly when p < alpha."""
    m = improved + regressed
    if m == 0:
        return 1.0, 0.0, 0.0
    result = stats.binomtest(improved, m, 0.5)
    ci = result.proportion_ci(confidence_level=1 - alpha, method="exact")
    scale = m / n
    return float(result.pvalue), scale * (2 * ci.low - 1), scale * (2 * ci.high - 1)


def _clustered_se(d: np.ndarray, groups: Sequence[Any], key: str) -> float:
    """Inspect's own clustered standard error (``stderr(cluster=key)``) of the differences."""
    from inspect_ai.scorer import SampleScore, Score, stderr

    scores = [SampleScore(score=Score(value=float(x)), sample_id=i, sample_metadata={key: g})
              for i, (x, g) in enumerate(zip(d, groups))]
    return float(stderr(cluster=key)(scores))


def _mde(se: float | None, df: int | None, alpha: float) -> float | None:
    """Smallest true difference this test detects with 80% power: (t_{1-a/2} + t_{power}) * SE
    (Miller, sec. 5, with t instead of z for small samples)."""
    if not se or not df or df < 1:
        return None
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(POWER, df)) * se)


def _bootstrap(baseline: np.ndarray, candidate: np.ndarray, alpha: float, seed: int,
               resamples: int) -> tuple[float | None, float | None]:
    def mean_difference(b: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(c - b, axis=axis)

    result = stats.bootstrap(
        (baseline, candidate), mean_difference, paired=True, vectorized=True,
        n_resamples=resamples, batch=_BOOTSTRAP_BATCH, confidence_level=1 - alpha,
        method="percentile", rng=np.random.default_rng(seed),
    )
    return _finite(result.confidence_interval.low), _finite(result.confidence_interval.high)


def _bootstrap_clusters(d: np.ndarray, groups: Sequence[Any], alpha: float, seed: int,
                        resamples: int) -> tuple[float | None, float | None]:
    """Resample whole clusters (samples of one cluster are not independent)."""
    index: dict[Any, int] = {}
    codes = np.array([index.setdefault(g, len(index)) for g in groups])
    sums = np.bincount(codes, weights=d)
    sizes = np.bincount(codes).astype(float)

    def pooled_mean(clusters: np.ndarray, axis: int = -1) -> np.ndarray:
        return sums[clusters].sum(axis=axis) / sizes[clusters].sum(axis=axis)

    result = stats.bootstrap(
        (np.arange(len(sums)),), pooled_mean, vectorized=True, n_resamples=resamples,
        batch=_BOOTSTRAP_BATCH, confidence_level=1 - alpha, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return _finite(result.confidence_interval.low), _finite(result.confidence_interval.high)


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# --- across scorers --------------------------------------------------------------------------------
def holm(results: list[ScorerResult], alpha: float) -> list[ScorerResult]:
    """Holm-adjusted p-values across the scorers that have a p-value, and each verdict."""
    tested = [i for i, r in enumerate(results) if r.p_value is not None]
    adjusted: dict[int, float] = {}
    if tested:
        _, p_adj, _, _ = multipletests([results[i].p_value for i in tested], alpha=alpha,
                                       method="holm")
        adjusted = {i: float(p) for i, p in zip(tested, p_adj)}
    out = []
    for i, r in enumerate(results):
        p = adjusted.get(i)
        if p is None:
            verdict = "not tested"
        elif p < alpha and r.difference:
            verdict = "better" if (r.difference > 0) == r.higher_is_better else "worse"
        else:
            verdict = "no significant difference"
        out.append(replace(r, p_adjusted=p, verdict=verdict))
    return out


# --- cost and reliability ---------------------------------------------------------------------------
def summarize(records: Sequence[EpochRecord]) -> SideSummary:
    tokens = [r.total_tokens for r in records if r.total_tokens is not None]
    costs = [r.cost for r in records if r.cost is not None]
    times = [r.total_time for r in records if r.total_time is not None]
    return SideSummary(
        samples=len({r.sample_id for r in records}),
        sample_epochs=len(records),
        errors=sum(1 for r in records if r.status == "error"),
        limits=sum(1 for r in records if r.status == "limit"),
        total_tokens=sum(tokens) if tokens else None,
        tokens_per_sample=(sum(tokens) / len(tokens)) if tokens else None,
        cost=math.fsum(costs) if costs else None,
        latency_p50=float(np.percentile(times, 50)) if times else None,
        latency_p95=float(np.percentile(times, 95)) if times else None,
    )
