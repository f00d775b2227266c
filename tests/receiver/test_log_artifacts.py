"""The eval log as an artifact of its task run: stored only from under an operator-given root
(--log-artifact-root), when it is an Inspect log of that very eval; every other location is
refused with a fixed reason, never read or fetched. The six ways issue 19 got the receiver to copy
a file or fetch a URL into MLflow are each tried here, against a real receiver and MLflow."""

from __future__ import annotations

import http.server
import importlib
import logging
import os
import sys
import threading
from pathlib import Path

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from inspect_ai.log import read_eval_log, write_eval_log

from inspect_otel.receiver import _eval_logs as el
from inspect_otel.receiver import _mlflow_names
from tests.receiver.mlflow_view import runs
from tests.receiver.synth import SynthEval
from tests.support.evals import run_simple


def _task_runs(client, experiment: str, run_id: str) -> dict:
    exp = client.get_experiment_by_name(experiment)
    return {r.data.tags["inspect.task.name"]: r for r in runs(client, exp.experiment_id, run_id,
                                                               _mlflow_names.ROLE_TASK)}


@pytest.fixture(scope="module")
def real_log(tmp_path_factory):
    """A real Inspect log (the simple offline eval), to be rewritten with a chosen eval id."""
    return run_simple(tmp_path_factory.mktemp("inspect-logs"), count=1)


def _write_log(real_log, path: Path, eval_id: str) -> Path:
    log = real_log.model_copy(deep=True)
    log.eval.eval_id = eval_id
    path.parent.mkdir(parents=True, exist_ok=True)
    write_eval_log(log, str(path))
    assert read_eval_log(str(path), header_only=True).eval.eval_id == eval_id
    return path


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        body = b"metadata-endpoint-secret"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def local_http():
    """A small HTTP server on 127.0.0.1 standing in for any URL (a cloud metadata endpoint):
    it must receive no request at all."""
    _Recorder.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


TASKS = ("good", "json_good", "outside", "file_uri", "traversal", "symlink_out", "not_a_log",
         "http", "other_eval", "missing")


def test_only_logs_of_the_eval_under_a_root(mlflow_server, mlflow_client, receiver_factory,
                                            tmp_path, real_log, local_http):
    ev = SynthEval(run_id="logs-run", tasks=TASKS, samples=1)
    root = tmp_path / "eval-logs"
    outside = tmp_path / "private"
    secret_log = _write_log(real_log, outside / "secret.eval", ev.eval_id("outside"))
    good = _write_log(real_log, root / "2026-01-01T00-00-00_good.eval", ev.eval_id("good"))
    json_good = _write_log(real_log, root / "sub" / "json-good.json", ev.eval_id("json_good"))
    other = _write_log(real_log, root / "other.eval", "another-eval-id")
    link = root / "innocent.eval"
    os.symlink(_write_log(real_log, outside / "linked.eval", ev.eval_id("symlink_out")), link)
    not_log = root / "notes.json"
    not_log.write_text('{"api_key": "sk-not-an-inspect-log"}')
    url = f"http://127.0.0.1:{local_http.server_address[1]}/latest/meta-data/x.eval"
    ev.log_locations = {
        "good": str(good),
        "json_good": json_good.as_uri(),
        "outside": str(secret_log),  # an absolute path outside the root
        "file_uri": secret_log.as_uri(),  # the same as file://
        "traversal": f"{root}/../private/secret.eval",  # ../ out of the root
        "symlink_out": str(link),  # a symlink inside the root pointing out
        "not_a_log": str(not_log),  # a file inside the root that is no Inspect log
        "http": url,  # SSRF: must never be fetched
        "other_eval": str(other),  # an Inspect log of another eval
        "missing": str(root / "missing.eval"),
    }
    ev.build()
    rp = receiver_factory(mlflow_server.url, "log-artifacts", tmp_path / "r",
                          "--log-artifact-root", str(root))
    for sig, body in ev.batches(size=200):
        assert rp.post(sig, body).status_code == 200
    rp.wait_idle(180)
    tasks = _task_runs(mlflow_client, "log-artifacts", ev.run_id)

    for task, path in (("good", good), ("json_good", json_good)):
        run = tasks[task]
        stored = [f.path for f in mlflow_client.list_artifacts(run.info.run_id,
                                                                _mlflow_names.LOG_ARTIFACT_DIR)]
        assert stored == [f"{_mlflow_names.LOG_ARTIFACT_DIR}/{path.name}"], task
        local = mlflow_client.download_artifacts(run.info.run_id, stored[0],
                                                 str(tmp_path / "dl" / task))
        assert Path(local).read_bytes() == path.read_bytes()
        assert run.data.tags[_mlflow_names.TAG_LOG_ARTIFACT] == stored[0]
        assert _mlflow_names.TAG_LOG_ARTIFACT_ERROR not in run.data.tags

    refused = {"outside": el.REFUSED_ROOT, "file_uri": el.REFUSED_ROOT,
               "traversal": el.REFUSED_ROOT, "symlink_out": el.REFUSED_ROOT,
               "http": el.REFUSED_ROOT, "not_a_log": el.REFUSED_LOG,
               "other_eval": el.REFUSED_LOG, "missing": el.REFUSED_LOG}
    for task, reason in refused.items():
        run = tasks[task]
        assert mlflow_client.list_artifacts(run.info.run_id, _mlflow_names.LOG_ARTIFACT_DIR) == [], task
        assert _mlflow_names.TAG_LOG_ARTIFACT not in run.data.tags, task
        # the sender's location and one fixed reason: nothing about the file itself
        assert run.data.tags[_mlflow_names.TAG_LOG_ARTIFACT_ERROR] == \
            f"{ev.log_locations[task]}: {reason}", task
        assert run.info.status == "FINISHED"  # a refused log is never an error of the run
    assert _Recorder.hits == []  # the URL was never fetched
    assert rp.health()["dead_letters"]["count"] == 0


