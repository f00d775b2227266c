"""Stay in your experiment: which traces this receiver may write.

MLflow's OTLP ingest and its assessments find a trace by its id alone (``tr-<otel trace id>``),
whatever its experiment, and Inspect's trace ids are deterministic hashes of ids that appear in
logs and tags. A sender who names a trace of another experiment would otherwise add spans and
assessments to it. So a trace id is checked with MLflow (``batchGetInfos``, one request for all
the new ids of a batch) on first sight: absent, or in this receiver's experiment, it may be
written; in another experiment it is *foreign*, and nothing of it is written.

The writer checks before anything of a trace goes to MLflow (spans forwarded, results applied):
that is the enforcement. The acknowledgement path never calls MLflow (it must not wait on a busy
or unreachable MLflow: the spool acknowledges after its own commit); it consults the same cache,
so once the writer has found a trace foreign, every later request carrying it is rejected in the
OTLP partial success (the first one was accepted, and its foreign part never written). "Absent"
is trusted for ``ABSENT_TTL_S`` only; once this receiver has forwarded the trace it is its own.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

OURS, FOREIGN, ABSENT = "ours", "foreign", "absent"
ABSENT_TTL_S = 30.0
MAX_CACHED = 200_000
BATCH_IDS = 500
ENDPOINT = "/api/3.0/mlflow/traces/batchGetInfos"

FOREIGN_MESSAGE = ("spans and results of traces that belong to another MLflow experiment were "
                   "rejected")


class OwnershipUnknown(Exception):
    """MLflow did not answer the check."""


class TraceOwnership:
    """``post(endpoint, json_body, timeout_s) -> requests.Response`` reaches MLflow's REST API;
    ``experiment_id()`` is this receiver's experiment (None while not known yet)."""

    def __init__(self, post: Callable[[str, dict[str, Any], float], Any],
                 experiment_id: Callable[[], str | None], max_cached: int = MAX_CACHED):
        self._post = post
        self._experiment_id = experiment_id
        self._max_cached = max_cached
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.rejected = 0  # spans and results refused as foreign (ingest and writer)

    def _cached(self, trace_id: str, now: float) -> str | None:
        hit = self._cache.get(trace_id)
        if hit is None:
            return None
        verdict, at = hit
        if verdict == ABSENT and now - at > ABSENT_TTL_S:
            return None
        self._cache.move_to_end(trace_id)
        return verdict

    def _remember(self, trace_id: str, verdict: str, now: float) -> None:
        self._cache[trace_id] = (verdict, now)
        self._cache.move_to_end(trace_id)
        while len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)

    def mark_ours(self, trace_ids: Iterable[str]) -> None:
        """Forwarded by this receiver (with its experiment): its own from now on."""
        now = time.monotonic()
        with self._lock:
            for t in trace_ids:
                self._remember(t, OURS, now)

    def known_foreign(self, trace_ids: Iterable[str]) -> set[str]:
        """The ids among ``trace_ids`` already found foreign (the cache only, no MLflow call)."""
        with self._lock:
            return {t for t in trace_ids if (self._cache.get(t) or ("", 0.0))[0] == FOREIGN}

    def foreign(self, trace_ids: Iterable[str], timeout_s: float) -> set[str]:
        """The ids (hex, without ``tr-``) of traces in another experiment. Raises
        OwnershipUnknown when MLflow does not answer."""
        now = time.monotonic()
        ids = set(trace_ids)
        with self._lock:
            verdicts = {t: self._cached(t, now) for t in ids}
        unknown = sorted(t for t, v in verdicts.items() if v is None)
        if unknown:
            ours = self._experiment_id()
            if ours is None:
                raise OwnershipUnknown("experiment not known yet")
            found: dict[str, str] = {}
            for i in range(0, len(unknown), BATCH_IDS):
                chunk = unknown[i: i + BATCH_IDS]
                try:
                    resp = self._post(ENDPOINT, {"trace_ids": [f"tr-{t}" for t in chunk]},
                                      timeout_s)
                except Exception as e:  # noqa: BLE001 - unreachable, timeout
                    raise OwnershipUnknown(type(e).__name__) from e
                if resp.status_code != 200:
                    raise OwnershipUnknown(f"HTTP {resp.status_code}")
                for info in resp.json().get("trace_infos", []):
                    tid = str(info.get("trace_id", ""))
                    exp = ((info.get("trace_location") or {}).get("mlflow_experiment")
                           or {}).get("experiment_id")
                    found[tid[3:] if tid.startswith("tr-") else tid] = \
                        OURS if str(exp) == str(ours) else FOREIGN
            with self._lock:
                for t in unknown:
                    verdicts[t] = found.get(t, ABSENT)
                    self._remember(t, verdicts[t], now)
        return {t for t, v in verdicts.items() if v == FOREIGN}
