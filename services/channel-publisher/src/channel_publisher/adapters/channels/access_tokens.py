"""Short-lived access tokens obtained from the credentials a marketplace issues.

Amazon (Login with Amazon, 3,600 s), eBay (OAuth refresh token grant, 7,200 s), Walmart
(client credentials, 900 s) and Shopify stores on expiring offline tokens give a
long-lived credential from which short-lived access tokens are obtained. One
`AccessTokens` per connection:

- keeps the token in memory and in `access_tokens`, so every publisher instance uses the
  same one and one refresh serves them all;
- refreshes it `REFRESH_MARGIN_S` before it expires, and once when the channel answers
  401 for the token it was given (revoked early, clock skew);
- takes the connection's `access_tokens` row lock (SELECT ... FOR UPDATE) around a
  refresh: two instances never refresh at once, the second adopts the first one's token;
- keeps a refresh token the channel rotated (Shopify) in place of the previous one;
- on a refused or failed refresh, records the channel's answer on the row (the
  connection's health shows it) and raises `CredentialsError`.

The grants follow each marketplace's documented token request; the sources are named on
each function.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import utcnow

from channel_publisher.adapters.tables import access_tokens
from channel_publisher.domain.pushes import CredentialsError, TransientChannelError

# Refresh this long before the channel's expiry: a token never expires in flight.
REFRESH_MARGIN_S = 120.0
# At least this long is assumed used of a token's life, so a tiny `expires_in` (a sandbox
# issuing 2 s tokens) still refreshes before it expires.
MIN_MARGIN_FRACTION = 0.25
FORM = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: float
    # A refresh token the channel rotated (Shopify); None: the one in use stays valid.
    refresh_token: str | None = None


Grant = Callable[[httpx.AsyncClient, str | None], Awaitable[IssuedToken]]


def basic(client_id: str, client_secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


async def _token_request(http: httpx.AsyncClient, url: str, **kwargs: Any) -> IssuedToken:
    try:
        response = await http.post(url, **kwargs)
    except httpx.TransportError as exc:
        raise TransientChannelError(f"token endpoint unreachable: {type(exc).__name__}: {exc}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientChannelError(f"token endpoint answered HTTP {response.status_code}: {response.text[:300]}")
    if response.status_code != 200:
        raise CredentialsError(f"token refresh refused: HTTP {response.status_code}: {response.text[:500]}")
    try:
        answer = response.json()
        token, expires_in = answer["access_token"], float(answer["expires_in"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(
            f"token endpoint answered without access_token/expires_in: {response.text[:300]}"
        ) from exc
    if not isinstance(token, str) or not token or expires_in <= 0:
        raise CredentialsError("token endpoint answered an empty token")
    rotated = answer.get("refresh_token")
    return IssuedToken(token, expires_in, rotated if isinstance(rotated, str) and rotated else None)


def amazon_lwa(credentials: dict[str, Any]) -> Grant:
    """Login with Amazon, refresh token grant (SP-API "Connecting to the Selling Partner
    API", step 1: `POST https://api.amazon.com/auth/o2/token`, form `grant_type=refresh_token,
    refresh_token, client_id, client_secret`; answer `{access_token, refresh_token,
    token_type: "bearer", expires_in: 3600}`)."""

    async def grant(http: httpx.AsyncClient, refresh_token: str | None) -> IssuedToken:
        return await _token_request(
            http,
            str(credentials["token_url"]),
            headers=FORM,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token or credentials["refresh_token"],
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
            },
        )

    return grant


EBAY_TOKEN_PATH = "/identity/v1/oauth2/token"


def ebay_refresh(base_url: str, credentials: dict[str, Any]) -> Grant:
    """eBay OAuth, "Using a refresh token to update a User access token": `POST
    https://api.ebay.com/identity/v1/oauth2/token`, `Authorization: Basic
    base64(client_id:client_secret)`, form `grant_type=refresh_token, refresh_token, scope`
    (the scopes of the original consent, here sell.inventory); answer `{access_token,
    expires_in: 7200, token_type: "User Access Token"}`. The token host is the API host."""

    async def grant(http: httpx.AsyncClient, refresh_token: str | None) -> IssuedToken:
        return await _token_request(
            http,
            base_url.rstrip("/") + EBAY_TOKEN_PATH,
            headers={**FORM, "Authorization": basic(credentials["client_id"], credentials["client_secret"])},
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token or credentials["refresh_token"],
                "scope": credentials["scope"],
            },
        )

    return grant


WALMART_TOKEN_PATH = "/v3/token"
WALMART_SERVICE_NAME = "Walmart Marketplace"


def walmart_client_credentials(base_url: str, credentials: dict[str, Any]) -> Grant:
    """Walmart Marketplace "Get access token" (Authentication API, US Marketplace):
    `POST /v3/token`, headers `Authorization: Basic base64(clientId:clientSecret)`,
    `WM_SVC.NAME`, `WM_QOS.CORRELATION_ID`, form `grant_type=client_credentials`; answer
    `{access_token, token_type: "Bearer", expires_in: 900}`."""

    async def grant(http: httpx.AsyncClient, refresh_token: str | None) -> IssuedToken:
        return await _token_request(
            http,
            base_url.rstrip("/") + WALMART_TOKEN_PATH,
            headers={
                **FORM,
                "Authorization": basic(credentials["client_id"], credentials["client_secret"]),
                "WM_SVC.NAME": WALMART_SERVICE_NAME,
                "WM_QOS.CORRELATION_ID": str(uuid.uuid4()),
            },
            data={"grant_type": "client_credentials"},
        )

    return grant


SHOPIFY_TOKEN_PATH = "/admin/oauth/access_token"


def shopify_expiring_offline(base_url: str, credentials: dict[str, Any]) -> Grant:
    """Shopify expiring offline access tokens ("Refresh an expiring offline access token"):
    `POST https://{shop}.myshopify.com/admin/oauth/access_token` with `client_id,
    client_secret, grant_type=refresh_token, refresh_token`; answer `{access_token,
    expires_in, refresh_token, refresh_token_expires_in, scope}`: the refresh token rotates."""

    async def grant(http: httpx.AsyncClient, refresh_token: str | None) -> IssuedToken:
        return await _token_request(
            http,
            base_url.rstrip("/") + SHOPIFY_TOKEN_PATH,
            headers=FORM,
            data={
                "client_id": credentials["client_id"],
                "client_secret": credentials["client_secret"],
                "grant_type": "refresh_token",
                "refresh_token": refresh_token or credentials["refresh_token"],
            },
        )

    return grant


class AccessTokens:
    """One connection's access token: current, refreshed before expiry and once on a 401."""

    def __init__(self, engine: AsyncEngine, http: httpx.AsyncClient, connection_id: uuid.UUID, grant: Grant) -> None:
        self._engine, self._http, self._connection_id, self._grant = engine, http, connection_id, grant
        self._token: str | None = None
        self._refresh_at = 0.0  # monotonic

    async def current(self) -> str:
        if self._token is not None and time.monotonic() < self._refresh_at:
            return self._token
        return await self._refresh(stale=None)

    async def after_unauthorized(self, refused: str) -> str:
        """The channel refused `refused`: a new token, unless another call already got one."""
        if self._token is not None and self._token != refused and time.monotonic() < self._refresh_at:
            return self._token
        return await self._refresh(stale=refused)

    async def _refresh(self, stale: str | None) -> str:
        table = access_tokens
        key = table.c.connection_id == self._connection_id
        async with self._engine.begin() as conn:
            await conn.execute(insert(table).values(connection_id=self._connection_id).on_conflict_do_nothing())
            row = (await conn.execute(sa.select(table).where(key).with_for_update())).one()
            now = utcnow()
            if row.access_token and row.access_token != stale and row.expires_at is not None:
                # Another instance (or an earlier call) refreshed: adopt its token if it lasts.
                left = (row.expires_at - now).total_seconds()
                lifetime = (row.expires_at - (row.refreshed_at or now)).total_seconds()
                if left > _margin(lifetime):
                    return self._adopt(row.access_token, left, lifetime)
            try:
                issued = await self._grant(self._http, row.refresh_token)
            except CredentialsError as exc:
                await conn.execute(sa.update(table).where(key).values(last_error=str(exc)[:2000], failed_at=now))
                self._token = None
                # The row update commits with the block; the error then reaches the caller.
                error = exc
            else:
                await conn.execute(
                    sa.update(table)
                    .where(key)
                    .values(
                        access_token=issued.access_token,
                        expires_at=now + timedelta(seconds=issued.expires_in),
                        refresh_token=issued.refresh_token or row.refresh_token,
                        refreshed_at=now,
                        last_error=None,
                        failed_at=None,
                    )
                )
                return self._adopt(issued.access_token, issued.expires_in, issued.expires_in)
        raise error

    def _adopt(self, token: str, seconds_left: float, lifetime: float) -> str:
        self._token = token
        self._refresh_at = time.monotonic() + seconds_left - _margin(lifetime)
        return token


def _margin(lifetime: float) -> float:
    return min(REFRESH_MARGIN_S, max(0.0, lifetime) * MIN_MARGIN_FRACTION)


def grant_for(channel_type: str, base_url: str, credentials: dict[str, Any]) -> Grant | None:
    """The token grant a connection's credentials use; None when they are the token itself."""
    if channel_type == "amazon":
        return amazon_lwa(credentials)
    if channel_type == "ebay":
        return ebay_refresh(base_url, credentials)
    if channel_type == "walmart":
        return walmart_client_credentials(base_url, credentials)
    if channel_type == "shopify" and credentials.get("refresh_token"):
        return shopify_expiring_offline(base_url, credentials)
    return None


async def token_status(conn: AsyncConnection, connection_id: uuid.UUID) -> sa.Row[Any] | None:
    """The connection's stored token as a health report shows it (expires_at, refreshed_at,
    last_error, failed_at); None for a connection whose credentials are the token."""
    query: sa.Select[Any] = sa.select(
        access_tokens.c.expires_at, access_tokens.c.refreshed_at, access_tokens.c.last_error, access_tokens.c.failed_at
    ).where(access_tokens.c.connection_id == connection_id)
    row: sa.Row[Any] | None = (await conn.execute(query)).one_or_none()
    return row
