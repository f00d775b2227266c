"""The one secret policy: what looks secret, and what a string becomes before it leaves.

Used by the hook (every attribute, event, status and resource string on its way to OTLP) and by
the receiver (what may become an MLflow param). Only ``re`` and the standard library: the hook
imports this on the eval's hot path.

Two rules, after Logfire's default scrubbing:

- **Key names decide for their own value.** A mapping key or attribute name that names a secret
  (``password``, ``api_key``, ``X-Api-Key``, ``authorization``, ``session``, ``cookie``, ``jwt``,
  ``token``, ...) has its whole value replaced, whatever the value looks like. Names are never
  changed, and only the name's own value is: ``gen_ai.usage.input_tokens`` or ``author`` are not
  secret names.
- **Values are scanned for secret shapes.** Credentials in a URL (``https://[REDACTED]@host/v1``:
  the URL stays), ``key=value`` / ``key: value`` / ``"key": "value"`` pairs with a secret key
  inside free text, JWTs, PEM private keys, bearer/basic credentials, the major providers' key
  formats, and the user's ``INSPECT_OTEL_REDACT_PATTERNS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# --- key names ------------------------------------------------------------------------------------
# Matched against a key normalised to lower case with camelCase split by "_" (apiKey -> api_key,
# X-Api-Key -> x-api-key). The breadth of Logfire's default list, plus token, key and bearer.
_SEP = r"[._ -]?"
_TOKEN_NOT_SECRET = r"(?![a-z]|[._ -]?(?:counts?|limits?|budget|usage|type|len(?:gth)?|ids?)(?![a-z]))"
_KEY_WORDS = (
    r"passw(?:or)?d|passphrase|mysql_pwd|secret|credential|session|cookie",
    r"auth(?!or(?:s|ed|ship)?(?![a-z]))",  # auth, oauth, authorization; not author(s)
    rf"private{_SEP}key|api{_SEP}key|access{_SEP}key",
    rf"social{_SEP}security|credit{_SEP}card",
    r"(?<![a-z])(?:csrf|xsrf|jwt|ssn)(?![a-z])",
    rf"token{_TOKEN_NOT_SECRET}",  # access_token, csrftoken; not tokens, max_tokens, token_count
    r"bearer",
)
_SECRET_KEY = re.compile("|".join(_KEY_WORDS) + r"|^key$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=4096)
def is_secret_key(name: str) -> bool:
    """Whether values under the mapping key ``name`` are secrets whatever they look like."""
    return bool(_SECRET_KEY.search(_CAMEL.sub("_", name).lower()))


# Keys of a provider call that hold HTTP headers (GenerateConfig.extra_headers reaches the SDK as
# extra_headers): dropped whole, whatever they hold, before the rest is scanned.
_HEADER_KEY = re.compile(r"(?i)headers?$")


def without_headers(value: Any) -> Any:
    """JSON data without any ``*headers`` key, at any depth (a raw provider call's headers
    carry credentials under names no key rule knows, e.g. ``X-Client-Tag``)."""
    if isinstance(value, dict):
        return {k: without_headers(v) for k, v in value.items() if not _HEADER_KEY.search(str(k))}
    if isinstance(value, list):
        return [without_headers(v) for v in value]
    return value


_SECRET_ATTRIBUTES: dict[str, bool] = {}  # attribute names repeat on every span: a plain dict


def is_secret_attribute(name: str) -> bool:
    """The same for a dotted attribute name: its last segment decides (``...metadata.api_key``
    is secret; ``gen_ai.token.type`` is not)."""
    secret = _SECRET_ATTRIBUTES.get(name)
    if secret is None:
        secret = is_secret_key(name.rsplit(".", 1)[-1])
        if len(_SECRET_ATTRIBUTES) >= 4096:
            _SECRET_ATTRIBUTES.clear()
        _SECRET_ATTRIBUTES[name] = secret
    return secret


# --- secret shapes inside text ----------------------------------------------------------------------
# Each shape is its own regex starting with a literal, so that ``re`` can skip through text to that
# literal at memchr speed (one alternation of all shapes runs about 30x slower on long content).
# Shapes without a fixed-case literal are only run when their word is in the lower-cased text.

# Credential shapes of the major providers.
PROVIDER_KEY_PATTERNS: tuple[str, ...] = (
    r"sk-ant-[A-Za-z0-9_\-]{16,}",
    r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{16,}",
    r"AKIA[0-9A-Z]{16}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"hf_[A-Za-z0-9]{30,}",
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"gsk_[A-Za-z0-9]{30,}",
    r"xai-[A-Za-z0-9]{30,}",
)
# A bearer/basic credential must look generated (a digit, one of + / = . _ - ~, or a lower-to-upper
# case change), so that prose like "basic understanding" stays.
_GENERATED = r"(?=[A-Za-z0-9._\-~+/]*(?:[0-9._\-~+/=]|[a-z][A-Z]))"
_WORD_SHAPES: tuple[tuple[str, str], ...] = (
    # The header form (capital B) needs no such look.
    ("bearer", rf"(?:Bearer\s+|(?i:bearer)\s+{_GENERATED})[A-Za-z0-9._\-~+/]{{8,}}=*"),
    ("basic", rf"(?i:basic)\s+{_GENERATED}[A-Za-z0-9+/]{{12,}}=*"),
)
_LITERAL_SHAPES: tuple[str, ...] = (
    # PEM private key, to its END line (or, cut short, to the end of the string or JSON string).
    r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY-----[\s\S]*?"
    r"(?:-----END[A-Z0-9 ]{0,40} PRIVATE KEY-----|(?=\\?\"|$))",
    # JWT: three base64url segments, the first a JSON object ("eyJ").
    r"eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
    *PROVIDER_KEY_PATTERNS,
)
# URL userinfo: "://" anchors it; the last "@" before the path, query or fragment ends it.
_URL_USERINFO = re.compile(r"://[^\s/?#\"'<>\\]+@")
_URL_REPLACEMENT = "://" + REDACTED + "@"

# key=value, key: value, "key": "value" in free text. Found from the key words (lower-cased text),
# then the whole key token is judged by the key-name rule above.
_KEY_ROOTS = ("pass", "pwd", "secret", "credential", "session", "cookie", "auth", "key", "csrf",
              "xsrf", "jwt", "ssn", "token", "security", "card")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_KEY_TOKEN = re.compile(r"[\w.\-]+")
_SEPARATED_VALUE = re.compile(
    r"(?:\\?[\"'])?[ \t]{0,3}[:=][ \t]{0,3}("
    r'\\"(?:[^"\\]|\\[^"]){1,4096}?\\"'  # \"escaped\" (JSON text inside a JSON string)
    r'|"(?:[^"\\\n]|\\.){1,4096}"'  # "quoted" (JSON)
    r"|'[^'\n]{1,4096}'"
    r"|(?:(?i:bearer|basic|token|digest)[ \t]+)?[^\s,;&\"'<>(){}\[\]\\]+)"
)
_NOT_A_VALUE = frozenset(("", REDACTED, "null", "None", "true", "false", "True", "False"))
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _scoped(pattern: str) -> str:
    # "(?i)x" is only legal at the start of a whole regex; "(?i:x)" works inside the alternation.
    match = re.match(r"^\(\?([aiLmsux]+)\)", pattern)
    return f"(?{match.group(1)}:{pattern[match.end():]})" if match else pattern


def _lower(text: str) -> str:
    """Lower case with the same indices as ``text`` (a few non-ASCII letters change length when
    lower-cased; those then stay as they are)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text.translate(_ASCII_LOWER)


