"""Task span -> the description at the top of its MLflow run page: the task's results.

MLflow's run page lists a run's metrics in the order its store returns them: on sqlite the order
they were first logged, on PostgreSQL the rows' physical order, which reuses space freed by
earlier updates (a metric written later can come first). The description
(``mlflow.note.content``) is shown above everything on any store, so the task's results lead
there. Names arrive over the network: each is a code span (no links, no markup)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inspect_otel import semconv as sc

from ._run_metrics import task_results
from ._values import as_int, as_num, as_text

# The note's first line: a note that starts otherwise was written by someone else (a person in
# the UI) and is never replaced.
NOTE_HEADING = "**Inspect results**"
MAX_SCORES = 20
MAX_METRICS = 8
NAME_MAX = 80


def owned(note: str | None) -> bool:
    """True if the receiver may write the run's description (empty, or written by a receiver)."""
    return not note or note.startswith(NOTE_HEADING)


def _code(name: Any) -> str:
    """An untrusted name as a markdown table cell: one line, one code span, no pipe."""
    text = " ".join(as_text(name).split())[:NAME_MAX].replace("`", "'").replace("|", "\\|")
    return f"`{text}`" if text else ""


def _number(value: float) -> str:
    return format(value, ".4g")


def task_run_note(attrs: Mapping[str, Any]) -> str | None:
    """Markdown: a heading with the sample counts, then one row per score with its metrics as
    columns (Inspect's own results view). None when the task span has no results."""
    table: dict[str, dict[str, float]] = {}
    for row in task_results(attrs):
        name, metric = row.get("name") or row.get("scorer"), row.get("metric")
        value = as_num(row.get("value"))
        if not name or not metric or value is None:
            continue
        name = as_text(name)
        if name not in table and len(table) >= MAX_SCORES:
            continue
        table.setdefault(name, {})[as_text(metric)] = value
    if not table:
        return None
    metrics = list(dict.fromkeys(m for values in table.values() for m in values))[:MAX_METRICS]
    total = as_int(attrs.get(sc.INSPECT_TASK_SAMPLES_TOTAL))
    completed = as_int(attrs.get(sc.INSPECT_TASK_SAMPLES_COMPLETED))
    errored = as_int(attrs.get(sc.INSPECT_TASK_SAMPLES_ERRORED))
    counts = []
    if total is not None:
        counts.append(f"{completed} of {total} samples" if completed not in (None, total)
                      else f"{total} samples")
    if errored:
        counts.append(f"{errored} errored")
    lines = [" · ".join([NOTE_HEADING, *counts]), "",
             "| score | " + " | ".join(_code(m) for m in metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for name, values in table.items():
        cells = [_number(values[m]) if m in values else "" for m in metrics]
        lines.append(f"| {_code(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
