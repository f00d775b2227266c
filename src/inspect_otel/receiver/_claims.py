"""One MLflow run per Inspect task, whichever receivers see it first.

MLflow generates run ids itself and has no unique constraint on run tags, so "look the run up by
tag, create it when missing" races between receivers (each finds nothing and creates one). A run
is instead *claimed* through an insert-once write MLflow's SQL store offers over its REST API,
on sqlite and PostgreSQL alike (no receiver-to-receiver protocol): an experiment named
``claim_experiment_name(...)`` (experiment names are unique, deleted experiments included),
created with the claimed run id as a tag, in the same transaction. It is deleted right after
(hidden from MLflow's experiment list; a deleted experiment keeps its name and tags, so the claim
stays readable and reserved).

Names carry a fixed-length hash of the Inspect id (``id_hash``), never the id itself: ids of up
to 256 characters fit MLflow's names, and distinct ids never share one.

A claimer first creates a *candidate* run (tagged only with its claim key), then tries to
register it. A loser deletes its candidate and uses the registered run.
Whoever resolves a claim sets the identity tags on the winner (idempotent). A receiver that dies
mid-claim leaves nothing stuck: its candidate is deleted by the next claimer of the key, and an
undeleted claim experiment by the next reader. A task run made before this protocol (receivers
that nested task runs under a parent run of the Inspect run, claimed by a param on it; or older,
by tag) is adopted as the candidate instead of creating a new one: found by its tags.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any

from inspect_otel import semconv as sc

from . import _mlflow_names

log = logging.getLogger("inspect_otel.receiver")

# On candidate runs (and kept by the winner): the claim key. Under MLflow's own prefix, which its
# UI leaves out of a run's tags (bookkeeping, not the user's).
TAG_CLAIM = _mlflow_names.HIDDEN_TAG_PREFIX + "claim"
TAG_CLAIMED_RUN = "inspect.otel.claimed_run_id"  # on a claim experiment: the registered run


def id_hash(inspect_id: str) -> str:
    """A fixed-length stand-in for an Inspect id in keys and names: 128 bits of BLAKE2b."""
    return hashlib.blake2b(inspect_id.encode("utf-8"), digest_size=16).hexdigest()


def claim_key(eval_id: str) -> str:
    """The value of TAG_CLAIM on a candidate: ``task/<hash>``."""
    return f"task/{id_hash(eval_id)}"


def claim_experiment_name(experiment_id: str, eval_id: str) -> str:
    return f"inspect-otel claim: experiment {experiment_id}, inspect task {id_hash(eval_id)}"


def _code(exc: BaseException) -> str:
    return getattr(exc, "error_code", "") or ""


class Claims:
    """Resolves Inspect tasks to MLflow run ids through ``client`` (an MlflowClient).

    With ``pool`` (an Executor), the two reads of a resolution run at once and the clean-up
    after a claim (hiding the claim experiment, deleting candidates) runs beside the writer's
    next steps; ``drain()`` waits for it."""

    def __init__(self, client: Any, experiment_id: str, pool: Executor | None = None):
        self.client = client
        self.experiment_id = experiment_id
        self._pool = pool
        self._pending: list[Future[Any]] = []

    def drain(self) -> None:
        """Wait for the clean-up started so far (errors are logged: the next claimer of the
        same key, or reader of the claim, cleans up again)."""
        pending, self._pending = self._pending, []
        for f in pending:
            try:
                f.result()
            except Exception as e:  # noqa: BLE001
                log.info("claim clean-up left for later: %s", e)

    def _later(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._pool is None:
            fn(*args)
        else:
            self._pending.append(self._pool.submit(fn, *args))

    def _both(self, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
        if self._pool is None:
            return first(), second()
        other = self._pool.submit(second)
        return first(), other.result()

    # --- task run ----------------------------------------------------------------------------
    def task_run(self, eval_id: str, tags: Mapping[str, str], start_ms: int | None,
                 run_name: str) -> str:
        """The MLflow run of the Inspect task ``eval_id`` (claimed now if nobody has)."""
        name = claim_experiment_name(self.experiment_id, eval_id)

        def register(candidate: str) -> None:
            claim_id = self.client.create_experiment(name, tags={TAG_CLAIMED_RUN: candidate,
                                                                 sc.INSPECT_EVAL_ID: eval_id})
            self._later(self._hide, claim_id)

        return self._claim(
            claim_key(eval_id), tags, start_ms, run_name,
            read=lambda: self._read_experiment_claim(name),
            legacy=lambda: self._find_legacy(sc.INSPECT_EVAL_ID, eval_id, _mlflow_names.ROLE_TASK),
            register=register, taken_code="RESOURCE_ALREADY_EXISTS")

    def _read_experiment_claim(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            return None
        winner = exp.tags.get(TAG_CLAIMED_RUN)
        if exp.lifecycle_stage == "active":  # its claimer died before hiding it (or is hiding it)
            self._later(self._hide, exp.experiment_id)
        return winner

    def _hide(self, claim_experiment_id: str) -> None:
        try:
            self.client.delete_experiment(claim_experiment_id)
        except Exception as e:  # noqa: BLE001 - another reader hid it first
            if _code(e) not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_STATE"):
                raise

    # --- the claim protocol --------------------------------------------------------------------
    def _claim(self, key: str, tags: Mapping[str, str], start_ms: int | None, run_name: str, *,
               read: Callable[[], str | None], legacy: Callable[[], str | None],
               register: Callable[[str], None], taken_code: str) -> str:
        """The registered run for ``key``: read the claim (and, beside it, look for a run an
        older receiver made); unclaimed, register a candidate through an insert-once write that
        fails with ``taken_code`` when someone else registered first, and read theirs."""
        winner, found = self._both(read, legacy)
        if winner is None:
            candidate = found or self._candidate(key, start_ms, run_name)
            try:
                register(candidate)
                winner = candidate
            except Exception as e:
                if _code(e) != taken_code:
                    raise
                winner = read()
                if winner is None:
                    raise
            if candidate != found:
                self._later(self._settle, key, winner, candidate)
        self.client.log_batch(winner, tags=_run_tags(tags))
        return winner

    # --- candidates --------------------------------------------------------------------------
    def _candidate(self, key: str, start_ms: int | None, run_name: str) -> str:
        # Named as the run will be (its final name comes with the task span, from whichever
        # receiver gets that), and tagged with the claim key only: no identity tag, so no search
        # by Inspect id finds a candidate.
        run = self.client.create_run(self.experiment_id, start_time=start_ms,
                                     tags={TAG_CLAIM: key}, run_name=run_name)
        return run.info.run_id

    def _settle(self, key: str, winner: str, mine: str) -> None:
        """After a claim this receiver took part in: delete every candidate of ``key`` but the
        winner (its own if it lost, and any left by a claimer that died mid-claim)."""
        losers = {mine} - {winner}
        for run in self.client.search_runs([self.experiment_id],
                                           filter_string=f"tags.`{TAG_CLAIM}` = '{_quote(key)}'",
                                           max_results=100):
            if run.info.run_id != winner:
                losers.add(run.info.run_id)
        for run_id in sorted(losers):
            try:
                self.client.delete_run(run_id)
            except Exception as e:  # noqa: BLE001 - a candidate another claimer already removed
                log.debug("candidate run %s not deleted: %s", run_id, e)

    def _find_legacy(self, tag: str, value: str, role: str) -> str | None:
        """A run of this identity made by an older receiver (see the module docstring)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{tag}` = '{_quote(value)}' and tags.`{_mlflow_names.TAG_ROLE}` = '{role}'",
            max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _run_tags(tags: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(k, v) for k, v in sorted(tags.items())]
