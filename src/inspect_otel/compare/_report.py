"""A Comparison as a terminal report (pure: text in, nothing printed here)."""

from __future__ import annotations

from collections.abc import Sequence

from ._types import Comparison, EvalSource, SampleRow, ScorerResult, SideSummary


def trace_url(source: EvalSource, trace_id: str | None) -> str | None:
    """The MLflow UI page of a sample's trace, when this side is an MLflow run on an HTTP server.

    MLflow 3's UI opens a trace from the experiment's Traces tab:
    ``#/experiments/<id>/traces?selectedEvaluationId=<trace id>``."""
    if (not trace_id or source.kind != "mlflow" or not source.experiment_id
            or not (source.tracking_uri or "").startswith(("http://", "https://"))):
        return None
    return (f"{source.tracking_uri}/#/experiments/{source.experiment_id}/traces"
            f"?selectedEvaluationId=tr-{trace_id}")


def run_url(source: EvalSource) -> str | None:
    if source.kind != "mlflow" or not (source.tracking_uri or "").startswith("http"):
        return None
    return f"{source.tracking_uri}/#/experiments/{source.experiment_id}/runs/{source.mlflow_run_id}"


def _num(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return "<0.001"
    return f"{value:.3f}"


def _ci(r: ScorerResult) -> str:
    if r.difference is None:
        return "-"
    if r.ci_low is None or r.ci_high is None:
        return _num(r.difference, signed=True)
    return f"{_num(r.difference, signed=True)} [{_num(r.ci_low, signed=True)}, " \
           f"{_num(r.ci_high, signed=True)}]"


def _epochs(r: ScorerResult) -> str:
    if r.baseline_epochs == r.candidate_epochs:
        return str(r.baseline_epochs)
    return f"{r.baseline_epochs}/{r.candidate_epochs}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]],
           right: Sequence[bool]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _side(label: str, source: EvalSource) -> str:
    where = source.log_location if source.kind == "log" else (
        f"MLflow run {source.mlflow_run_id}" + (f" ({run_url(source)})" if run_url(source) else ""))
    return f"  {label:<9}  {source.name}  {where}"


def render(c: Comparison, top: int = 5) -> str:
    level = round((1 - c.alpha) * 100, 2)
    level_text = f"{level:g}%"
    out = [
        f"Comparison: candidate - baseline, paired by sample id, epochs averaged per sample "
        f"(alpha {c.alpha:g}, Holm across {sum(1 for s in c.scorers if s.p_value is not None)} "
        f"scorers" + (f", clustered by {c.cluster!r}" if c.cluster else "") + ")",
        _side("baseline", c.baseline),
        _side("candidate", c.candidate),
    ]
    out.append(_samples_line(c))
    if c.baseline.task and c.candidate.task and c.baseline.task != c.candidate.task:
        out.append(f"  note: the tasks differ ({c.baseline.task} vs {c.candidate.task}): samples "
                   "are paired by id all the same")
    out.append("")

    header = ["scorer", "baseline", "candidate", f"difference [{level_text} CI]", "p", "p adj",
              "test", "n", "epochs", "corr", "MDE", "verdict"]
    rows = []
    for r in c.scorers:
        verdict = r.verdict
        if not r.higher_is_better and r.p_adjusted is not None:
            verdict += " (lower is better)"
        rows.append([r.scorer, _num(r.baseline_mean), _num(r.candidate_mean), _ci(r), _p(r.p_value),
                     _p(r.p_adjusted), r.test, str(r.n), _epochs(r), _num(r.correlation, 2),
                     _num(r.mde), verdict])
    out += _table(header, rows, [False, True, True, False, True, True, False, True, True, True,
                                 True, False])
    notes = _notes(c)
    if notes:
        out.append("")
        out += notes

    for r in c.scorers:
        moved = _moved(c, r, top)
        if moved:
            out.append("")
            out += moved

    left_out = _left_out(c)
    if left_out:
        out.append("")
        out += left_out

    out.append("")
    out += _usage(c.baseline_summary, c.candidate_summary)
    return "\n".join(out)


SHOWN_IDS = 20  # sample ids listed per reason (the JSON has them all)
EVERY_SCORER = "every scorer"


def _samples_line(c: Comparison) -> str:
    line = (f"  samples: {c.matched} matched, {len(c.unmatched_baseline)} only in the baseline, "
            f"{len(c.unmatched_candidate)} only in the candidate")
    everywhere = {e.sample_id for e in c.excluded_everywhere}
    some = {e.sample_id for e in c.excluded if e.scorers is not None}
    parts = []
    if everywhere:
        parts.append(f"{len(everywhere)} matched left out of every test")
    if some:
        parts.append(f"{len(some)} left out of some")
    if parts:
        line += "; " + ", ".join(parts) + " (why: below)"
    return line


def _left_out(c: Comparison) -> list[str]:
    """Every sample not in a test, grouped by the scorers it misses and the reason."""
    groups: dict[tuple[str, str], list[str]] = {}
    for e in c.excluded:
        scorers = EVERY_SCORER if e.scorers is None else ", ".join(e.scorers)
        groups.setdefault((scorers, e.reason), []).append(e.sample_id)
    if not groups:
        return []
    out = ["Samples left out of the tests, and why:"]
    for (scorers, why), ids in sorted(groups.items(), key=lambda g: g[0][0] != EVERY_SCORER):
        shown = ", ".join(ids[:SHOWN_IDS]) + (
            f", ... ({len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")
        out.append(f"  {scorers}: {why} ({len(ids)}): {shown}")
    return out


# Below this many clusters a clustered standard error is known to be unreliable (the usual
# rule of thumb: Cameron & Miller, "A Practitioner's Guide to Cluster-Robust Inference").
FEW_CLUSTERS = 20


def _notes(c: Comparison) -> list[str]:
    notes = []
    for r in c.scorers:
        parts = []
        if r.note:
            parts.append(r.note)
        if r.test == "exact McNemar":
            parts.append(f"{r.regressed_pairs} regressed and {r.improved_pairs} improved pairs")
            if r.paired_t_p_value is not None:
                parts.append(f"paired t p={_p(r.paired_t_p_value)} "
                             f"[{_num(r.paired_t_ci_low, signed=True)}, "
                             f"{_num(r.paired_t_ci_high, signed=True)}]")
        if r.bootstrap_ci_low is not None and r.bootstrap_ci_high is not None \
                and r.ci_low is not None:
            parts.append(f"bootstrap CI [{_num(r.bootstrap_ci_low, signed=True)}, "
                         f"{_num(r.bootstrap_ci_high, signed=True)}]")
        if r.clusters is not None:
            parts.append(f"{r.clusters} clusters")
            if r.clusters < FEW_CLUSTERS:
                parts.append(f"warning: only {r.clusters} clusters (fewer than {FEW_CLUSTERS}): "
                             "a clustered standard error is unreliable with few clusters, so "
                             "the interval and p-value are rough")
        if r.interval_exceeds_range:
            span = r.score_max - r.score_min  # type: ignore[operator]
            parts.append(f"the interval [{_num(r.ci_low, signed=True)}, "
                         f"{_num(r.ci_high, signed=True)}] reaches past the largest possible "
                         f"difference ({_num(-span, signed=True)} to {_num(span, signed=True)}, "
                         f"scores seen in [{_num(r.score_min)}, {_num(r.score_max)}])")
        if r.excluded_baseline or r.excluded_candidate:
            parts.append(f"left out (no numeric value): {r.excluded_baseline} baseline, "
                         f"{r.excluded_candidate} candidate sample x epochs")
        if r.unpaired:
            parts.append(f"{r.unpaired} matched samples scored on one side only")
        if parts:
            notes.append(f"  {r.scorer}: " + "; ".join(parts))
    return ["Notes:", *notes] if notes else []


def _moved(c: Comparison, r: ScorerResult, top: int) -> list[str]:
    rows = [row for row in c.rows if row.scorer == r.scorer and row.difference]
    if not rows or top <= 0:
        return []
    sign = 1 if r.higher_is_better else -1
    worse = sorted((x for x in rows if sign * x.difference < 0),
                   key=lambda x: (sign * x.difference, x.sample_id))[:top]
    better = sorted((x for x in rows if sign * x.difference > 0),
                    key=lambda x: (-sign * x.difference, x.sample_id))[:top]
    out = []
    for title, chosen, count in (("regressed", worse, sum(1 for x in rows if sign * x.difference < 0)),
                                 ("improved", better,
                                  sum(1 for x in rows if sign * x.difference > 0))):
        if not chosen:
            continue
        noun = "sample" if count == 1 else "samples"
        out.append(f"{r.scorer}: {count} {noun} {title}" + (
            (f", the {len(chosen)} largest:" if len(chosen) > 1 else ", the largest:")
            if count > len(chosen) else ":"))
        for x in chosen:
            out += _moved_lines(c, x)
    return out


def _moved_lines(c: Comparison, row: SampleRow) -> list[str]:
    lines = [f"  {row.sample_id}: {_num(row.baseline)} -> {_num(row.candidate)} "
             f"({_num(row.difference, signed=True)})"]
    for side, source, trace in (("baseline", c.baseline, row.baseline_trace_id),
                                ("candidate", c.candidate, row.candidate_trace_id)):
        url = trace_url(source, trace)
        if url:
            lines.append(f"      {side:<9} trace {url}")
    return lines


def _usage(b: SideSummary, c: SideSummary) -> list[str]:
    def ints(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    def money(v: float | None) -> str:
        return "-" if v is None else f"${v:,.4f}"

    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    rows = [
        ["samples x epochs", str(b.sample_epochs), str(c.sample_epochs)],
        ["errors", str(b.errors), str(c.errors)],
        ["limits hit", str(b.limits), str(c.limits)],
        ["tokens", ints(b.total_tokens), ints(c.total_tokens)],
        ["tokens per sample x epoch", ints(b.tokens_per_sample), ints(c.tokens_per_sample)],
        ["cost", money(b.cost), money(c.cost)],
        ["latency p50 (s)", secs(b.latency_p50), secs(c.latency_p50)],
        ["latency p95 (s)", secs(b.latency_p95), secs(c.latency_p95)],
    ]
    return _table(["", "baseline", "candidate"], rows, [False, True, True])
