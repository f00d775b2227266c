"""``--mlflow`` and ``--plot``: the comparison as an MLflow run, and its forest plot.

The run goes to the candidate's experiment (the baseline's when only the baseline is an MLflow
run; otherwise ``--experiment`` / ``MLFLOW_EXPERIMENT_NAME`` / "inspect_ai"). Tags link both
sides (MLflow run ids, log paths, Inspect eval and run ids); metrics hold each scorer's
difference, interval and p-values; artifacts hold the per-sample table
(``inspect/comparison.json``, readable with ``mlflow.load_table``), the scorer table, the whole
result as JSON, and the forest plot.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from typing import Any

from ..receiver._mlflow_names import (
    TAG_LOGGED_ARTIFACTS,
    TAG_ROLE,
    TAG_RUN_NAME,
    TAG_SOURCE_NAME,
    metric_key,
    truncate,
)
from ..config import default_experiment
from ..receiver._tables import split_table
from ._readers import _check_reachable, _first_line
from ._types import CompareError, Comparison, EvalSource

ROLE_COMPARISON = "comparison"
COMPARISON_TABLE = "inspect/comparison.json"
SCORERS_TABLE = "inspect/comparison_scorers.json"
RESULT_FILE = "inspect/comparison_result.json"
FOREST_PLOT = "inspect/forest_plot.png"
TAG_PREFIX = "inspect.compare."

# ScorerResult field -> metric suffix (<scorer>/<suffix>)
SCORER_METRICS: tuple[tuple[str, str], ...] = (
    ("difference", "difference"),
    ("ci_low", "ci_low"),
    ("ci_high", "ci_high"),
    ("p_value", "p_value"),
    ("p_adjusted", "p_adjusted"),
    ("baseline_mean", "baseline_mean"),
    ("candidate_mean", "candidate_mean"),
    ("n", "n"),
    ("mde", "mde"),
    ("correlation", "correlation"),
)
ROW_COLUMNS = ("sample_id", "scorer", "baseline", "candidate", "difference", "baseline_epochs",
               "candidate_epochs", "cluster", "baseline_trace_id", "candidate_trace_id")
SCORER_COLUMNS = ("scorer", "n", "epochs", "baseline_mean", "candidate_mean", "difference",
                  "ci_low", "ci_high", "p_value", "p_adjusted", "test", "verdict", "correlation",
                  "mde", "bootstrap_ci_low", "bootstrap_ci_high", "clusters", "note")


# --- forest plot -------------------------------------------------------------------------------------
_COLORS = {"worse": "#c0392b", "better": "#1e8449", "no significant difference": "#34495e",
           "not tested": "#95a5a6"}


def forest_plot(c: Comparison, path: str) -> str:
    """One row per scorer: the difference (candidate - baseline) as a dot with its interval as a
    bar, a dashed line at 0 (no difference), the colour saying the verdict after Holm's
    correction. Scorers whose scores all lie in [0, 1] (accuracies, proportions) share one x
    scale; a scorer in other units (a length, a count) gets its own. Returns ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt
    from matplotlib.lines import Line2D

    rows = list(c.scorers)
    level = f"{round((1 - c.alpha) * 100, 2):g}%"
    outside = {row.scorer for row in c.rows
               if any(v is not None and not 0 <= v <= 1 for v in (row.baseline, row.candidate))}
    unit = {r.scorer for r in rows if r.scorer not in outside}
    shared = _limits([b for r in rows if r.scorer in unit and (b := _bounds(r))])
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.5 + 0.62 * len(rows)), dpi=120,
                             squeeze=False)
    try:
        for ax, r in zip(axes[:, 0], rows):
            color = _COLORS[r.verdict]
            label = r.scorer + ("\n(lower is better)" if not r.higher_is_better else "")
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10, labelpad=8)
            ax.set_yticks([])
            ax.spines[["top", "right", "left"]].set_visible(False)
            ax.tick_params(axis="x", labelsize=8, length=3, pad=1)
            if r.difference is not None:
                ax.axvline(0, color="#7f8c8d", linewidth=1, linestyle="--", zorder=0)
            if r.difference is None:
                ax.set_xlim(-1, 1)
                ax.set_xticks([])
                ax.text(0.5, 0.5, "no paired scores", transform=ax.transAxes, ha="center",
                        va="center", color=color, fontsize=9, style="italic")
                text = "not tested"
            else:
                lo = r.ci_low if r.ci_low is not None else r.difference
                hi = r.ci_high if r.ci_high is not None else r.difference
                ax.errorbar([r.difference], [0], xerr=[[r.difference - lo], [hi - r.difference]],
                            fmt="o", color=color, ecolor=color, elinewidth=2.2, capsize=5,
                            markersize=7)
                own = r.scorer not in unit or shared is None
                ax.set_xlim(*(_limits([(lo, hi)]) if own else shared))
                ci = (f" [{lo:+.3g}, {hi:+.3g}]" if r.ci_low is not None else "")
                text = f"{r.difference:+.3g}{ci}\np adj {_p(r.p_adjusted)}, n={r.n}, {r.test}"
            ax.set_ylim(-1, 1)
            ax.annotate(text, xy=(1.02, 0.5), xycoords="axes fraction", va="center", fontsize=8.5,
                        color=color, annotation_clip=False)
        fig.suptitle(_clip(f"candidate {c.candidate.name} [{c.candidate.short}]", 100) + "\n"
                     + _clip(f"vs baseline {c.baseline.name} [{c.baseline.short}]", 100)
                     + f"\ndifference candidate - baseline, {level} CI; verdict after Holm",
                     x=0.02, ha="left", fontsize=10)
        legend = [Line2D([0], [0], color=_COLORS[k], marker="o", linewidth=2, label=k)
                  for k in ("worse", "better", "no significant difference")]
        fig.legend(handles=legend, loc="lower center", ncol=3, frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, 0.0))
        fig.tight_layout(rect=(0.0, 0.05, 0.76, 1.0), h_pad=0.4)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def _bounds(r: Any) -> tuple[float, float] | None:
    if r.difference is None:
        return None
    return (r.ci_low if r.ci_low is not None else r.difference,
            r.ci_high if r.ci_high is not None else r.difference)