def test_off_without_a_root(mlflow_server, mlflow_client, receiver_factory, tmp_path, real_log):
    ev = SynthEval(run_id="logs-off", samples=1)
    log = _write_log(real_log, tmp_path / "x.eval", ev.eval_id("task_a"))
    ev.log_locations = {"task_a": str(log)}
    ev.build()
    rp = receiver_factory(mlflow_server.url, "log-artifacts-off", tmp_path / "r")
    for sig, body in ev.batches(size=100):
        assert rp.post(sig, body).status_code == 200
    rp.wait_idle(120)
    run = _task_runs(mlflow_client, "log-artifacts-off", ev.run_id)["task_a"]
    assert mlflow_client.list_artifacts(run.info.run_id, _mlflow_names.LOG_ARTIFACT_DIR) == []
    assert _mlflow_names.TAG_LOG_ARTIFACT not in run.data.tags
    assert _mlflow_names.TAG_LOG_ARTIFACT_ERROR not in run.data.tags


class _MemoryObjectStore(MemoryFileSystem):
    """An object store in this process's memory, under gs:// (fsspec resolves gs:// URLs to it
    as it would to gcsfs). No object store can run here: this stand-in is the one mock of these
    tests; the fsspec calls, the Inspect log and MLflow are real."""

    protocol = ("gs",)
    store: dict = {}
    pseudo_dirs = [""]


