"""The one secret policy (``inspect_otel.redaction``): key names, secret shapes in text, and what
the exporter lets out. Table-driven; the real-eval checks are in test_redaction_e2e.py."""

from __future__ import annotations

import json

import pytest
from inspect_ai.model import GenerateConfig

from inspect_otel import semconv as sc
from inspect_otel.redaction import REDACTED, Redactor, is_secret_attribute, is_secret_key

R = Redactor()

SECRET_KEYS = [
    "password", "Password", "db_password", "passwd", "mysql_pwd", "passphrase", "secret",
    "client_secret", "jwtSecret", "auth", "oauth", "authorization", "Authorization", "auth_header",
    "credential", "credentials", "private_key", "privateKey", "private-key", "api_key", "api-key",
    "apiKey", "APIKEY", "X-Api-Key", "x_api_key", "access_key", "session", "session_id",
    "sessionToken", "cookie", "Set-Cookie", "csrf", "x-csrf-token", "xsrf_token", "jwt", "token",
    "access_token", "accessToken", "refresh_token", "csrftoken", "ssn", "social_security_number",
    "socialSecurity", "credit_card", "creditCardNumber", "bearer",
]
NOT_SECRET_KEYS = [
    "author", "authors", "author_name", "authored_by", "tokens", "max_tokens", "input_tokens",
    "output_tokens", "total_tokens", "reasoning_tokens", "tokens_before", "token_count",
    "token_limit", "tokenizer", "monkey", "keyboard", "lesson", "topic", "base_url", "model",
    "temperature", "sort_key_order", "passage", "primary_keys_total",
    "key",  # a dict key, a sort key, a tool's "key" argument: not secret (Logfire, Sentry agree)
]


@pytest.mark.parametrize("name", SECRET_KEYS)
def test_secret_key_names(name):
    assert is_secret_key(name), name


@pytest.mark.parametrize("name", NOT_SECRET_KEYS)
def test_not_secret_key_names(name):
    assert not is_secret_key(name), name


def test_no_attribute_or_generate_config_name_of_ours_is_a_secret_name():
    """Names decide for their own value: none of the names the hook emits may look secret, or
    its values would be lost (gen_ai.usage.input_tokens, inspect.compaction.tokens_before...)."""
    names = [v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str) and "." in v]
    names += [sc.INSPECT_GENERATE_CONFIG_PREFIX + f for f in GenerateConfig.model_fields]
    names += ["inspect.compaction.tokens_before", "inspect.compaction.tokens_after",
              "inspect.logger.level", "inspect.info.source"]
    assert [n for n in names if is_secret_attribute(n)] == []
    assert is_secret_attribute(sc.INSPECT_SAMPLE_METADATA_PREFIX + "api_key")
    assert is_secret_attribute("deployment.token") and not is_secret_attribute("gen_ai.token.type")


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7abc\nq3Zx9+/AbCd==\n"
       "-----END RSA PRIVATE KEY-----")