def _limits(bounds: list[tuple[float, float]]) -> tuple[float, float] | None:
    """x limits holding every interval and 0, with a margin."""
    if not bounds:
        return None
    left = min(0.0, *(lo for lo, _ in bounds))
    right = max(0.0, *(hi for _, hi in bounds))
    pad = (right - left) * 0.12 or 0.05
    return left - pad, right + pad


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


# --- the MLflow run ----------------------------------------------------------------------------------
def _target(c: Comparison, tracking_uri: str | None) -> tuple[str, EvalSource | None]:
    side = c.candidate if c.candidate.kind == "mlflow" else (
        c.baseline if c.baseline.kind == "mlflow" else None)
    uri = (side.tracking_uri if side else None) or tracking_uri or os.environ.get(
        "MLFLOW_TRACKING_URI")
    if not uri:
        raise CompareError("--mlflow needs a tracking URI: neither side is an MLflow run (pass "
                           "--tracking-uri or set MLFLOW_TRACKING_URI)")
    return uri.rstrip("/"), side


def _clip(text: str, limit: int) -> str:
    """A title that fits: cut with an ellipsis (no storage marker in a picture)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def side_tags(c: Comparison) -> dict[str, str]:
    tags: dict[str, str] = {}
    for role, source in (("baseline", c.baseline), ("candidate", c.candidate)):
        prefix = f"{TAG_PREFIX}{role}."
        for field in ("mlflow_run_id", "log_location", "eval_id", "run_id", "task", "model"):
            value = getattr(source, field)
            if value:
                tags[prefix + field] = truncate(str(value), 5000)
    return tags


def log_comparison(c: Comparison, *, tracking_uri: str | None = None,
                   experiment: str | None = None) -> str:
    """Log ``c`` as a finished MLflow run; returns the run's URL (or its id without a UI)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    uri, side = _target(c, tracking_uri)
    _check_reachable(uri)
    client = MlflowClient(uri)
    try:
        if side is not None and side.experiment_id and not experiment:
            experiment_id = side.experiment_id
        else:
            name = experiment or default_experiment()
            found = client.get_experiment_by_name(name)
            experiment_id = found.experiment_id if found else client.create_experiment(name)
        run_name = truncate(f"compare {c.candidate.name} vs {c.baseline.name}", 250)
        tags = {TAG_ROLE: ROLE_COMPARISON, TAG_SOURCE_NAME: "inspect-otel compare",
                f"{TAG_PREFIX}regressions": ",".join(r.scorer for r in c.regressions) or "none",
                "mlflow.note.content": _note(c), **side_tags(c)}
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        params = [Param("alpha", str(c.alpha)), Param("cluster", c.cluster or ""),
                  Param("scorers", truncate(",".join(r.scorer for r in c.scorers), 6000)),
                  Param("bootstrap_seed", str(c.seed)), Param("bootstrap_resamples", str(c.resamples))]
        metrics = []
        for r in c.scorers:
            for field, suffix in SCORER_METRICS:
                value = getattr(r, field)
                if value is not None:
                    metrics.append(Metric(metric_key(f"{r.scorer}/{suffix}"), float(value), 0, 0))
        metrics.append(Metric("regressions", float(len(c.regressions)), 0, 0))
        metrics.append(Metric("samples/paired", float(len({x.sample_id for x in c.rows})), 0, 0))
        metrics.append(Metric("samples/matched", float(c.matched), 0, 0))
        # every sample some test left out (each with its reason in inspect/comparison_result.json)
        metrics.append(Metric("samples/left_out", float(len({e.sample_id for e in c.excluded})),
                              0, 0))
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        client.log_batch(run_id, params=[p for p in params if p.value != ""],
                         tags=[RunTag(TAG_RUN_NAME, run_name)])
        with tempfile.TemporaryDirectory(prefix="inspect-otel-compare-") as tmp:
            data = c.to_dict()
            files = {
                COMPARISON_TABLE: split_table({k: [row[k] for row in data["rows"]]
                                               for k in ROW_COLUMNS}),
                SCORERS_TABLE: split_table({k: [s[k] for s in data["scorers"]]
                                            for k in SCORER_COLUMNS}),
                RESULT_FILE: data,
            }
            for path, content in files.items():
                local = os.path.join(tmp, os.path.basename(path))
                with open(local, "w", encoding="utf-8") as f:
                    json.dump(content, f, ensure_ascii=False, default=str)
                client.log_artifact(run_id, local, artifact_path=os.path.dirname(path))
            plot = forest_plot(c, os.path.join(tmp, os.path.basename(FOREST_PLOT)))
            client.log_artifact(run_id, plot, artifact_path=os.path.dirname(FOREST_PLOT))
        client.set_tag(run_id, TAG_LOGGED_ARTIFACTS, json.dumps(
            [{"path": p, "type": "table"} for p in (COMPARISON_TABLE, SCORERS_TABLE)]))
        # MLflow's client prints its own "View run" lines to stdout here; ours is the one line
        with contextlib.redirect_stdout(io.StringIO()):
            client.set_terminated(run_id, "FINISHED")
    except MlflowException as e:
        raise CompareError(f"cannot log the comparison to MLflow at {uri}: {_first_line(e)}") \
            from None
    if uri.startswith(("http://", "https://")):
        return f"{uri}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"runs:/{run_id}"


def _note(c: Comparison) -> str:
    """The run description (markdown): the scorer table in short."""
    lines = [f"**{c.candidate.name}** (candidate) vs **{c.baseline.name}** (baseline): paired by "
             f"sample id, epochs averaged; alpha {c.alpha:g}, Holm-adjusted.", "",
             "| scorer | baseline | candidate | difference [CI] | p adj | test | n | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in c.scorers:
        def f(v: Any) -> str:
            return "-" if v is None else f"{v:.3f}"
        ci = (f"{r.difference:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
              if r.difference is not None and r.ci_low is not None and r.ci_high is not None
              else f(r.difference))
        lines.append(f"| {r.scorer} | {f(r.baseline_mean)} | {f(r.candidate_mean)} | {ci} | "
                     f"{_p(r.p_adjusted)} | {r.test} | {r.n} | {r.verdict} |")
    return truncate("\n".join(lines), 8000)
