"""Encryption at rest for processor secrets (Fernet, key from COMMERCE_SECRET_KEY).

Development and test installs without a key use a fixed, publicly known key and say so
in the log; production refuses to start an operation that needs it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from .config import CommonSettings
from .logging import get_logger

log = get_logger(__name__)
_INSECURE = base64.urlsafe_b64encode(hashlib.sha256(b"commerce insecure development key").digest())
_warned = False


class SecretKeyMissing(RuntimeError):
    pass


def _fernet(settings: CommonSettings) -> Fernet:
    global _warned
    if settings.secret_key is not None:
        return Fernet(settings.secret_key.get_secret_value().encode())
    if settings.environment == "production":
        raise SecretKeyMissing("COMMERCE_SECRET_KEY must be set to store processor secrets")
    if not _warned:
        log.warning("COMMERCE_SECRET_KEY is not set: using the insecure development key")
        _warned = True
    return Fernet(_INSECURE)


def encrypt(settings: CommonSettings, plaintext: str) -> str:
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(settings: CommonSettings, ciphertext: str) -> str:
    try:
        return _fernet(settings).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise SecretKeyMissing("cannot decrypt a processor secret: wrong COMMERCE_SECRET_KEY") from None


def generate_key() -> str:
    return Fernet.generate_key().decode()


def derive_token(settings: CommonSettings, purpose: str, subject: str) -> str:
    """A stable, unguessable public token for ``subject`` (HMAC-SHA256 under a key
    derived from COMMERCE_SECRET_KEY): the same link can be put in every e-mail without
    storing the token itself; only its hash is stored, and bumping a version in
    ``subject`` revokes the old one."""
    import hmac

    if settings.secret_key is not None:
        root = settings.secret_key.get_secret_value().encode()
    elif settings.environment == "production":
        raise SecretKeyMissing("COMMERCE_SECRET_KEY must be set to issue public tokens")
    else:
        root = _INSECURE
    key = hmac.new(root, f"token-key:{purpose}".encode(), hashlib.sha256).digest()
    mac = hmac.new(key, subject.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
