"""Merchant API keys and the admin token.

An API key names its merchant and is signed with `API_KEY_SECRET`, so every service
verifies it without a shared table or a network call: `ssk_<merchant hex>_<key id>_<mac>`.
The merchant id in a verified key scopes every query of the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from stocksync_common.settings import ServiceSettings

_PREFIX = "ssk"


def _mac(secret: str, merchant_id: uuid.UUID, key_id: str) -> str:
    digest = hmac.new(secret.encode(), f"{merchant_id.hex}.{key_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def issue_api_key(secret: str, merchant_id: uuid.UUID) -> str:
    key_id = secrets.token_hex(8)
    return f"{_PREFIX}_{merchant_id.hex}_{key_id}_{_mac(secret, merchant_id, key_id)}"


def verify_api_key(secret: str, api_key: str) -> uuid.UUID | None:
    parts = api_key.split("_", 3)  # the mac itself may contain "_"
    if len(parts) != 4 or parts[0] != _PREFIX:
        return None
    try:
        merchant_id = uuid.UUID(hex=parts[1])
    except ValueError:
        return None
    if not hmac.compare_digest(_mac(secret, merchant_id, parts[2]).encode(), parts[3].encode()):
        return None
    return merchant_id


def api_key_id(api_key: str) -> str:
    """The public id of a verified key: audit trails name the key that acted, never the key."""
    return api_key.split("_", 3)[2]


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Merchant API key")
_bearer = HTTPBearer(auto_error=False, description="Admin token (creating merchants only)")


def _settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


def current_merchant(request: Request, api_key: Annotated[str | None, Depends(_api_key_header)]) -> uuid.UUID:
    if not api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key (header X-API-Key)")
    merchant_id = verify_api_key(_settings(request).api_key_secret.get_secret_value(), api_key)
    if merchant_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key")
    return merchant_id


def require_admin(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    expected = _settings(request).admin_token.get_secret_value()
    # Bytes: compare_digest refuses str holding non-ASCII characters (a header may).
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "admin token required")


MerchantId = Annotated[uuid.UUID, Depends(current_merchant)]
AdminOnly = Annotated[None, Depends(require_admin)]
