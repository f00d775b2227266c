"""The eval log as an artifact of its task run, only from where the operator allowed.

A task span names its eval log (``inspect.task.log_location``), and anyone who may send OTLP can
write that attribute: left unchecked, it would make the receiver read any file or fetch any URL
and copy it into MLflow. So the receiver stores a log only when

1. the operator named *roots* (``--log-artifact-root``, env ``INSPECT_OTEL_LOG_ARTIFACT_ROOTS``);
   without any, the feature is off;
2. the location lies under one of them: a local path after resolving ``..`` and symlinks
   (``os.path.realpath``), a ``file://`` URI the same way, an object-store URL (``s3://bucket/
   prefix``, also ``gs://``, ``az://``) as a prefix of the normalised URL, on a segment boundary.
   Any other scheme (``http``, ``ftp``, ...) is never fetched, nor a URL with ``.``/``..``
   segments, credentials, a query or a fragment, nor a relative path;
3. it is an Inspect log of that task: a regular file named ``*.eval`` or ``*.json``, at most
   ``max_bytes``, whose header (read with Inspect's own ``read_eval_log``) has the task span's
   ``inspect.eval_id``.

A refused location gets a tag with the sender's location and one of two fixed reasons: outside
every root, or not a readable Inspect log of this eval within the size limit (missing, unreadable,
another file, another eval, too large: one answer, so the tag tells a sender nothing about which
files exist or what they hold). The operator's log has the detail.

Storing runs on its own thread beside the writer (a slow bucket never holds up traces); the jobs
wait in the spool's meta table, so they survive a restart. A job that fails is held back or
becomes a dead letter on its own (``_dead_letters.py``); the other jobs go on.

Object-store logs are read with fsspec (Inspect's own dependency) and Inspect's options for the
scheme (``inspect_ai._util.file.default_fs_options``: S3 caching off, Azure credentials). That is
a private Inspect API: should it be gone or changed, the receiver uses fsspec with the options it
needs itself (``_fs_options``), and says so once.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from . import _mlflow_names
from ._dead_letters import DeadLetters, Item
from ._mlflow_io import Transient
from ._spool import Spool

log = logging.getLogger("inspect_otel.receiver")

LOG_ARTIFACT_META = "log_artifact:"  # spool meta: eval logs still to store
LOG_SUFFIXES = (".eval", ".json")
# Object stores Inspect writes logs to (through fsspec): keys have no ".." semantics, so a prefix
# of the normalised URL is a directory-like boundary.
REMOTE_SCHEMES = frozenset({"s3", "gs", "gcs", "az", "abfs", "abfss"})
DEFAULT_MAX_LOG_BYTES = 512 << 20

REFUSED_ROOT = "not under an allowed root"
REFUSED_LOG = "not a readable Inspect log of this eval within the size limit"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")


class RootError(ValueError):
    """An operator-given root that cannot be used (the CLI says so in one line)."""


@dataclass(frozen=True)
class Root:
    """A local directory (``scheme`` empty, ``prefix`` its real path) or an object-store prefix
    (``prefix`` = ``bucket/key/prefix/``, always ending with ``/``)."""

    scheme: str
    prefix: str

    def __str__(self) -> str:
        return f"{self.scheme}://{self.prefix}" if self.scheme else self.prefix


def parse_root(text: str) -> Root:
    text = text.strip()
    if not text:
        raise RootError("an empty log artifact root")
    m = _SCHEME.match(text)
    if m and m.group(1).lower() == "file":
        path = _file_uri_path(text)
        if path is None:
            raise RootError(f"log artifact root {text!r}: only file:///absolute/path URIs")
        text, m = path, None
    if m:
        scheme = m.group(1).lower()
        if scheme not in REMOTE_SCHEMES:
            raise RootError(f"log artifact root {text!r}: scheme {scheme}:// is not supported "
                            f"(local directories and {', '.join(sorted(REMOTE_SCHEMES))}://)")
        key = _remote_key(text)
        if key is None:
            raise RootError(f"log artifact root {text!r}: write {scheme}://bucket[/prefix]")
        return Root(scheme, key.rstrip("/") + "/")
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        raise RootError(f"log artifact root {text!r}: an absolute directory is needed")
    real = os.path.realpath(path)
    return Root("", real)


def parse_roots(texts: Iterable[str]) -> tuple[Root, ...]:
    return tuple(dict.fromkeys(parse_root(t) for t in texts))


def _file_uri_path(location: str) -> str | None:
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        return None
    path = unquote(parts.path)
    return path if os.path.isabs(path) else None


def _remote_key(location: str) -> str | None:
    """``bucket/key`` of an object-store URL, or None when it is not a plain one (credentials,
    port, query, fragment, ``.``/``..``/empty segments, backslashes, percent escapes)."""
    try:
        parts = urlsplit(location)
    except ValueError:
        return None
    if (not parts.netloc or "@" in parts.netloc or ":" in parts.netloc or parts.query
            or parts.fragment or "\\" in location or "%" in location
            or not parts.path.startswith("/") and parts.path):
        return None
    segments = parts.path.split("/")[1:]
    inner = segments[:-1] if segments and segments[-1] == "" else segments
    if any(s in ("", ".", "..") for s in inner):
        return None
    return parts.netloc + parts.path


def allowed_location(location: str, roots: Iterable[Root]) -> str | None:
    """Where to read ``location`` from (a real local path, or the normalised remote URL) when it
    lies under one of ``roots``; None otherwise."""
    roots = tuple(roots)
    m = _SCHEME.match(location)
    if m and m.group(1).lower() == "file":
        path = _file_uri_path(location)
        if path is None:
            return None
        location, m = path, None
    if m:
        scheme = m.group(1).lower()
        if scheme not in REMOTE_SCHEMES:
            return None
        key = _remote_key(location)
        if key is None:
            return None
        for root in roots:
            if root.scheme == scheme and key.startswith(root.prefix) and len(key) > len(root.prefix):
                return f"{scheme}://{key}"
        return None
    if "\x00" in location or not os.path.isabs(location):
        return None
    real = os.path.realpath(location)
    for root in roots:
        if not root.scheme and _under(real, root.prefix):
            return real
    return None


def _under(real: str, root: str) -> bool:
    if root == os.sep:
        return real != os.sep
    return real.startswith(root.rstrip(os.sep) + os.sep)


class Refused(Exception):
    """The location is not stored; the message is one of the fixed reasons."""

    def __init__(self, reason: str, detail: str):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _check_log(path: str, eval_id: str) -> None:
    """``path`` (a local file) is an Inspect log of ``eval_id``; raises Refused otherwise."""
    from inspect_ai.log import read_eval_log

    try:
        header = read_eval_log(path, header_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable or foreign file
        raise Refused(REFUSED_LOG, f"not an Inspect log ({type(e).__name__})") from None
    if header.eval.eval_id != eval_id:
        raise Refused(REFUSED_LOG, f"the log's eval id is {header.eval.eval_id!r}")


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise Refused(REFUSED_LOG, f"{size} bytes, over the limit of {max_bytes}")


def fetch_log(location: str, eval_id: str, roots: Iterable[Root], max_bytes: int,
              tmp: str) -> str:
    """The local file to upload for ``location``, checked (see the module docstring); raises
    Refused. Remote logs are copied into ``tmp`` first (their header is read from the copy)."""
    source = allowed_location(location, roots)
    if source is None:
        raise Refused(REFUSED_ROOT, "outside every --log-artifact-root")
    if not source.endswith(LOG_SUFFIXES):
        raise Refused(REFUSED_LOG, "not named *.eval or *.json")
    if not _SCHEME.match(source):  # a local real path
        try:
            st = os.stat(source)
        except OSError as e:
            raise Refused(REFUSED_LOG, type(e).__name__) from None
        if not stat.S_ISREG(st.st_mode):
            raise Refused(REFUSED_LOG, "not a regular file")
        _check_size(st.st_size, max_bytes)
        _check_log(source, eval_id)
        return source
    import fsspec

    local = os.path.join(tmp, posixpath.basename(source))
    try:
        fs, path = fsspec.core.url_to_fs(source, **_fs_options(source))
        info = fs.info(path)
    except Exception as e:  # noqa: BLE001 - missing object, no credentials, no such bucket
        raise Refused(REFUSED_LOG, type(e).__name__) from None
    _check_size(int(info.get("size") or 0), max_bytes)
    try:
        fs.get_file(path, local)
    except Exception as e:  # noqa: BLE001
        raise Refused(REFUSED_LOG, type(e).__name__) from None
    _check_size(os.path.getsize(local), max_bytes)  # it may have grown since
    _check_log(local, eval_id)
    return local


# What Inspect's own options come down to where they cannot be had: no fsspec instance or
# listings cache (a log read twice is read again).
FALLBACK_FS_OPTIONS: dict[str, Any] = {"skip_instance_cache": False, "use_listings_cache": False}
_fallback_said = threading.Event()


def _fs_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``: Inspect's (private API), else FALLBACK_FS_OPTIONS."""
    try:
        from inspect_ai._util.file import default_fs_options

        options = default_fs_options(url)
        if not isinstance(options, dict):
            raise TypeError(f"default_fs_options returned {type(options).__name__}")
        return options
    except (ImportError, AttributeError, TypeError) as e:
        if not _fallback_said.is_set():
            _fallback_said.set()
            log.warning("Inspect's filesystem options are not available (%s: a private Inspect "
                        "API changed); reading object-store eval logs with fsspec's defaults",
                        type(e).__name__)
        return dict(FALLBACK_FS_OPTIONS)


