"""How every channel adapter reads an HTTP answer: transient, permanent, or fine.

429, 5xx and transport errors are transient (retried with the channel's Retry-After
when it gives one); any other 4xx is permanent and keeps the channel's own message.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from stocksync_common.contracts import utcnow

from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.domain.pushes import PermanentChannelError, TransientChannelError


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