def _unless_inside_word(match: re.Match[str]) -> str:
    # "task-..." is not an "sk-" key: a shape must start a word.
    start = match.start()
    return match.group(0) if start and match.string[start - 1].isalnum() else REDACTED


def _redact_value(value: str) -> str | None:
    """The redacted form of a free-text value (quotes kept, so JSON stays JSON), or None."""
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            inner = value[len(quote):-len(quote)]
            return None if inner in _NOT_A_VALUE else quote + REDACTED + quote
    return None if value in _NOT_A_VALUE else REDACTED


def _key_values(text: str, lowered: str) -> str:
    # From each key word: the key token around it, if a separator and a value follow it.
    found: dict[int, tuple[int, str]] = {}  # value start -> (value end, replacement)
    for root in _KEY_ROOTS:
        i = lowered.find(root)
        while i != -1:
            token = _KEY_TOKEN.match(text, i)
            end = token.end() if token is not None else i + len(root)
            match = _SEPARATED_VALUE.match(text, end)
            if match is not None and match.start(1) not in found:
                start = i
                while start > 0 and text[start - 1] in _TOKEN_CHARS:
                    start -= 1
                name = text[start:end].rsplit(".", 1)[-1]
                # A bare "key: ..." is prose; a quoted "key" is a JSON or repr key.
                bare_key = name.lower() == "key" and not (start and text[start - 1] in "\"'")
                replacement = (_redact_value(match.group(1))
                               if is_secret_key(name) and not bare_key else None)
                if replacement is not None:
                    found[match.start(1)] = (match.end(1), replacement)
            i = lowered.find(root, max(end, i + 1))
    if not found:
        return text
    parts: list[str] = []
    last = 0
    for value_start in sorted(found):
        if value_start < last:
            continue
        value_end, replacement = found[value_start]
        parts += (text[last:value_start], replacement)
        last = value_end
    parts.append(text[last:])
    return "".join(parts)