class EvalLogStore:
    """Stores each task's eval log under its run (``_mlflow_names.LOG_ARTIFACT_DIR``), on its own thread."""

    def __init__(self, spool: Spool, client: Callable[[], Any], roots: tuple[Root, ...],
                 max_bytes: int, stop: threading.Event, max_backoff_s: float,
                 dead_letters: DeadLetters, on_stored: Callable[[], None]):
        self.spool = spool
        self._client = client
        self.roots = roots
        self.max_bytes = max_bytes
        self._stop = stop
        self._max_backoff_s = max_backoff_s
        self._dead_letters = dead_letters
        self._on_stored = on_stored
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.roots)

    def start(self) -> None:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="inspect-otel-eval-logs")
            self._thread.start()

    def stop(self, timeout: float) -> None:
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def pending(self) -> bool:
        """Jobs still to store (dead letters wait for a re-drive: not pending)."""
        items = self.spool.meta_items(LOG_ARTIFACT_META)
        if not items:
            return False
        dead = {k for k, _ in self.spool.dead_letters.dead_items("eval_log", len(items) + 1)}
        return any(key[len(LOG_ARTIFACT_META):] not in dead for key, _ in items)

    def enqueue(self, eval_id: str, run_id: str, location: str) -> None:
        if not self.enabled:
            return
        self.spool.set_meta(LOG_ARTIFACT_META + eval_id, json.dumps(
            {"run_id": run_id, "eval_id": eval_id, "location": location}))
        self.spool.dead_letters.clear_now("eval_log", eval_id)  # a new job starts afresh
        self._wake.set()

    def _loop(self) -> None:
        backoff, said = 1.0, None
        while not self._stop.is_set():
            try:
                items = self.spool.meta_items(LOG_ARTIFACT_META)
                held = self.spool.dead_letters.held_keys("eval_log")
                ready = [(k, v) for k, v in items if k[len(LOG_ARTIFACT_META):] not in held]
                for key, value in ready:
                    self._store_job(key, value)
                backoff, said = 1.0, None
            except Transient as e:  # MLflow unreachable or failing: try again later
                if str(e) != said:
                    log.warning("storing eval logs in MLflow failed (%s); retrying with backoff",
                                e)
                    said = str(e)
                self._stop.wait(backoff)
                backoff = min(self._max_backoff_s, backoff * 2)
                continue
            # held jobs are looked at again every second (their next try comes by the clock)
            self._wake.wait(1.0 if len(ready) < len(items) else 5.0)
            self._wake.clear()

    def _store_job(self, key: str, value: str) -> None:
        eval_id = key[len(LOG_ARTIFACT_META):]
        try:
            job = json.loads(value)
            self.store(job["run_id"], eval_id, job["location"])
        except Exception as e:  # noqa: BLE001 - this job alone: held back (Transient raised)
            self._dead_letters.failed(Item("eval_log", eval_id), e)
            return
        self.spool.delete_meta(key)
        self.spool.dead_letters.clear_now("eval_log", eval_id)

    def store(self, run_id: str, eval_id: str, location: str) -> None:
        """Store the checked log, or record why not in a tag (never an error of the run).
        MLflow failures raise (retried)."""
        from mlflow.entities import RunTag

        client = self._client()
        with tempfile.TemporaryDirectory(prefix="inspect-otel-log-") as tmp:
            try:
                local = fetch_log(location, eval_id, self.roots, self.max_bytes, tmp)
            except Refused as e:
                log.info("eval log %r of eval %s not stored in MLflow: %s (%s)", location,
                         eval_id, e.reason, e.detail)
                if client.get_run(run_id).data.tags.get(_mlflow_names.TAG_LOG_ARTIFACT):
                    return  # stored before (e.g. live, and now a replay from elsewhere): kept
                error = _mlflow_names.mlflow_text(f"{location}: {e.reason}", _mlflow_names.TAG_VALUE_MAX)
                client.log_batch(run_id, tags=[RunTag(_mlflow_names.TAG_LOG_ARTIFACT_ERROR, error)])
                return
            client.log_artifact(run_id, local, artifact_path=_mlflow_names.LOG_ARTIFACT_DIR)
            stored = f"{_mlflow_names.LOG_ARTIFACT_DIR}/{os.path.basename(local)}"
            client.log_batch(run_id, tags=[
                RunTag(_mlflow_names.TAG_LOG_ARTIFACT, _mlflow_names.mlflow_text(stored, _mlflow_names.TAG_VALUE_MAX))])
            try:
                client.delete_tag(run_id, _mlflow_names.TAG_LOG_ARTIFACT_ERROR)
            except Exception:  # noqa: BLE001 - there was none
                pass
        self._on_stored()
