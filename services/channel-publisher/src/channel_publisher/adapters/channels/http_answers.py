"""How every channel adapter reads an HTTP answer: transient, permanent, or fine.

429, 5xx and transport errors are transient (retried with the channel's Retry-After
when it gives one); any other 4xx is permanent and keeps the channel's own message.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from stocksync_common.contracts import utcnow

from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.domain.pushes import CredentialsError, PermanentChannelError, TransientChannelError


class TokenSource(Protocol):
    async def current(self) -> str: ...

    async def after_unauthorized(self, refused: str) -> str: ...


class StaticToken:
    """A token the merchant gave as is (Shopify's offline token): nothing to refresh."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def current(self) -> str:
        return self._token

    async def after_unauthorized(self, refused: str) -> str:
        raise CredentialsError("the channel refused the connection's access token (revoked or wrong)")


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110)."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def is_transient(response: httpx.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def raise_for_channel_status(response: httpx.Response) -> None:
    if is_transient(response):
        raise TransientChannelError(
            f"HTTP {response.status_code}: {response.text[:500]}", retry_after_seconds(response.headers)
        )
    if response.status_code >= 400:
        raise PermanentChannelError(f"HTTP {response.status_code}: {response.text[:1000]}")


async def send(http: httpx.AsyncClient, pacer: CallPacer, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One paced request. A transport error (timeout, refused) becomes a transient failure;
    a Retry-After holds every later call of this connection off, not only this one."""
    await pacer.acquire()
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.TransportError as exc:
        raise TransientChannelError(f"{type(exc).__name__}: {exc}") from exc
    if is_transient(response):
        pacer.hold_off(retry_after_seconds(response.headers))
    return response


async def send_authorized(
    http: httpx.AsyncClient,
    pacer: CallPacer,
    tokens: TokenSource,
    authorize: Callable[[str], dict[str, str]],
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    unauthorized: Collection[int] = (401,),
    **kwargs: Any,
) -> httpx.Response:
    """`send` with the connection's current access token in the headers `authorize` builds.
    A token the channel refuses is refreshed once and the call sent again; a fresh token
    refused too is the connection's problem (`CredentialsError`), not the items'."""
    token = await tokens.current()
    response = await send(http, pacer, method, url, headers={**(headers or {}), **authorize(token)}, **kwargs)
    if response.status_code not in unauthorized:
        return response
    token = await tokens.after_unauthorized(token)
    response = await send(http, pacer, method, url, headers={**(headers or {}), **authorize(token)}, **kwargs)
    if response.status_code in unauthorized:
        raise CredentialsError(
            f"the channel refused a fresh access token: HTTP {response.status_code}: {response.text[:500]}"
        )
    return response
