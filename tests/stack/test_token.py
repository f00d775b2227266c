"""One receiver token per stack, kept in its data directory: real files, real modes, real races;
and every hostile token file `up` meets, through the real command (it refuses before starting
anything, so these runs take seconds)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from inspect_otel.stack import StackError, TOKEN_ENV
from inspect_otel.stack._token import kept_token, read_token_file, stack_token, token_path
from tests.stack.conftest import kill_mentioning
from tests.support.mlflow_server import free_port


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_generated_once_then_kept(tmp_path: Path) -> None:
    old = os.umask(0)  # the file is 0600 whatever the umask lets through
    try:
        first = stack_token(tmp_path, env={})
    finally:
        os.umask(old)
    path = token_path(tmp_path)
    assert first.source == "new" and first.path == path
    assert path.read_text() == first.value + "\n" and len(first.value) >= 40
    assert _mode(path) == 0o600
    again = stack_token(tmp_path, env={})
    assert (again.value, again.source) == (first.value, "kept")
    assert kept_token(tmp_path, env={}) == first.value
    assert "kept in" in again.describe() and first.value not in again.describe()
    assert [p.name for p in tmp_path.iterdir()] == ["receiver.token"]  # no temporary left


def test_the_operators_token_wins_and_the_file_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("not to be touched\n")
    token_path(tmp_path).symlink_to(target)  # would be refused: never even looked at
    got = stack_token(tmp_path, env={TOKEN_ENV: "the-operators-own-token"})
    assert (got.value, got.source, got.path) == ("the-operators-own-token", "environment", None)
    assert kept_token(tmp_path, env={TOKEN_ENV: "x" * 40}) == "x" * 40
    assert target.read_text() == "not to be touched\n" and token_path(tmp_path).is_symlink()


def test_a_stricter_mode_is_kept(tmp_path: Path) -> None:
    path = token_path(tmp_path)
    path.write_text("a" * 43 + "\n")
    path.chmod(0o400)
    assert stack_token(tmp_path, env={}).value == "a" * 43


def _symlink(path: Path) -> str:
    target = path.parent / "target"
    target.write_text("b" * 43)
    target.chmod(0o600)
    path.symlink_to(target)
    return "is a symbolic link"


def _world_readable(path: Path) -> str:
    path.write_text("c" * 43)
    path.chmod(0o644)
    return "is open to other users (mode 0644), so the token may have leaked"


def _group_writable(path: Path) -> str:
    path.write_text("c" * 43)
    path.chmod(0o620)
    return "is open to other users (mode 0620)"


def _directory(path: Path) -> str:
    path.mkdir()
    return "is not a regular file"


def _fifo(path: Path) -> str:
    os.mkfifo(path, 0o600)  # opening it must not hang
    return "is not a regular file"


def _other_owner(path: Path) -> str:
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    path.write_text("d" * 43)
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    return "belongs to another user (uid 65534)"


REFUSED = {"symlink": _symlink, "mode 0644": _world_readable, "mode 0620": _group_writable,
           "directory": _directory, "fifo": _fifo, "another user's": _other_owner}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_file_that_must_not_be_trusted_is_refused_and_left_as_it_is(case: str,
                                                                      tmp_path: Path) -> None:
    path = token_path(tmp_path)
    message = REFUSED[case](path)
    before = os.lstat(path)
    with pytest.raises(StackError, match=message.replace("(", r"\(").replace(")", r"\)")):
        stack_token(tmp_path, env={})
    with pytest.raises(StackError):
        kept_token(tmp_path, env={})
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino, before.st_mode, before.st_mtime_ns)
    if case == "symlink":
        assert (tmp_path / "target").read_text() == "b" * 43  # followed never, written never


UNUSABLE = {
    "empty": b"",
    "blank lines": b"\n\n",
    "too short": b"short\n",
    "other characters": b"a" * 40 + b" b$c\n",
    "two lines": b"a" * 40 + b"\n" + b"b" * 40 + b"\n",
    "binary": bytes(range(256)),
    "huge": b"a" * 10_000,
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_a_file_without_a_usable_token_is_replaced(case: str, tmp_path: Path) -> None:
    path = token_path(tmp_path)
    path.write_bytes(UNUSABLE[case])
    path.chmod(0o600)
    assert kept_token(tmp_path, env={}) is None  # demo finds no token in it
    got = stack_token(tmp_path, env={})
    assert got.source == "replaced" and "replaced a file" in got.describe()
    assert path.read_text() == got.value + "\n" and _mode(path) == 0o600
    assert stack_token(tmp_path, env={}).value == got.value  # and kept from now on


def _race(data_dir: str, out: "multiprocessing.Queue[str]", go: "multiprocessing.Event") -> None:
    go.wait()
    out.put(stack_token(Path(data_dir), env={}).value)


def test_concurrent_starts_agree_on_one_token(tmp_path: Path) -> None:
    """Created atomically: of several stacks starting at once on one data directory, one writes
    the file and every other one reads that token (none sees a half-written file)."""
    ctx = multiprocessing.get_context("fork")
    out, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), out, go)) for _ in range(6)]
    for p in procs:
        p.start()
    go.set()
    tokens = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    assert len(tokens) == 6 and len(set(tokens)) == 1
    assert token_path(tmp_path).read_text() == tokens[0] + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["receiver.token"]


def test_a_file_system_without_hard_links_still_gets_a_private_file(tmp_path: Path,
                                                                    monkeypatch) -> None:
    """os.link is refused on some file systems (vfat, some network mounts); forced here, since
    this machine's file systems all have hard links: rename puts the 0600 file in place."""
    def no_links(*_a, **_k):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    got = stack_token(tmp_path, env={})
    assert got.source == "new" and token_path(tmp_path).read_text() == got.value + "\n"
    assert _mode(token_path(tmp_path)) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["receiver.token"]


def test_reading_refuses_before_it_reads(tmp_path: Path) -> None:
    """No file: nothing to refuse, nothing created by a read."""
    assert read_token_file(token_path(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["symlink", "mode 0644"])
def test_up_refuses_a_hostile_token_file_in_one_line(case: str, tmp_path: Path) -> None:
    """`up` checks the token file before it starts anything: exit 1, one line naming the file
    and what to do, nothing started or created, the file as it was."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    path = token_path(data)
    message = REFUSED[case](path)
    before = os.lstat(path)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "INSPECT_OTEL_", "MLFLOW_"))}
    try:  # were the check broken, `up` would start a stack: stop it whatever happens
        p = subprocess.run(
            [sys.executable, "-m", "inspect_otel.cli", "up", "--data-dir", str(data),
             "--mlflow-port", str(free_port()), "--port", str(free_port()),
             "--grpc-port", str(free_port())],
            capture_output=True, text=True, timeout=60, env=env, cwd=str(tmp_path))
    finally:
        kill_mentioning(str(tmp_path))
    assert p.returncode == 1 and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} ") and message in lines[0], \
        p.stderr
    assert sorted(x.name for x in data.iterdir()) == sorted(["receiver.token"] + (
        ["target"] if case == "symlink" else []))
    assert os.lstat(path).st_ino == before.st_ino
