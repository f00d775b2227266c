"""One receiver token per stack, kept in its data directory across restarts.

``inspect-otel up`` and ``demo`` read ``<data-dir>/receiver.token`` or create it, so the line a
shell exported keeps working after a restart. The operator's ``INSPECT_OTEL_RECEIVER_TOKEN``
wins, and then the file is neither read nor written.

The file is created atomically (a private temporary file, linked into place: a concurrent start
either wins or reads the winner's token), mode 0600. What an existing file may be, and what
happens:

| the file | |
|---|---|
| absent | a new token is generated and kept |
| a regular file of ours, mode 0600 (or stricter), holding a token | kept |
| empty, or not a token (other characters, too short or long, several lines) | replaced by a new token (no shell can hold a working copy of it; a note says so) |
| a symbolic link, not a regular file, another user's, or readable or writable by others | refused with one line: it may be an attack or a leak, the operator looks |

Nothing here prints the token: it leaves only through the file and the receiver's environment.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ._errors import StackError

TOKEN_ENV = "INSPECT_OTEL_RECEIVER_TOKEN"
TOKEN_FILE = "receiver.token"
# What a kept token may look like: URL-safe characters only (it travels percent-encoded in
# OTEL_EXPORTER_OTLP_HEADERS and as-is in a shell), long enough to be a secret.
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{32,512}")
_MAX_READ = 4096


@dataclass(frozen=True)
class StackToken:
    value: str
    source: str  # "environment" | "kept" | "new" | "replaced"
    path: Path | None  # the file, unless the token came from the environment

    def describe(self) -> str:
        """For the start-up output: where the token lives (never the token itself)."""
        if self.path is None:
            return f"from {TOKEN_ENV}"
        return {"kept": f"kept in {self.path} (the same as before: exported lines still work)",
                "new": f"generated, kept in {self.path}",
                "replaced": f"generated, kept in {self.path} (replaced a file that held no "
                            "usable token)"}[self.source]


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def stack_token(data_dir: Path, env: dict[str, str] | None = None) -> StackToken:
    """The stack's token: the environment's, else the kept one, else a new one (kept). Raises
    StackError (one line) for a token file that must not be used."""
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV):
        return StackToken(env[TOKEN_ENV], "environment", None)
    path = token_path(data_dir)
    found = read_token_file(path)
    if found is not None and _TOKEN.fullmatch(found):
        return StackToken(found, "kept", path)
    token = secrets.token_urlsafe(32)
    if found is None:
        winner = _create(path, token)
        return StackToken(winner, "new" if winner == token else "kept", path)
    _replace(path, token)
    return StackToken(token, "replaced", path)


def kept_token(data_dir: Path, env: dict[str, str] | None = None) -> str | None:
    """The token a running stack of ``data_dir`` uses (the environment's, or the kept one), for
    ``demo`` against a stack that ``up`` started; None when there is none."""
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV]
    found = read_token_file(token_path(data_dir))
    return found if found is not None and _TOKEN.fullmatch(found) else None


def read_token_file(path: Path) -> str | None:
    """The file's text (stripped; "" when it holds nothing usable as text), None when there is
    no file. Refuses, with a StackError, a file that must not be trusted."""
    try:
        # O_NOFOLLOW: a symlink is refused, never followed; O_NONBLOCK: a FIFO does not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise StackError(f"{path} is a symbolic link: the token file must be a regular file "
                             "of yours. Remove the link (a new token is then generated)") from None
        raise StackError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        _check_trusted(path, st)
        data = os.read(fd, _MAX_READ + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_READ:
        return ""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return ""
    return text if "\n" not in text else ""


def _check_trusted(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise StackError(f"{path} is not a regular file: remove it (a new token is then "
                         "generated)")
    if st.st_uid != os.geteuid():
        raise StackError(f"{path} belongs to another user (uid {st.st_uid}): remove it (a new "
                         "token is then generated)")
    if st.st_mode & 0o077:
        raise StackError(f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}), "
                         "so the token may have leaked: remove it to get a new token, or "
                         f"`chmod 600 {path}` to keep this one")


def _private_temp(path: Path, token: str) -> str:
    """A 0600 temporary file beside ``path`` holding ``token`` (mkstemp: O_EXCL, mode 0600)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _create(path: Path, token: str) -> str:
    """Put ``token`` in place unless a file appeared meanwhile; returns the token in force."""
    tmp = _private_temp(path, token)
    try:
        os.link(tmp, path)  # atomic, and never replaces: of two concurrent starts one wins
    except FileExistsError:
        found = read_token_file(path)
        if found is None or not _TOKEN.fullmatch(found):
            raise StackError(f"{path} changed while the stack was starting: start it again") \
                from None
        return found
    except OSError:
        # A file system without hard links: rename is atomic too, only not create-if-absent.
        os.replace(tmp, path)
        return token
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return token


def _replace(path: Path, token: str) -> None:
    tmp = _private_temp(path, token)
    try:
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