# Short strings (names, ids, statuses) repeat across spans and samples: their result is cached.
# Those that do not (uuids, call ids) are first searched for anything any shape starts with: one
# alternation is cheaper than every shape on a short string, and on a long one it is the reverse.
_CACHED_LENGTH = 160
_CACHE_ENTRIES = 4096
_SHORT_TRIGGER = re.compile(
    r"-----BEGIN|eyJ|sk-|AKIA|AIza|gh[pousr]_|hf_|xox|gsk_|xai-|[:=]"
    r"|[Bb](?:[Ee][Aa][Rr][Ee][Rr]|[Aa][Ss][Ii][Cc])")


class Redacted(str):
    """A string this policy has already redacted (``ContentPolicy.clean``: before truncating,
    so that a cut never splits a secret). The exporter's pass lets it through unscanned: long
    content would otherwise be scanned twice. Anything built from it (``+``, f-strings, slices)
    is a plain ``str`` again, and scanned."""

    __slots__ = ()


@dataclass(frozen=True)
class Redactor:
    """The secret policy with the user's extra patterns (``INSPECT_OTEL_REDACT_PATTERNS``)."""

    extra_patterns: tuple[str, ...] = ()
    _literal: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _words: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)
    _extra: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _cache: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        literal = tuple(re.compile(p) for p in _LITERAL_SHAPES)
        words = tuple((w, re.compile(p)) for w, p in _WORD_SHAPES)
        extra = (re.compile("|".join(f"(?:{_scoped(p)})" for p in self.extra_patterns))
                 if self.extra_patterns else None)
        object.__setattr__(self, "_literal", literal)
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_extra", extra)
        object.__setattr__(self, "_cache", {})

    def text(self, text: str) -> str:
        """``text`` with every secret shape replaced."""
        if type(text) is Redacted:
            return str.__str__(text)  # a plain str again, for the SDK and exporters
        if len(text) > _CACHED_LENGTH:
            return self._scrub(text)
        cache: dict[str, str] = self._cache
        out = cache.get(text)
        if out is None:
            out = self._scrub(text)
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[text] = out
        return out

    def _scrub(self, text: str) -> str:
        if len(text) < 5:  # the shortest secret shape is "ssn=1"
            return text
        if len(text) <= _CACHED_LENGTH and _SHORT_TRIGGER.search(text) is None:
            return self._extra.sub(REDACTED, text) if self._extra is not None else text
        out = _URL_USERINFO.sub(_URL_REPLACEMENT, text) if "://" in text else text
        for regex in self._literal:
            out = regex.sub(_unless_inside_word, out)
        lowered = _lower(out)
        for word, regex in self._words:
            if word in lowered:
                out = regex.sub(REDACTED, out)
                lowered = _lower(out)
        if ":" in out or "=" in out:
            out = _key_values(out, lowered)
        if self._extra is not None:
            out = self._extra.sub(REDACTED, out)
        return out

    def has_secret(self, text: str) -> bool:
        return self.text(text) != text

    def value(self, key: str, value: Any) -> Any:
        """A value under mapping key ``key``: wholly redacted under a secret key name (unless
        empty), otherwise its strings scanned and its mappings walked."""
        if is_secret_key(key) and value not in (None, "", [], {}):
            return REDACTED
        return self.data(value)

    def data(self, value: Any) -> Any:
        """JSON-like data with secret keys' values and secret shapes in strings replaced.
        Anything that is not JSON data (clients, callables in model args) becomes None, as in
        Inspect's own log, so that a live export and a replay of its log carry the same value."""
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Mapping):
            return {str(k): self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return None

    def attribute(self, name: str, value: Any) -> Any:
        """An OTel attribute value (str, bool, number, or a homogeneous tuple) under ``name``."""
        if isinstance(value, str):
            if value and is_secret_attribute(name):
                return REDACTED
            return self.text(value)
        if isinstance(value, (tuple, list)) and value and isinstance(value[0], str):
            if is_secret_attribute(name):
                return tuple(REDACTED for _ in value)
            return tuple(self.text(v) if isinstance(v, str) else v for v in value)
        return value

    def attributes(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """Every string value of an attribute set, redacted (the export choke point; the loop of
        :meth:`attribute`, inlined for the common case: it runs for every span)."""
        out: dict[str, Any] = {}
        text = self.text
        for name, value in attributes.items():
            if type(value) is str or type(value) is Redacted:
                out[name] = REDACTED if value and is_secret_attribute(name) else text(value)
            elif type(value) is tuple and value and type(value[0]) is str:
                out[name] = self.attribute(name, value)
            else:
                out[name] = value  # numbers, booleans; other types are the SDK's to refuse
        return out


DEFAULT = Redactor()
