"""Where a channel connection may make Stocksync call: public addresses only.

A merchant chooses a connection's `base_url` (and Amazon's `token_url`), so without a
check a merchant could make the publisher or order-ingest call the cloud's metadata
endpoint (169.254.169.254), a service on loopback, or anything on the private network
(server-side request forgery). Two checks, the second because a name can resolve to a
public address when the connection is created and to a private one later (DNS rebinding):

- at creation, every address the host resolves to must be public (`url_refusal`), else
  the API answers 422 naming the field;
- at every connection, `channel_http_client`'s network backend resolves the host itself,
  refuses the connection if any address is not public, and connects to the address it
  checked (TLS still verifies the certificate against the host name).

`ALLOW_PRIVATE_CHANNEL_HOSTS=true` turns both off: the embedded stack and docker compose
set it, because their sandbox marketplaces listen on 127.0.0.1 or a private network;
production leaves it unset (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

from stocksync_common.cookies import no_cookies


def address_refusal(address: str) -> str | None:
    """Why Stocksync must not call `address` (an IP literal), or None for a public one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone index
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, matches in (
        ("a loopback", ip.is_loopback),
        ("a link-local (cloud metadata)", ip.is_link_local),
        ("an unspecified", ip.is_unspecified),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved),
        ("a private", ip.is_private),
        ("a non-public", not ip.is_global),
    ):
        if matches:
            return f"{ip} is {kind} address"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _first_refusal(host: str, addresses: Iterable[str]) -> str | None:
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            return f"{host} resolves to {reason}" if host != address else reason
    return None


async def url_refusal(url: str, allow_private: bool) -> str | None:
    """Why a connection may not point at `url`, or None."""
    if allow_private:
        return None
    parsed = httpx.URL(url)
    host = parsed.host
    if not host:
        return "the URL has no host"
    try:
        addresses = await resolve(host, parsed.port or (443 if parsed.scheme == "https" else 80))
    except (OSError, UnicodeError):
        return f"the host {host} does not resolve"
    if not addresses:
        return f"the host {host} does not resolve"
    return _first_refusal(host, addresses)


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to public addresses it resolved itself."""

    def __init__(self) -> None:
        self._inner = AutoBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        reason = _first_refusal(host, addresses) if addresses else f"{host} does not resolve"
        if reason is not None:
            raise httpcore.ConnectError(f"refused to call a non-public address: {reason}")
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("channel calls never use a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def channel_http_client(allow_private: bool, timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    """The client every call to a channel goes through (publisher pushes, token grants,
    order-ingest's polls and key fetches). Proxy variables are ignored when the check is
    on: a proxy would resolve the host where the check cannot see it."""
    if allow_private:
        return httpx.AsyncClient(timeout=timeout, cookies=no_cookies())
    transport = httpx.AsyncHTTPTransport()
    # httpx does not expose httpcore's `network_backend`; every new connection of the
    # pool reads this attribute, so the guard applies to every connection.
    transport._pool._network_backend = PublicOnlyBackend()
    return httpx.AsyncClient(transport=transport, timeout=timeout, trust_env=False, cookies=no_cookies())
