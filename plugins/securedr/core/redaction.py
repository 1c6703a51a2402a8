"""Keep secrets out of messages: find values that look like keys or credentials and blank them.

Used on every message SecureDR builds from user input (plan errors first of all), so a private
key or an AWS secret pasted into the wrong place is never echoed to a terminal, a log or a
notification. Detection is deliberately eager: a false positive costs a ``[redacted ...]`` in a
message, a false negative leaks a secret. Nothing here imports Airflow or boto3.
"""

from __future__ import annotations

import re

#: A PEM block; an unterminated one (a paste cut short) is redacted to the end of the text.
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]{1,64}-----.*?(?:-----END [A-Z0-9 ]{1,64}-----|\Z)", re.DOTALL
)
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]{0,64}PRIVATE KEY-----")
#: SecureDR's offline recovery private key (core/envelope.py PRIVATE_KEY_PREFIX).
_RECOVERY_PRIVATE = re.compile(r"SECUREDR-RECOVERY-KEY-[A-Za-z0-9_=+/-]*", re.IGNORECASE)
#: Access key ids: AKIA (long-term) and ASIA (temporary) followed by 16 upper-case characters.
_ACCESS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
#: A secret access key is 40 characters of base64; we redact any run of 40 or more such
#: characters that mixes cases and digits (it may be glued to other text). A hex digest, e.g. a
#: git commit, or SecureDR's lower-case recovery public key has no upper case and is left alone.
_SECRET_CANDIDATE = re.compile(r"[A-Za-z0-9/+=]{40,}")
#: Finding one (to refuse a plan value) is stricter, so a long path is not taken for a key:
#: exactly 40 characters standing alone, not starting with "/".
_SECRET_ALONE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9+=][A-Za-z0-9/+=]{39}(?![A-Za-z0-9/+=])")
#: ``password: x``, ``aws_secret_access_key = x``, ``token=x`` and friends.
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b((?:aws_)?secret(?:_access)?_key|secret|password|passwd|token|api_key|"
    r"private_key)(\s*[:=]\s*)(['\"]?)[^\s'\",;]{4,}"
)

PEM_TEXT = "[redacted PEM block]"
SECRET_TEXT = "[redacted secret]"  # noqa: S105 - the placeholder, not a secret


def _looks_like_secret_key(candidate: str) -> bool:
    return (
        any(c.isupper() for c in candidate)
        and any(c.islower() for c in candidate)
        and any(c.isdigit() for c in candidate)
    )


def secret_kind(value: str) -> str | None:
    """What secret ``value`` holds or contains (``"a private key (PEM)"``, ...), or None.

    Public keys and certificates are not secrets and give None.
    """
    if (
        len(value) < 40
        and "-----" not in value
        and "=" not in value
        and ":" not in value
        and "recovery-key" not in value.lower()
    ):
        return None  # too short for any of the patterns below: the common case, kept cheap
    if _PEM_PRIVATE.search(value):
        return "a private key (PEM)"
    if _RECOVERY_PRIVATE.search(value):
        return "the SecureDR recovery PRIVATE key"
    if any(_looks_like_secret_key(m) for m in _SECRET_ALONE.findall(value)):
        return "an AWS secret access key"
    if _ASSIGNED_SECRET.search(value):
        return "a password or secret"
    return None


def redact(text: str) -> str:
    """``text`` with PEM blocks, recovery private keys, AWS keys and ``secret=...`` blanked."""
    text = _PEM_BLOCK.sub(PEM_TEXT, text)
    text = _RECOVERY_PRIVATE.sub(SECRET_TEXT, text)
    text = _ACCESS_KEY_ID.sub("[redacted access key id]", text)
    text = _SECRET_CANDIDATE.sub(
        lambda m: SECRET_TEXT if _looks_like_secret_key(m[0]) else m[0], text
    )
    return _ASSIGNED_SECRET.sub(lambda m: f"{m[1]}{m[2]}{m[3]}{SECRET_TEXT}", text)


def bounded(text: str, limit: int = 600) -> str:
    """``text`` cut to ``limit`` characters (marked), so no message can grow without bound."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}... [{len(text) - limit + 40} more characters cut]"
