"""Compare two evaluations: paired, epoch-aware significance tests, from logs or MLflow runs.

``compare_evals(baseline, candidate)`` pairs the samples of two evals by id, averages each
sample's epochs, and tests every scorer (and every key of a dict-valued scorer): the mean paired
difference with its confidence interval, a p-value (paired t; exact McNemar for binary scores with
one epoch; clustered t with ``cluster=``), Holm's correction across scorers, a bootstrap
cross-check, the correlation of the two sides and the minimum detectable difference. Every sample
left out of a test is named with the reason (``Comparison.excluded``), and the samples are put in
one order first, so a log and the MLflow run made from it give the same numbers.

Each side is an Inspect log (``.eval``/``.json`` path or ``EvalLog``) or an MLflow task run the
inspect-otel receiver wrote (a run id, ``runs:/<id>`` or the run's URL). Needs the ``compare``
extra (scipy, statsmodels, matplotlib); MLflow sides also need the ``mlflow`` extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ._types import (
    CompareError,
    Comparison,
    EpochRecord,
    EvalSource,
    EvalTable,
    Exclusion,
    SampleRow,
    ScorerResult,
    SideSummary,
    check_options,
)

DEFAULT_RESAMPLES = 2000


def compare_evals(baseline: Any, candidate: Any, *, scorers: Sequence[str] | None = None,
                  alpha: float = 0.05, cluster: str | None = None,
                  tracking_uri: str | None = None, lower_is_better: Iterable[str] = (),
                  seed: int = 0, resamples: int = DEFAULT_RESAMPLES) -> Comparison:
    """Compare ``candidate`` against ``baseline``.

    Args:
      baseline, candidate: an eval log path (``.eval``/``.json``), an ``EvalLog``, or an MLflow
        task run written by the inspect-otel receiver: a run id, ``runs:/<id>`` or the run's URL
        (a parent run with exactly one task run stands for it).
      scorers: evaluation names to test (``scorer`` selects every ``scorer/key`` of a
        dict-valued scorer); default: all, and all must be on both sides.
      alpha: significance level of the intervals, the tests and the Holm correction.
      cluster: sample metadata key for clustered standard errors.
      tracking_uri: MLflow tracking URI for run ids (default: the run URL's server, then
        ``MLFLOW_TRACKING_URI``).
      lower_is_better: scorers where a lower score is better (a log does not say; higher is
        better by default). Decides which significant differences are regressions.
      seed, resamples: of the paired bootstrap cross-check.

    Raises:
      CompareError: input that cannot be compared (missing or unreadable log, unknown run, no
        common samples, a scorer on one side only, ...), with a one-line message.
    """
    from ._readers import check_reference, read_side, run_url_server

    check_options(alpha, resamples)
    check_reference(baseline)
    check_reference(candidate)
    tracking_uri = tracking_uri or run_url_server(baseline, candidate)
    keys = (cluster,) if cluster else ()
    base = read_side(baseline, tracking_uri=tracking_uri, metadata_keys=keys)
    cand = read_side(candidate, tracking_uri=tracking_uri, metadata_keys=keys)
    from ._stats import compare_tables  # scipy and statsmodels: only once both sides are read

    return compare_tables(base, cand, scorers=scorers, alpha=alpha, cluster=cluster,
                          lower_is_better=lower_is_better, seed=seed, resamples=resamples)


__all__ = [
    "CompareError",
    "Comparison",
    "EpochRecord",
    "EvalSource",
    "EvalTable",
    "Exclusion",
    "SampleRow",
    "ScorerResult",
    "SideSummary",
    "compare_evals",
]
