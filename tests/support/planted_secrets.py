"""Secrets of every high-confidence shape, planted in code, config, shell and prose: the recall
table of the content tier (tests/hook/test_redaction_tiers.py) and what the long agent's
``lookup`` tool returns (tests/support/long_agent.py), so that a real eval carries them too."""

from __future__ import annotations

# Each secret value is unique, so a search finds any copy of it.
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyZWNhbGwifQ."
       "c2lnbmF0dXJlUmVjYWxsMDEyMzQ1Njc4OQ")
PEM_BODY = "MIIEpAIBAAKCAQEAr3c4llSecretPemBody0123456789abcdefgh"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
SHAPES: dict[str, str] = {
    "anthropic key": "sk-ant-api03-Rc4llAnthr0picKey0123456789abcd",
    "openai project key": "sk-proj-Rc4llOpenAiProjectKey0123456789",
    "openai key": "sk-Rc4llOpenAiLegacyKey0123456789abcdef",
    "aws access key id": "AKIAR3CALLACCESSKEY0",
    "aws session key id": "ASIAR3CALLSESSIONK01",
    "google api key": "AIzaSyR3callGoogleApiKey0123456789abcdE",
    "github token": "ghp_R3callGithubToken0123456789abcdefgh",
    "github fine-grained token": "github_pat_11R3CALLGITHUBPAT0123456789_abcdefghij",
    "gitlab token": "glpat-R3callGitlabToken012345",
    "slack token": "xoxb-1234567890-R3callSlackTokenAbc",
    "hugging face token": "hf_R3callHuggingFaceToken0123456789ab",
    "groq key": "gsk_R3callGroqKey0123456789abcdefghijkl",
    "xai key": "xai-R3callXaiKey0123456789abcdefghijklmn",
    "stripe key": "sk_live_R3callStripeKey0123456789",
    "jwt": JWT,
    "pem private key": PEM_BODY,
    "url credentials": "Rc4llUrlPassw0rd",
    "bearer credential": "Rc4llBearer.Tok-en0123456789",
    "basic credential": "dXNlcjpSYzRsbEJhc2ljUGFzczAx",
    "password literal": "Rc4llDbPassw0rd!",
    "token literal": "abc123Rc4llTokenLiteral",
    "api_key json literal": "Rc4llJsonApiKeyValue",
    "env password word": "rcallplainword",
    "user pattern": "ACME-R3CALL-4242",
}
S = SHAPES
# Where each shape is planted: (context, text). The value is the part that must never survive.
PLANTED: list[tuple[str, str, str]] = [
    ("code", "anthropic key", f'client = Anthropic(api_key="{S["anthropic key"]}")'),
    ("code", "openai project key", f"OPENAI_KEY = '{S['openai project key']}'"),
    ("prose", "openai key", f"Use the key {S['openai key']} to call the API."),
    ("config", "aws access key id", f"aws_access_key_id = {S['aws access key id']}"),
    ("shell", "aws session key id", f"export AWS_ACCESS_KEY_ID={S['aws session key id']}"),
    ("code", "google api key", f'GOOGLE = "{S["google api key"]}"  # maps'),
    ("shell", "github token", f"git clone https://{S['github token']}@github.com/o/r.git"),
    ("config", "github fine-grained token", f"token: {S['github fine-grained token']}"),
    ("prose", "gitlab token", f"The CI uses {S['gitlab token']} for pushes."),
    ("config", "slack token", f'{{"slack": "{S["slack token"]}"}}'),
    ("shell", "hugging face token", f"huggingface-cli login --token {S['hugging face token']}"),
    ("code", "groq key", f"Groq(api_key=os.environ.get('X', '{S['groq key']}'))"),
    ("prose", "xai key", f"my xai key is {S['xai key']}, don't share it"),
    ("config", "stripe key", f"STRIPE_SECRET_KEY={S['stripe key']}"),
    ("prose", "jwt", f"the session cookie held {JWT} until logout"),
    ("config", "pem private key", f"private_key: |\n  {PEM}"),
    ("shell", "url credentials",
     f"psql postgresql://admin:{S['url credentials']}@db.internal:5432/evals"),
    ("shell", "bearer credential",
     f'curl -H "Authorization: Bearer {S["bearer credential"]}" https://api.internal/v1'),
    ("code", "basic credential", f"headers = {{'Authorization': 'Basic {S['basic credential']}'}}"),
    ("code", "password literal", f'DB_PASSWORD = "{S["password literal"]}"'),
    ("config", "token literal", f"token: {S['token literal']}"),
    ("config", "api_key json literal", f'{{"api_key": "{S["api_key json literal"]}", "n": 1}}'),
    ("config", "env password word", f"POSTGRES_PASSWORD={S['env password word']}\nPORT=5432"),
    ("prose", "user pattern", f"ticket {S['user pattern']} holds the deploy key"),
]
USER_PATTERN = r"ACME-[A-Z0-9]+-\d{4}"  # INSPECT_OTEL_REDACT_PATTERNS in the tests




def planted_text() -> str:
    """Every planted line, one after the other: a config file a tool might return."""
    return "\n".join(text for _, _, text in PLANTED) + "\n"
