"""MLflow's backend store as the operator names it: shown without its password, checked before
anything starts."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ._errors import StackError

BACKEND_STORE_ENV = "MLFLOW_BACKEND_STORE_URI"  # mlflow server's own variable
DB_CONNECT_TIMEOUT_S = 5

# SQLAlchemy URL scheme -> the Python driver MLflow's SQLAlchemy store imports for it
_PG_DRIVERS = {"postgresql": "psycopg", "postgresql+psycopg": "psycopg",
               "postgresql+psycopg2": "psycopg2"}


def redact_uri(uri: str) -> str:
    """The URI with its password replaced by ***, for messages and logs. A user name without a
    password (``https://<token>@host``) is often itself the credential: it is replaced whole."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    if ":" not in userinfo:
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def check_backend_store(uri: str, timeout: float = DB_CONNECT_TIMEOUT_S) -> None:
    """Fail early, in one line, on a store MLflow would die on with a traceback in its log: a
    PostgreSQL URI without its driver installed, or a database that cannot be reached."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    shown = redact_uri(uri)
    if scheme == "postgres":
        raise StackError(f"--backend-store-uri {shown}: write postgresql:// (SQLAlchemy, which "
                         "MLflow uses, does not accept postgres://)")
    if scheme not in _PG_DRIVERS:
        return  # sqlite, mysql, mssql: MLflow checks these itself
    driver = _PG_DRIVERS[scheme]
    try:
        module = __import__(driver)
    except ImportError:
        extra = "pip install 'inspect-otel[postgres]'" if driver == "psycopg" else "pip install psycopg2-binary"
        raise StackError(f"MLflow needs the PostgreSQL driver `{driver}` for {shown}: "
                         f"{extra}") from None
    dsn = "postgresql://" + uri.split("://", 1)[1]  # libpq reads the URI without the +driver
    try:
        conn = module.connect(dsn, connect_timeout=int(timeout))
    except Exception as exc:  # noqa: BLE001 (any driver error: refused, auth, no such database)
        raise StackError(f"cannot reach MLflow's backend store {shown}: {_one_line(exc)}") from None
    conn.close()
