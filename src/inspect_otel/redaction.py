"""The one secret policy: what looks secret, and what a string becomes before it leaves.

Used by the hook (every attribute, event, status and resource string on its way to OTLP) and by
the receiver (what may become an MLflow param). Only ``re`` and the standard library: the hook
imports this on the eval's hot path.

Two tiers.

**Metadata** (task and model args, sample metadata, errors, log messages, locations, resource
attributes; :meth:`Redactor.text`, :meth:`Redactor.data`), after Logfire's default scrubbing:

- **Key names decide for their own value.** A mapping key or attribute name that names a secret
  (``password``, ``api_key``, ``X-Api-Key``, ``authorization``, ``session``, ``cookie``, ``jwt``,
  ``token``, ...) has its whole value replaced, whatever the value looks like. Names are never
  changed, and only the name's own value is: ``gen_ai.usage.input_tokens``, ``author`` or a bare
  ``key`` are not secret names.
- **Values are scanned for secret shapes.** Credentials in a URL (``https://[REDACTED]@host/v1``:
  the URL stays), ``key=value`` / ``key: value`` / ``"key": "value"`` pairs with a secret key
  inside free text, JWTs, PEM private keys, bearer/basic credentials, the major providers' and
  clouds' key formats, and the user's ``INSPECT_OTEL_REDACT_PATTERNS``.

**Captured content** (messages, tool arguments and results, outputs, score explanations, raw
provider calls; :meth:`Redactor.content`, :meth:`Redactor.content_data`) is what the model saw and
did, the evidence of the eval: it loses only high-confidence secrets. The same shapes (URL
credentials, JWTs, PEM keys, bearer/basic credentials, key formats, the user's patterns), and a
secret-named key only where its value is a *literal*: a quoted string, a value that looks generated
(letters and digits), or any value of an upper-case (environment-style) name. Code and prose are
never rewritten because a word such as password, token, session, cookie or auth appears in them:
``auth: AuthType``, ``cookies = request.cookies or {}`` and ``new_auth = get_netrc_auth(url)``
stay as they are. In JSON data a secret-named key loses only a string value; a structure under
it (a tool's parameter schema) is walked. Logfire exempts LLM messages from its word rules for the
same reason (logfire PR #1392).
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
# No bare "key": neither Logfire nor Sentry treats it as secret (a dict key, a sort key, a tool's
# "key" argument); api_key, private_key, access_key are in the words above.
_SECRET_KEY = re.compile("|".join(_KEY_WORDS))
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

# Credential shapes of the major model providers, clouds and code hosts.
PROVIDER_KEY_PATTERNS: tuple[str, ...] = (
    r"sk-ant-[A-Za-z0-9_\-]{16,}",
    r"sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{16,}",
    r"(?:AKIA|ASIA)[0-9A-Z]{16}",
    r"github_pat_[A-Za-z0-9_]{30,}",
    r"glpat-[A-Za-z0-9_\-]{20,}",
    r"(?:sk|rk)_live_[A-Za-z0-9]{16,}",
    r"pypi-AgE[A-Za-z0-9_\-]{30,}",
    r"npm_[A-Za-z0-9]{30,}",
    r"AIza[0-9A-Za-z_\-]{35}",
    r"gh[pousr]_[A-Za-z0-9]{30,}",
    r"hf_[A-Za-z0-9]{30,}",
    r"xox[abposr]-[A-Za-z0-9\-]{10,}",
    r"gsk_[A-Za-z0-9]{30,}",
    r"xai-[A-Za-z0-9]{30,}",
)
# A bearer/basic credential must look generated (a digit, one of + / = . _ - ~, or a lower-to-upper
# case change), so that prose like "basic understanding" stays.
# (A dot counts only inside the token: "Basic authentication." is prose.)
_GENERATED = r"(?=[A-Za-z0-9._\-~+/]*(?:[0-9_\-~+/=]|[a-z][A-Z]|\.[A-Za-z0-9]))"
_GENERATED_BASE64 = r"(?=[A-Za-z0-9+/]*(?:[0-9+/=]|[a-z][A-Z]))"
_WORD_SHAPES: tuple[tuple[str, str], ...] = (
    # The header form (capital B) needs no such look in metadata.
    ("bearer", rf"(?:Bearer\s+|(?i:bearer)\s+{_GENERATED})[A-Za-z0-9._\-~+/]{{8,}}=*"),
    ("basic", rf"(?i:basic)\s+{_GENERATED_BASE64}[A-Za-z0-9+/]{{12,}}=*"),
)
# Captured content: prose and docs say "Bearer authentication"; a credential looks generated.
_CONTENT_WORD_SHAPES: tuple[tuple[str, str], ...] = (
    ("bearer", rf"(?i:bearer)\s+{_GENERATED}[A-Za-z0-9._\-~+/]{{8,}}=*"),
    _WORD_SHAPES[1],
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


# --- captured content: is a secret-named key's value a literal? --------------------------------
# Code says `auth_header = 'Authorization'`, `auth = "Basic " + encoded`, `cookies = request.cookies`
# and `HTTP_401_UNAUTHORIZED = 401`; configs and shells say `DB_PASSWORD=hunter2` and
# `"api_key": "sk-..."`. Only the second kind is redacted in captured content.
_EXPRESSION = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")  # request.cookies, os.environ
_IDENTIFIER = re.compile(r"[A-Za-z_][\w\-./:]*")  # a name, a header, a path: no secret look
_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")  # TSPECIALS, WILDCARD_AND_ID: a reference to one
_SCHEME_VALUE = re.compile(r"(?i:bearer|basic|token|digest)[ \t]+(\S+)")
# Placeholders and masks: <strong-password>, ********, %s, {0}, ${VAR}, ..., REDACTED.
_PLACEHOLDER = re.compile(
    r"<[^<>]*>|\{[^{}]*\}|\$\{?\w+\}?|%[-+ #0-9.]*[a-zA-Z]|%\(\w+\)[a-z]|(.)\1*|\.{3}|…"
    r"|(?i:redacted|changeme|your[-_ ]?\w+|xxx+)")
_SYMBOL_INSIDE = re.compile(r"[A-Za-z0-9][!@#$^&*+?~]+[A-Za-z0-9]")  # geheim$parole, not [^/?#]*
_DIGIT_RUN = re.compile(r"[0-9][0-9 \-]{4,}[0-9]")  # 078-05-1120, 4111 1111 1111 1111
# What may follow a literal's end: the end of a line or value (",", ")", "}", a comment). An
# operator instead (`"Basic " + x`, `'%s' % x`, `'{0}'.format`) makes it part of an expression.
_CONTINUES_EXPRESSION = frozenset(".%+*[(")
_CODE_WORDS = frozenset(("self", "cls", "none", "null", "nil", "true", "false", "undefined"))


def _looks_generated(value: str) -> bool:
    """Letters and digits together, a run of six or more digits (an SSN, a card, a PIN; not a
    version, an OID or an address, which have dots), or a symbol inside a word, as passwords
    have and names do not."""
    if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
        return True
    return bool(_DIGIT_RUN.fullmatch(value) and sum(c.isdigit() for c in value) >= 6
                or _SYMBOL_INSIDE.search(value))


def _names_the_concept(value: str) -> bool:
    # "password", "<token>", "session_id": a value that names what belongs there, not a secret
    lowered = value.lower()
    return any(root in lowered for root in _KEY_ROOTS)


def _env_style(name: str) -> bool:
    return name.isupper() and any(c.isalpha() for c in name)


def _is_literal(value: str, name: str, tail: str, quoted_key: bool = False) -> bool:
    """Whether ``value``, found after the secret-named key ``name`` and followed by ``tail``, is a
    literal secret in captured content (module docstring) rather than code or prose. A quoted
    key with a quoted value (``"api_key": "..."``) is data: any value but a placeholder."""
    following = tail.lstrip(" \t")[:1]
    if following in _CONTINUES_EXPRESSION:
        return False
    quote = next((q for q in ('\\"', '"', "'") if value.startswith(q) and value.endswith(q)
                  and len(value) >= 2 * len(q)), None)
    if quote is not None:
        inner = value[len(quote):-len(quote)]
        if _PLACEHOLDER.fullmatch(inner) or inner.lower() in _CODE_WORDS:
            return False
        scheme = _SCHEME_VALUE.match(inner)
        if scheme is not None:  # 'Basic realm="x"' is a challenge; "Bearer 9f8e..." a credential
            return len(scheme.group(1)) >= 8 and _looks_generated(scheme.group(1))
        if quoted_key or _looks_generated(inner):
            return True
        # A plain word under an environment-style name (DB_PASSWORD = "letmein"); not a name,
        # header or path (AUTH_HEADER = "Authorization", TOKEN = "receive_message").
        return (_env_style(name) and inner.isalpha() and not inner[:1].isupper()
                and not _names_the_concept(inner))
    scheme = _SCHEME_VALUE.match(value)
    if scheme is not None:
        return len(scheme.group(1)) >= 8 and _looks_generated(scheme.group(1))
    if value[:1] in "$%@<" or value == name or _EXPRESSION.fullmatch(value) \
            or value.lower() in _CODE_WORDS or _PLACEHOLDER.fullmatch(value):
        return False
    if _looks_generated(value):
        return True
    # NAME=value / NAME: value on a line of its own (.env, shell, compose): any word but another
    # constant's name. Prose after a colon (`UNAUTHENTICATED: The request ...`) goes on.
    ends_line = tail[:1] in ("", "\n", "\r", "#", ";") or tail.startswith((" #", "\t#"))
    return (_env_style(name) and ends_line and any(c.isalpha() for c in value)
            and not _CONSTANT.fullmatch(value) and not _names_the_concept(value))


def _key_values(text: str, lowered: str, literal_only: bool = False) -> str:
    """``key=value`` pairs with a secret key, their values replaced. ``literal_only`` (captured
    content): only where the value is a literal (:func:`_is_literal`)."""
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
                replacement = None
                # A key inside a quoted string whose value starts with that string's closing
                # quote (`header="Set-Cookie:", sep=...`) has no value here.
                opening = text[start - 1] if start and text[start - 1] in "\"'" else ""
                quoted_key = bool(opening) and match.group(0).lstrip("\\").startswith(opening)
                inside_string = opening and not quoted_key and match.group(1).startswith(opening)
                if is_secret_key(name) and not inside_string and (not literal_only or _is_literal(
                        match.group(1), name, text[match.end(1):match.end(1) + 64], quoted_key)):
                    replacement = _redact_value(match.group(1))
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
    r"-----BEGIN|eyJ|sk-|AKIA|ASIA|AIza|gh[pousr]_|github_pat_|glpat-|[sr]k_live_|pypi-|npm_"
    r"|hf_|xox|gsk_|xai-|[:=]"
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
    _content_words: tuple[tuple[str, re.Pattern[str]], ...] = field(
        init=False, repr=False, compare=False)
    _extra: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _cache: dict[str, str] = field(init=False, repr=False, compare=False)
    _content_cache: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        literal = tuple(re.compile(p) for p in _LITERAL_SHAPES)
        words = tuple((w, re.compile(p)) for w, p in _WORD_SHAPES)
        content_words = tuple((w, re.compile(p)) for w, p in _CONTENT_WORD_SHAPES)
        extra = (re.compile("|".join(f"(?:{_scoped(p)})" for p in self.extra_patterns))
                 if self.extra_patterns else None)
        object.__setattr__(self, "_literal", literal)
        object.__setattr__(self, "_words", words)
        object.__setattr__(self, "_content_words", content_words)
        object.__setattr__(self, "_extra", extra)
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_content_cache", {})

    def text(self, text: str) -> str:
        """``text`` (metadata) with every secret shape and secret-named value replaced."""
        if type(text) is Redacted:
            return str.__str__(text)  # a plain str again, for the SDK and exporters
        return self._cached(text, self._cache, False)

    def content(self, text: str) -> str:
        """``text`` (captured content) with its high-confidence secrets replaced, nothing else
        (module docstring)."""
        if type(text) is Redacted:
            return str.__str__(text)
        return self._cached(text, self._content_cache, True)

    def _cached(self, text: str, cache: dict[str, str], content: bool) -> str:
        if len(text) > _CACHED_LENGTH:
            return self._scrub(text, content)
        out = cache.get(text)
        if out is None:
            out = self._scrub(text, content)
            if len(cache) >= _CACHE_ENTRIES:
                cache.clear()
            cache[text] = out
        return out

    def _scrub(self, text: str, content: bool = False) -> str:
        if len(text) < 5:  # the shortest secret shape is "ssn=1"
            return text
        if len(text) <= _CACHED_LENGTH and _SHORT_TRIGGER.search(text) is None:
            return self._extra.sub(REDACTED, text) if self._extra is not None else text
        out = _URL_USERINFO.sub(_URL_REPLACEMENT, text) if "://" in text else text
        for regex in self._literal:
            out = regex.sub(_unless_inside_word, out)
        lowered = _lower(out)
        for word, regex in (self._content_words if content else self._words):
            if word in lowered:
                out = regex.sub(REDACTED, out)
                lowered = _lower(out)
        if ":" in out or "=" in out:
            out = _key_values(out, lowered, literal_only=content)
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

    def content_data(self, value: Any) -> Any:
        """Captured content as JSON data (tool arguments, messages, a raw provider call): strings
        scanned by :meth:`content`; a secret-named key loses a non-empty string value (a literal),
        while a structure under it is walked (``{"token": {"type": "string"}}`` is a tool's
        parameter schema). Non-JSON values become None, as in :meth:`data`."""
        if isinstance(value, str):
            return self.content(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                key = str(key)
                if isinstance(item, str) and item and item not in _NOT_A_VALUE \
                        and is_secret_key(key):
                    out[key] = REDACTED
                else:
                    out[key] = self.content_data(item)
            return out
        if isinstance(value, (list, tuple)):
            return [self.content_data(v) for v in value]
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
