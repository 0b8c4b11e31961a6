"""The session cookie: the merchant's API key and a CSRF token, sealed with Fernet.

The cookie is encrypted and authenticated (AES-CBC + HMAC), so neither the key nor the
token can be read or forged from it; it expires after the configured age. The browser
keeps it HttpOnly and SameSite=Strict, scoped to /console.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken

COOKIE_NAME = "stocksync_console"


@dataclass(frozen=True)
class Session:
    api_key: str
    csrf_token: str

    @classmethod
    def new(cls, api_key: str) -> Session:
        return cls(api_key, secrets.token_urlsafe(24))


class SessionSealer:
    def __init__(self, secret: str, max_age_s: int) -> None:
        key = base64.urlsafe_b64encode(hashlib.sha256(("stocksync-console:" + secret).encode()).digest())
        self._fernet = Fernet(key)
        self.max_age_s = max_age_s

    def seal(self, session: Session) -> str:
        return self._fernet.encrypt(orjson.dumps({"k": session.api_key, "c": session.csrf_token})).decode()

    def open(self, sealed: str | None) -> Session | None:
        """The session in the cookie, or None when it is missing, tampered with or expired."""
        if not sealed or len(sealed) > 4096:
            return None
        try:
            data = orjson.loads(self._fernet.decrypt(sealed.encode(), ttl=self.max_age_s))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("k"), str) or not isinstance(data.get("c"), str):
            return None
        return Session(data["k"], data["c"])