# (text, what must not survive, what must survive)
TEXT_CASES = [
    ("https://user:pw@llm.internal/v1", "user:pw", "https://[REDACTED]@llm.internal/v1"),
    ("postgresql://admin:p@ss@db.internal:5432/x", "p@ss", "postgresql://[REDACTED]@db.internal:5432/x"),
    ("redis://:hunter2@cache:6379/0 and more", "hunter2", "redis://[REDACTED]@cache:6379/0 and more"),
    ("s3://bucket/path/file.eval", None, "s3://bucket/path/file.eval"),
    ("see https://example.org/a?x=1#frag", None, "see https://example.org/a?x=1#frag"),
    ("mail me at someone@example.org", None, "mail me at someone@example.org"),
    ("call with api_key=abc123 please", "abc123", "call with api_key=[REDACTED] please"),
    ("X-Api-Key: k-9f8e7d now", "k-9f8e7d", "X-Api-Key: [REDACTED] now"),
    ("password: hunter2", "hunter2", "password: [REDACTED]"),
    ("db.password = 'hunter 2'", "hunter 2", "db.password = '[REDACTED]'"),
    ('{"api_key": "xyz", "n": 1}', "xyz", '{"api_key": "[REDACTED]", "n": 1}'),
    ('{\\"session\\": \\"s-77\\"}', "s-77", '{\\"session\\": \\"[REDACTED]\\"}'),
    ("https://h/x?token=abc&page=2", "abc", "https://h/x?token=[REDACTED]&page=2"),
    ("Cookie: sid=1; csrftoken=zz9", "zz9", "csrftoken=[REDACTED]"),
    ("Authorization: Bearer abc.def-123", "abc.def-123", "Authorization: [REDACTED]"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA", "Authorization: [REDACTED]"),
    ("auth=Token 9a8b7c6d5e", "9a8b7c6d5e", "auth=[REDACTED]"),
    (f"token {JWT} end", JWT[40:], "token [REDACTED] end"),
    (f"key:\n{PEM}\nafter", "MIIEowIBAAKCAQEA7abc", "[REDACTED]\nafter"),
    ('{"k": "-----BEGIN PRIVATE KEY-----\\nMIIEv"}', "MIIEv", '{"k": "[REDACTED]"}'),
    ("ssn: 078-05-1120", "078-05-1120", "ssn: [REDACTED]"),
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnop", REDACTED),
    ("key sk-proj-abcdefghijklmnopqrstuv here", "abcdefghijklmnop", "key [REDACTED] here"),
    ("AKIAABCDEFGHIJKLMNOP", "AKIAABCDEFGHIJKLMNOP", REDACTED),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdef", REDACTED),
    ("hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "hf_abcdef", REDACTED),
    # what must stay as it is
    ("the author: Jane Doe", None, "the author: Jane Doe"),
    ("max_tokens=512, tokens: 40, input_tokens=3", None, "max_tokens=512, tokens: 40, input_tokens=3"),
    ("the key: remember to carry the one", None, "the key: remember to carry the one"),
    ('{"key":"v1","topic":"math"}', None, '{"key":"v1","topic":"math"}'),
    ("and uses HTTP Basic authentication.", None, "and uses HTTP Basic authentication."),
    ("a basic understanding of bearer instruments", None, "a basic understanding of bearer instruments"),
    ("task-assessment-of-something-longer", None, "task-assessment-of-something-longer"),
    ("password: null, token=[REDACTED]", None, "password: null, token=[REDACTED]"),
    ("mockllm/model", None, "mockllm/model"),
    ("3f2a9c1e-7d5b-4b8e-9f00-1234567890ab", None, "3f2a9c1e-7d5b-4b8e-9f00-1234567890ab"),
    ("İstanbul password=x1 ok", "x1", "İstanbul password=[REDACTED] ok"),
]


@pytest.mark.parametrize("text, secret, expected", TEXT_CASES)
def test_text_shapes(text, secret, expected):
    out = R.text(text)
    if secret is not None:
        assert secret not in out, out
    assert expected in out, out
    assert R.text(out) == out  # idempotent: the exporter scans again what the mapping cleaned


def test_json_stays_json_and_keeps_its_shape():
    data = {"base_url": "https://u:pw@h/v1", "note": "api_key=abc", "auth": {"user": "u"},
            "nested": [{"password": "p"}, {"value": 3}], "author": "Jane", "n": 1}
    text = json.dumps(data)
    scanned = json.loads(R.text(text))
    assert scanned["base_url"] == "https://[REDACTED]@h/v1"
    assert scanned["note"] == "api_key=[REDACTED]"
    assert scanned["nested"][0]["password"] == REDACTED and scanned["author"] == "Jane"
    walked = R.data(data)
    assert walked["auth"] == REDACTED  # a secret key takes its whole value, structure included
    assert walked["nested"][0]["password"] == REDACTED and walked["nested"][1] == {"value": 3}
    assert walked["base_url"] == "https://[REDACTED]@h/v1" and walked["author"] == "Jane"
    assert R.data({"client": object(), "empty_token": "", "token": None}) == {
        "client": None, "empty_token": "", "token": None}


def test_attributes_names_decide_for_their_own_values_only():
    attrs = {
        "gen_ai.usage.input_tokens": 12, "gen_ai.request.max_tokens": 100,
        "inspect.sample.metadata.api_key": "plain", "inspect.sample.metadata.author": "Jane",
        "inspect.sample.metadata.cookie": 7, "inspect.task.tags": ("a", "password=x"),
        "deployment.token": ("t1", "t2"), "inspect.dataset.location": "https://u:p@h/d.jsonl",
        "inspect.flag": True,
    }
    out = R.attributes(attrs)
    assert out["gen_ai.usage.input_tokens"] == 12 and out["gen_ai.request.max_tokens"] == 100
    assert out["inspect.sample.metadata.api_key"] == REDACTED
    assert out["inspect.sample.metadata.author"] == "Jane"
    assert out["inspect.sample.metadata.cookie"] == 7  # numbers are not strings: left as they are
    assert out["inspect.task.tags"] == ("a", "password=[REDACTED]")
    assert out["deployment.token"] == (REDACTED, REDACTED)
    assert out["inspect.dataset.location"] == "https://[REDACTED]@h/d.jsonl"
    assert out["inspect.flag"] is True


def test_user_patterns_join_the_defaults():
    custom = Redactor(("(?i)internal-[a-z]{4}", r"ACME\d+"))
    assert custom.text("id INTERNAL-abcd and ACME42 and password=x") == (
        "id [REDACTED] and [REDACTED] and password=[REDACTED]")
    assert R.text("id INTERNAL-abcd") == "id INTERNAL-abcd"


def test_long_values_are_scanned_whole_and_not_cached():
    filler = "lorem ipsum " * 2000
    out = R.text(filler + "token=abc " + filler)
    assert "abc" not in out and out.count("lorem") == 4000


def test_what_the_content_policy_redacted_passes_the_exporter_once():
    """ContentPolicy.clean redacts before it truncates and marks the result; the exporter's pass
    lets it through unscanned (as a plain str) but still applies the name rule. Anything built
    from it is a plain str again and scanned."""
    from inspect_otel.content import ContentPolicy
    from inspect_otel.redaction import Redacted

    policy = ContentPolicy(max_length=40)
    cut = policy.clean("https://u:pw@h/v1 " + "x" * 100)
    assert type(cut) is Redacted and "pw" not in cut and cut.endswith("chars]")
    out = R.attributes({"inspect.message": cut, "inspect.sample.metadata.token": cut})
    assert out["inspect.message"] == cut and type(out["inspect.message"]) is str
    assert out["inspect.sample.metadata.token"] == REDACTED
    assert type(policy.clean_json({"password": "p"})) is Redacted
    assert R.text(cut + " password=x").endswith("password=[REDACTED]")
