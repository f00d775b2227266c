"""What looks like a secret: such values never become MLflow params or tags."""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(
    r"(api[_-]?key|apikey|secret|token|passw(or)?d|credential|authorization|auth[_-]?header|"
    r"private[_-]?key|access[_-]?key|session[_-]?key|bearer)",
    re.IGNORECASE,
)


_SECRET_VALUE = re.compile(
    r"(\bsk-[A-Za-z0-9_\-]{12,}|\bBearer\s+[A-Za-z0-9._\-]{8,}|\bAKIA[0-9A-Z]{16}\b|"
    r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bxox[abprs]-[A-Za-z0-9\-]{10,}|\bAIza[0-9A-Za-z_\-]{30,}|"
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)



def looks_secret(key: str, value: str) -> bool:
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]) or _SECRET_VALUE.search(value))
