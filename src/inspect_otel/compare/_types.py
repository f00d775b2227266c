"""The data of a comparison: what the readers produce and what the statistics return.

Plain frozen dataclasses. The readers turn each side (a log or an MLflow run) into an
:class:`EvalTable` of sample x epoch records; the statistics turn two tables into a
:class:`Comparison`. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


class CompareError(ValueError):
    """Input that cannot be compared, with a one-line message for the user."""


def check_options(alpha: float, resamples: int) -> None:
    if not 0 < alpha < 1:
        raise CompareError(f"alpha must be between 0 and 1 (got {alpha})")
    if resamples < 100:
        raise CompareError(f"bootstrap resamples must be at least 100 (got {resamples})")


# --- what a reader produces ------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochRecord:
    """One sample x epoch of one side."""

    sample_id: str
    epoch: int
    # evaluation name (scorer, or scorer/key for dict-valued scores) -> number; None when the
    # value has no numeric reading (None, NaN, a list, an unknown label)
    scores: Mapping[str, float | None]
    status: str = "success"  # success | error | limit
    total_tokens: int | None = None
    cost: float | None = None
    total_time: float | None = None
    trace_id: str | None = None  # 32-hex OTel trace id (the hook's deterministic id)
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSource:
    """Where one side came from, and the ids that link it to its other forms."""

    kind: Literal["log", "mlflow"]
    label: str  # what the user passed
    task: str = ""
    model: str = ""
    eval_id: str = ""
    run_id: str = ""  # Inspect run id
    status: str = ""
    log_location: str | None = None
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    # The sample metadata keys this source can carry; None for a log (all of them). An MLflow
    # run has those the hook sent (only under content capture or when opted in).
    metadata_keys: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()  # Inspect's eval tags (the labels that tell two runs apart)

    @property
    def short(self) -> str:
        """Which log or run: the file name, or "run <first 8 of the id>"."""
        if self.kind == "mlflow":
            return f"run {(self.mlflow_run_id or '')[:8]}"
        return (self.log_location or self.label).replace("\\", "/").rsplit("/", 1)[-1]

    @property
    def name(self) -> str:
        """Short human name: task · model · tags (as the receiver names its runs)."""
        from ..labels import labelled_name

        if self.task:
            return labelled_name(self.task, [self.model], self.tags)
        return self.label


@dataclass(frozen=True)
class EvalTable:
    source: EvalSource
    records: tuple[EpochRecord, ...]
    names: tuple[str, ...]  # evaluation names present on this side, in first-seen order


# --- what the statistics return ---------------------------------------------------------------------
Verdict = Literal["better", "worse", "no significant difference", "not tested"]


@dataclass(frozen=True)
class ScorerResult:
    """One scorer (or one key of a dict-valued scorer), candidate against baseline."""

    scorer: str
    n: int  # paired samples: a numeric score on both sides (epochs averaged first)
    epochs: int  # most epochs averaged for one sample, either side
    baseline_mean: float | None
    candidate_mean: float | None
    difference: float | None  # candidate - baseline: mean of the paired differences
    ci_low: float | None  # confidence interval of the difference (1 - alpha) from `test`
    ci_high: float | None
    p_value: float | None  # two-sided, from `test`
    p_adjusted: float | None  # Holm across every scorer with a p-value
    test: str  # "paired t" | "exact McNemar" | "clustered t" | "none"
    se: float | None = None  # standard error of the difference (clustered with --cluster)
    df: int | None = None  # degrees of freedom of t: n - 1, or clusters - 1
    correlation: float | None = None  # Pearson, per-sample scores of the two sides
    mde: float | None = None  # minimum detectable difference at 80% power (two-sided alpha)
    bootstrap_ci_low: float | None = None  # seeded paired bootstrap, a cross-check
    bootstrap_ci_high: float | None = None
    regressed_pairs: int | None = None  # binary single-epoch: 1 -> 0 (McNemar's b)
    improved_pairs: int | None = None  # binary single-epoch: 0 -> 1 (McNemar's c)
    # binary single-epoch: the paired t as well (exact McNemar is the test; t is reported beside)
    paired_t_p_value: float | None = None
    paired_t_ci_low: float | None = None
    paired_t_ci_high: float | None = None
    clusters: int | None = None
    # the smallest and largest per-sample score seen on either side: a difference of means
    # cannot leave [-(max - min), +(max - min)]
    score_min: float | None = None
    score_max: float | None = None
    baseline_epochs: int = 0
    candidate_epochs: int = 0
    excluded_baseline: int = 0  # sample x epoch values with no numeric reading, left out
    excluded_candidate: int = 0
    unpaired: int = 0  # matched samples with a numeric score on one side only
    higher_is_better: bool = True
    verdict: Verdict = "not tested"
    note: str | None = None  # why a number is missing (n=1, one cluster, no paired scores)

    @property
    def regressed(self) -> bool:
        return self.verdict == "worse"

    @property
    def interval_exceeds_range(self) -> bool:
        """The interval reaches past the largest difference the scores allow."""
        if None in (self.ci_low, self.ci_high, self.score_min, self.score_max):
            return False
        span = self.score_max - self.score_min  # type: ignore[operator]
        return self.ci_low < -span - 1e-12 or self.ci_high > span + 1e-12  # type: ignore[operator]


@dataclass(frozen=True)
class SampleRow:
    """One paired sample x scorer of the per-sample table (epochs already averaged)."""

    sample_id: str
    scorer: str
    baseline: float | None
    candidate: float | None
    difference: float | None
    baseline_epochs: int
    candidate_epochs: int
    cluster: Any = None
    baseline_trace_id: str | None = None  # first epoch's trace
    candidate_trace_id: str | None = None


# Why a side of a matched sample has no value for a scorer (see _pairing.side_state), and the
# words the report uses for it.
SIDE_STATES: Mapping[str, str] = {
    "errored": "errored",
    "limit": "hit a limit",
    "non_numeric": "no numeric score",
    "no_score": "no score",
}
SIDES = ("baseline", "candidate")


@dataclass(frozen=True)
class Exclusion:
    """A sample left out of the tests of some scorers (or of all), and why.

    ``baseline`` and ``candidate`` say what each side has for those scorers: ``scored``, a key
    of SIDE_STATES, or, for a sample id found on one side only, ``present`` and ``absent``. ``scorers`` is None when the sample is
    left out of every scorer compared."""

    sample_id: str
    reason: str  # e.g. "errored in both", "only in the baseline"
    baseline: str
    candidate: str
    scorers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SideSummary:
    """Cost and reliability of one side, over all its sample x epochs (matched or not)."""

    samples: int
    sample_epochs: int
    errors: int
    limits: int
    total_tokens: int | None
    tokens_per_sample: float | None  # per sample x epoch
    cost: float | None
    latency_p50: float | None  # seconds, sample total time
    latency_p95: float | None


@dataclass(frozen=True)
class Comparison:
    baseline: EvalSource
    candidate: EvalSource
    alpha: float
    cluster: str | None
    scorers: list[ScorerResult]
    rows: list[SampleRow]
    unmatched_baseline: list[str]  # sample ids only the baseline has
    unmatched_candidate: list[str]
    baseline_summary: SideSummary
    candidate_summary: SideSummary
    seed: int = 0
    resamples: int = 0
    matched: int = 0  # sample ids on both sides
    # every sample left out of some test, and why (the unmatched ones included), in sample order
    excluded: list[Exclusion] = field(default_factory=list)

    @property
    def excluded_everywhere(self) -> list[Exclusion]:
        """Matched samples left out of every scorer's test."""
        return [e for e in self.excluded if e.scorers is None and "absent" not in
                (e.baseline, e.candidate)]

    @property
    def regressions(self) -> list[ScorerResult]:
        """Scorers significantly worse after Holm's correction."""
        return [s for s in self.scorers if s.regressed]

    def scorer(self, name: str) -> ScorerResult:
        for s in self.scorers:
            if s.scorer == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN and infinities become None)."""
        return _jsonable({
            "baseline": asdict(self.baseline),
            "candidate": asdict(self.candidate),
            "alpha": self.alpha,
            "cluster": self.cluster,
            "seed": self.seed,
            "resamples": self.resamples,
            "scorers": [asdict(s) for s in self.scorers],
            "regressions": [s.scorer for s in self.regressions],
            "rows": [asdict(r) for r in self.rows],
            "matched": self.matched,
            "excluded": [asdict(e) for e in self.excluded],
            "unmatched_baseline": list(self.unmatched_baseline),
            "unmatched_candidate": list(self.unmatched_candidate),
            "baseline_summary": asdict(self.baseline_summary),
            "candidate_summary": asdict(self.candidate_summary),
        })


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    # numpy scalars and anything else that slipped through
    item = getattr(value, "item", None)
    return _jsonable(item()) if callable(item) else str(value)
