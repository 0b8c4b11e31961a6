"""Merchant API keys and the admin token.

A key is `ssk2_<key id>_<secret>`: the key id is its visible, public part (lists and audit
trails name a key by it); the secret is 32 random bytes. The stock-ledger stores a SHA-256
of each key (the key itself never), with its merchant, name, last-used time and
revocation, and is the only reader of that table (adapters/api_key_store.py).

Every other service verifies a presented key by asking the stock-ledger
(`POST /internal/api-keys/verify`) and keeps the answer in a small cache: a valid key for
`API_KEY_CACHE_TTL_S` seconds, an unknown or revoked one for
`API_KEY_NEGATIVE_CACHE_TTL_S`; so a revocation holds on every service within the first
of those (docs/SECURITY.md). The merchant id of a verified key scopes every query.

Keys issued before stored keys, `ssk_<merchant hex>_<key id>_<mac>` (an HMAC under
`API_KEY_SECRET`), are still verified by the stock-ledger, which stores each one the first
time it sees it (flagged `legacy`), so that it is listed, revocable and rotatable like any
other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from stocksync_common.cookies import no_cookies
from stocksync_common.settings import ServiceSettings

log = logging.getLogger(__name__)

_LEGACY_PREFIX = "ssk"
_PREFIX = "ssk2"
# A key id is 16 hex characters in both forms; longer input is refused before any lookup.
MAX_KEY_LENGTH = 200
VERIFY_PATH = "/internal/api-keys/verify"


@dataclass(frozen=True)
class ApiKeyOwner:
    """Who a verified key speaks for."""

    merchant_id: uuid.UUID
    key_id: str


class ApiKeysUnavailable(Exception):
    """The stock-ledger could not say whether a key is valid (down, slow, or erring)."""


# ---- the key's forms ------------------------------------------------------------------


def new_api_key() -> tuple[str, str]:
    """A new key and its key id."""
    key_id = secrets.token_hex(8)
    return f"{_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}", key_id


def key_digest(api_key: str) -> str:
    """What is stored of a key. The key is 256 random bits: a plain SHA-256 cannot be
    reversed or guessed, and needs no salt or slow hash."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def api_key_id(api_key: str) -> str:
    """The public id of a key (either form): audit trails name the key that acted, never the key."""
    parts = api_key.split("_", 3)
    if parts[0] == _PREFIX and len(parts) >= 3:
        return parts[1]
    return parts[2] if len(parts) == 4 else ""


def is_legacy_api_key(api_key: str) -> bool:
    return api_key.startswith(_LEGACY_PREFIX + "_")


def _mac(secret: str, merchant_id: uuid.UUID, key_id: str) -> str:
    digest = hmac.new(secret.encode(), f"{merchant_id.hex}.{key_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def issue_api_key(secret: str, merchant_id: uuid.UUID) -> str:
    """A legacy key (an HMAC under `API_KEY_SECRET`). Only tools and tests that need a key
    for a merchant the stock-ledger has not created still mint these."""
    key_id = secrets.token_hex(8)
    return f"{_LEGACY_PREFIX}_{merchant_id.hex}_{key_id}_{_mac(secret, merchant_id, key_id)}"


def verify_api_key(secret: str, api_key: str) -> uuid.UUID | None:
    """The merchant of a legacy key whose MAC is right, else None (the stock-ledger only)."""
    parts = api_key.split("_", 3)  # the mac itself may contain "_"
    if len(parts) != 4 or parts[0] != _LEGACY_PREFIX:
        return None
    try:
        merchant_id = uuid.UUID(hex=parts[1])
    except ValueError:
        return None
    if not hmac.compare_digest(_mac(secret, merchant_id, parts[2]).encode(), parts[3].encode()):
        return None
    return merchant_id


# ---- verification with a cache ---------------------------------------------------------

KeyLookup = Callable[[str], Awaitable[ApiKeyOwner | None]]


class ApiKeyVerifier:
    """Verifies presented keys through `lookup` and remembers the answers for a few seconds.

    The cache is keyed by the key's digest (the process keeps no key in clear) and holds at
    most `max_entries`, oldest out first. A lookup that fails raises `ApiKeysUnavailable`
    and caches nothing.
    """

    def __init__(self, lookup: KeyLookup, ttl_s: float, negative_ttl_s: float, max_entries: int = 10_000) -> None:
        self.lookup = lookup
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._answers: OrderedDict[str, tuple[float, ApiKeyOwner | None]] = OrderedDict()

    async def verify(self, api_key: str) -> ApiKeyOwner | None:
        if not api_key or len(api_key) > MAX_KEY_LENGTH or not api_key.isascii() or not api_key.isprintable():
            return None
        digest = key_digest(api_key)
        now = time.monotonic()
        cached = self._answers.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        owner = await self.lookup(api_key)
        self._answers[digest] = (now + (self.ttl_s if owner else self.negative_ttl_s), owner)
        self._answers.move_to_end(digest)
        while len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)
        return owner

    def clear(self) -> None:
        """Forget every answer (the stock-ledger, after revoking a key)."""
        self._answers.clear()


class LedgerKeyLookup:
    """Asks the stock-ledger whether a key is valid: 200 with its owner, 404 when not."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.url = base_url.rstrip("/") + VERIFY_PATH
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, api_key: str) -> ApiKeyOwner | None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, cookies=no_cookies())
        try:
            answer = await self._client.post(self.url, json={"api_key": api_key})
        except httpx.HTTPError as error:
            log.warning("cannot reach the stock-ledger to verify an API key", extra={"error": type(error).__name__})
            raise ApiKeysUnavailable from error
        if answer.status_code == status.HTTP_404_NOT_FOUND:
            return None
        if answer.status_code != status.HTTP_200_OK:
            log.warning("the stock-ledger refused to verify an API key", extra={"status": answer.status_code})
            raise ApiKeysUnavailable
        body = answer.json()
        return ApiKeyOwner(merchant_id=uuid.UUID(body["merchant_id"]), key_id=str(body["key_id"]))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def ledger_key_verifier(settings: ServiceSettings) -> ApiKeyVerifier:
    """What every service but the stock-ledger verifies keys with."""
    return ApiKeyVerifier(
        LedgerKeyLookup(settings.api_keys_url),
        ttl_s=settings.api_key_cache_ttl_s,
        negative_ttl_s=settings.api_key_negative_cache_ttl_s,
    )


# ---- the FastAPI dependencies ----------------------------------------------------------

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Merchant API key")
_bearer = HTTPBearer(auto_error=False, description="Admin token (creating merchants only)")


def _settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


async def current_key(request: Request, api_key: Annotated[str | None, Depends(_api_key_header)]) -> ApiKeyOwner:
    if not api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key (header X-API-Key)")
    verifier: ApiKeyVerifier = request.app.state.api_keys
    try:
        owner = await verifier.verify(api_key)
    except ApiKeysUnavailable:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "cannot verify API keys right now; retry shortly"
        ) from None
    if owner is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key")
    return owner


async def current_merchant(owner: Annotated[ApiKeyOwner, Depends(current_key)]) -> uuid.UUID:
    return owner.merchant_id


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected = _settings(request).admin_token.get_secret_value()
    # Bytes: compare_digest refuses str holding non-ASCII characters (a header may).
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin token required")


MerchantId = Annotated[uuid.UUID, Depends(current_merchant)]
CurrentKey = Annotated[ApiKeyOwner, Depends(current_key)]
AdminOnly = Annotated[None, Depends(require_admin)]
