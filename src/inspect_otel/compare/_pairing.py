"""Two sides, sample by sample (pure: no I/O): each side's epochs grouped per sample, the samples
in one fixed order, and every sample left out of a test named with its reason.

The order matters for one number: the paired bootstrap resamples samples by position, so the same
samples in another order give another (equally valid) interval. Readers hand records over in the
order of their source (a log's summaries, the receiver's table), which differ; sorting here, where
every source meets, makes a log and the MLflow run made from it give the same interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._types import SIDE_STATES, SIDES, EpochRecord, Exclusion


@dataclass(frozen=True)
class SideSample:
    """One sample of one side: per evaluation name, the finite epoch values."""

    values: Mapping[str, tuple[float, ...]]
    excluded: Mapping[str, int]  # epoch values present without a numeric reading
    statuses: tuple[str, ...]  # each epoch's: success | error | limit
    trace_id: str | None
    metadata: Mapping[str, Any]


def sample_order(sample_id: str) -> tuple[int, int, str]:
    """Natural order: numeric ids by value (2 before 10), then the others by text."""
    if sample_id.isascii() and sample_id.isdigit():
        return (0, int(sample_id), sample_id)
    return (1, 0, sample_id)


def by_sample(records: Iterable[EpochRecord]) -> dict[str, SideSample]:
    """The records of one side grouped per sample, in sample order (epochs in epoch order)."""
    grouped: dict[str, list[EpochRecord]] = {}
    for record in records:
        grouped.setdefault(record.sample_id, []).append(record)
    out = {}
    for sample_id in sorted(grouped, key=sample_order):
        epochs = sorted(grouped[sample_id], key=lambda r: r.epoch)
        values: dict[str, list[float]] = {}
        excluded: dict[str, int] = {}
        metadata: dict[str, Any] = {}
        for record in epochs:
            for name, value in record.scores.items():
                if value is None:
                    excluded[name] = excluded.get(name, 0) + 1
                else:
                    values.setdefault(name, []).append(value)
            for key, value in record.metadata.items():
                metadata.setdefault(key, value)
        out[sample_id] = SideSample({k: tuple(v) for k, v in values.items()}, excluded,
                                    tuple(r.status for r in epochs), epochs[0].trace_id,
                                    metadata)
    return out


def side_state(sample: SideSample, name: str | None = None) -> str:
    """What one side of a sample has for scorer ``name`` (for any scorer when None):
    ``scored`` (a numeric value in some epoch), else why not (a key of SIDE_STATES): a value
    with no numeric reading, an error, a limit, or no score at all."""
    if sample.values.get(name) if name else any(sample.values.values()):
        return "scored"
    if sample.excluded.get(name) if name else any(sample.excluded.values()):
        return "non_numeric"
    if "error" in sample.statuses:
        return "errored"
    if "limit" in sample.statuses:
        return "limit"
    return "no_score"


def reason(baseline: str, candidate: str) -> str:
    if baseline == "absent":
        return "only in the candidate"
    if candidate == "absent":
        return "only in the baseline"
    if baseline == candidate:
        return f"{SIDE_STATES[baseline]} in both"
    return "; ".join(f"{SIDE_STATES[state]} in the {side}"
                     for side, state in zip(SIDES, (baseline, candidate)) if state != "scored")


def exclusions(base: Mapping[str, SideSample], cand: Mapping[str, SideSample],
               names: Sequence[str]) -> list[Exclusion]:
    """Every sample left out of the test of some of ``names``, in sample order: one entry for a
    sample left out of every scorer for one reason (``scorers`` None), else one per reason with
    the scorers it concerns. A side that errored or hit a limit without any score is the reason
    for the whole sample, whatever the other side holds."""
    out: list[Exclusion] = []
    for sample_id in sorted(base.keys() | cand.keys(), key=sample_order):
        if sample_id not in cand or sample_id not in base:
            sides = ("present", "absent") if sample_id in base else ("absent", "present")
            out.append(Exclusion(sample_id, reason(*sides), *sides))
            continue
        whole = (side_state(base[sample_id]), side_state(cand[sample_id]))
        if {"errored", "limit"} & set(whole):
            out.append(Exclusion(sample_id, reason(*whole), *whole))
            continue
        groups: dict[tuple[str, str], list[str]] = {}
        for name in names:
            states = (side_state(base[sample_id], name), side_state(cand[sample_id], name))
            if states != ("scored", "scored"):
                groups.setdefault(states, []).append(name)
        if len(groups) == 1 and len(next(iter(groups.values()))) == len(names):
            (states,) = groups
            out.append(Exclusion(sample_id, reason(*states), *states))
            continue
        out += [Exclusion(sample_id, reason(*states), *states, scorers=tuple(scorers))
                for states, scorers in groups.items()]
    return out