@pytest.mark.parametrize("inspect_private_api", ["present", "gone"])
def test_object_store_log_with_and_without_inspects_private_api(
        inspect_private_api, mlflow_server, mlflow_client, tmp_path, real_log, monkeypatch,
        caplog):
    """An eval log on an object store is stored under its run, read with fsspec and Inspect's
    options for the scheme; with ``inspect_ai._util.file`` gone (a private Inspect API), with
    fsspec's own options, said once in the log."""
    import fsspec

    from inspect_otel.receiver._dead_letters import DeadLetters, RetryPolicy
    from inspect_otel.receiver._spool import Spool

    monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, "gs",
                        _MemoryObjectStore)
    monkeypatch.setattr(el, "_fallback_said", threading.Event())
    if inspect_private_api == "gone":
        monkeypatch.setitem(sys.modules, "inspect_ai._util.file", None)  # its import fails
    caplog.set_level(logging.INFO, logger="inspect_otel.receiver")
    eval_id = f"object-store-{inspect_private_api}"
    local = _write_log(real_log, tmp_path / "x.eval", eval_id)
    url = f"gs://bucket/evals/{inspect_private_api}/2026-01-01_task.eval"
    fs, path = fsspec.core.url_to_fs(url)
    fs.pipe_file(path, local.read_bytes())
    exp = mlflow_client.create_experiment(f"log-artifacts-object-store-{inspect_private_api}")
    run_id = mlflow_client.create_run(exp).info.run_id
    spool = Spool(tmp_path / "spool.db")
    stored: list[int] = []
    store = el.EvalLogStore(spool, lambda: mlflow_client, el.parse_roots(["gs://bucket/evals"]),
                            1 << 30, threading.Event(), 1.0,
                            DeadLetters(spool.dead_letters, RetryPolicy()),
                            lambda: stored.append(1))
    store.store(run_id, eval_id, url)
    assert stored == [1]
    files = [f.path for f in mlflow_client.list_artifacts(run_id, _mlflow_names.LOG_ARTIFACT_DIR)]
    assert files == [f"{_mlflow_names.LOG_ARTIFACT_DIR}/2026-01-01_task.eval"]
    copy = mlflow_client.download_artifacts(run_id, files[0], str(tmp_path / "dl"))
    assert Path(copy).read_bytes() == local.read_bytes()
    said = [r for r in caplog.records if "private Inspect API" in r.getMessage()]
    assert len(said) == (1 if inspect_private_api == "gone" else 0)
    assert el.fetch_log(url, eval_id, store.roots, 1 << 30, str(tmp_path))  # again: not said again
    assert len([r for r in caplog.records if "private Inspect API" in r.getMessage()]) == len(said)


def test_a_failing_eval_log_holds_back_only_itself(mlflow_server, mlflow_client, tmp_path,
                                                   real_log):
    """The MLflow client's log_artifact raises a TypeError (wrapped, in process: no such error
    comes over HTTP) for one eval's log, always: the other eval's log is stored, the failing
    job is retried, then kept as a dead letter (no longer pending), and stored once re-driven."""
    from inspect_otel.receiver._dead_letters import DeadLetters, RetryPolicy
    from inspect_otel.receiver._spool import Spool
    from tests.support.wait import wait_for

    root = tmp_path / "logs"
    logs = {e: _write_log(real_log, root / f"{e}.eval", e) for e in ("log-a-poisoned", "log-b-fine")}
    exp = mlflow_client.create_experiment("log-artifacts-failing")
    runs = {e: mlflow_client.create_run(exp).info.run_id for e in logs}
    client = type(mlflow_client)(mlflow_client.tracking_uri)
    log_artifact = client.log_artifact

    def changed(run_id, local, artifact_path=None):
        if run_id == runs["log-a-poisoned"]:
            raise TypeError("log_artifact() got an unexpected keyword argument 'artifact_path'")
        return log_artifact(run_id, local, artifact_path=artifact_path)

    client.log_artifact = changed
    spool = Spool(tmp_path / "spool.db")
    stop = threading.Event()
    store = el.EvalLogStore(spool, lambda: client, el.parse_roots([str(root)]), 1 << 30, stop,
                            1.0, DeadLetters(spool.dead_letters, RetryPolicy(2, 0.1, 0.2)),
                            lambda: None)
    store.start()
    try:
        for e, path in logs.items():
            store.enqueue(e, runs[e], str(path))
        wait_for(lambda: spool.dead_letters.counts() == (1, 0) and not store.pending(), 60,
                 what="the failing log a dead letter, the other stored")
        stored = {e: [f.path for f in mlflow_client.list_artifacts(
            r, _mlflow_names.LOG_ARTIFACT_DIR)] for e, r in runs.items()}
        assert stored == {"log-a-poisoned": [], "log-b-fine": ["inspect/logs/log-b-fine.eval"]}
        assert [c["examples"] for c in spool.dead_letters.causes()] == [["log-a-poisoned"]]
        client.log_artifact = log_artifact  # the fix
        assert spool.dead_letters.redrive() == 1
        store._wake.set()
        wait_for(lambda: spool.dead_letters.counts() == (0, 0) and not store.pending(), 60,
                 what="the re-driven log stored")
    finally:
        stop.set()
        store.stop(10)
    assert [f.path for f in mlflow_client.list_artifacts(
        runs["log-a-poisoned"], _mlflow_names.LOG_ARTIFACT_DIR)] == ["inspect/logs/log-a-poisoned.eval"]


