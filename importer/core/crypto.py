from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """The stored secret cannot be read with the configured keys (rotated away, or tampered)."""


@cache
def _fernet(keys: str) -> MultiFernet:
    # Several comma-separated keys allow rotation: the first encrypts, any of them decrypts.
    return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def encrypt_text(plain: str) -> str:
    return _fernet(settings.PORTAL_ENCRYPTION_KEY).encrypt(plain.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return _fernet(settings.PORTAL_ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "the stored secret cannot be decrypted with PORTAL_ENCRYPTION_KEY"
        ) from None