def test_size_cap(tmp_path, real_log):
    log = _write_log(real_log, tmp_path / "root" / "a.eval", "e1")
    roots = el.parse_roots([str(tmp_path / "root")])
    size = log.stat().st_size
    assert el.fetch_log(str(log), "e1", roots, size, str(tmp_path)) == str(log)
    with pytest.raises(el.Refused) as e:
        el.fetch_log(str(log), "e1", roots, size - 1, str(tmp_path))
    assert e.value.reason == el.REFUSED_LOG


def test_location_matching(tmp_path):
    root = tmp_path / "logs"
    (root / "a").mkdir(parents=True)
    (tmp_path / "logs-other").mkdir()
    roots = el.parse_roots([str(root), "s3://bucket/evals", "gs://b2"])
    real = os.path.realpath(root)
    ok = {
        str(root / "a" / "x.eval"): f"{real}/a/x.eval",
        (root / "a" / "x.eval").as_uri(): f"{real}/a/x.eval",
        f"file://localhost{root}/x.eval": f"{real}/x.eval",
        f"{root}/a/../x.eval": f"{real}/x.eval",
        "s3://bucket/evals/x.eval": "s3://bucket/evals/x.eval",
        "S3://bucket/evals/sub/x.eval": "s3://bucket/evals/sub/x.eval",
        "gs://b2/any/x.eval": "gs://b2/any/x.eval",
    }
    for location, expected in ok.items():
        assert el.allowed_location(location, roots) == expected, location
    refused = [
        str(tmp_path / "logs-other" / "x.eval"),  # a sibling sharing the root's name as prefix
        f"{root}/../logs-other/x.eval", "relative/x.eval", "x.eval", str(root),
        f"file://otherhost{root}/x.eval", f"file://{root}/x.eval?q=1",
        "s3://bucket/evals-other/x.eval", "s3://bucket/evals/../secret/x.eval",
        "s3://bucket/evals/./x.eval", "s3://bucket/evals//x.eval", "s3://bucket/evals/%2e%2e/x",
        "s3://user:pw@bucket/evals/x.eval", "s3://bucket/evals/x.eval?versionId=1",
        "s3://bucket/evals", "s3://other/evals/x.eval", "gs://b2", "gcs://b2/x.eval",
        "http://127.0.0.1/x.eval", "https://bucket.s3.amazonaws.com/evals/x.eval",
        "ftp://127.0.0.1/x.eval", "data:,x", "memory://x.eval", f"{root}/x\x00.eval",
    ]
    for location in refused:
        assert el.allowed_location(location, roots) is None, location
    assert el.allowed_location(str(root / "x.eval"), ()) is None


def test_bad_roots():
    for bad in ("http://127.0.0.1/logs", "relative", "", "file://host/x", "s3://u:p@bucket/x",
                "ftp://x/y"):
        with pytest.raises(el.RootError):
            el.parse_root(bad)


def test_embedded_stack_roots(tmp_path, monkeypatch):
    """`inspect-otel up`/`demo` pass their own log directories, which the receiver accepts: the
    demo's, and where `inspect eval` writes in that shell (INSPECT_LOG_DIR, else ./logs)."""
    from inspect_otel.stack import EmbeddedStack

    stack = EmbeddedStack(data_dir=tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INSPECT_LOG_DIR", raising=False)
    roots = el.parse_roots(stack.eval_log_roots())
    assert [str(r) for r in roots] == [str((tmp_path / "data" / "eval-logs").resolve()),
                                       str((tmp_path / "logs").resolve())]
    monkeypatch.setenv("INSPECT_LOG_DIR", "relative-logs")
    assert str(el.parse_roots(stack.eval_log_roots())[1]) == str(tmp_path / "relative-logs")
    monkeypatch.setenv("INSPECT_LOG_DIR", "s3://bucket/logs")
    assert str(el.parse_roots(stack.eval_log_roots())[1]) == "s3://bucket/logs/"
    monkeypatch.setenv("INSPECT_LOG_DIR", "http://127.0.0.1/logs")
    assert len(el.parse_roots(stack.eval_log_roots())) == 1
