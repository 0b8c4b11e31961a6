"""Server-side request forgery: a connection cannot make Stocksync call a non-public address,
neither when it is created nor when a name later resolves somewhere else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from stocksync_common.channel_hosts import address_refusal, channel_http_client, url_refusal
from stocksync_common.settings import ServiceSettings


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "non-public"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_non_public_addresses_are_refused_and_named(address: str, kind: str) -> None:
    reason = address_refusal(address)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("address", ["23.227.38.65", "52.94.236.248", "2606:4700::6810:84e5"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1:8443/admin",
        "http://localhost:9000",
        "http://[::1]/",
        "http://10.0.0.5/",
        "http://0x7f000001/",  # 127.0.0.1 written in hex
    ],
)
async def test_a_url_reaching_a_non_public_address_is_refused_unless_allowed(url: str) -> None:
    assert await url_refusal(url, allow_private=False) is not None
    assert await url_refusal(url, allow_private=True) is None


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    reason = await url_refusal("https://no-such-host.invalid/", allow_private=False)
    assert reason is not None and "does not resolve" in reason


def test_private_hosts_are_allowed_by_default_outside_production_only() -> None:
    assert ServiceSettings(_env_file=None).private_channel_hosts_allowed
    production = ServiceSettings(
        _env_file=None, environment="production", api_key_secret="k" * 20, admin_token="t" * 20, secrets_key="s" * 20
    )
    assert not production.private_channel_hosts_allowed
    assert ServiceSettings(_env_file=None, allow_private_channel_hosts=False).private_channel_hosts_allowed is False


@pytest.fixture
async def local_server() -> AsyncIterator[str]:
    """A real HTTP server on 127.0.0.1: what a rebinding name would point a channel call at."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_the_channel_client_refuses_to_connect_to_a_non_public_address(local_server: str) -> None:
    async with channel_http_client(allow_private=False, timeout=5) as guarded:
        with pytest.raises(httpx.ConnectError, match="non-public address"):
            await guarded.get(local_server)
        # A name is resolved and checked at connection time too (the rebinding case).
        with pytest.raises(httpx.ConnectError, match="localhost resolves to"):
            await guarded.get(local_server.replace("127.0.0.1", "localhost"))
    async with channel_http_client(allow_private=True, timeout=5) as open_client:
        assert (await open_client.get(local_server)).text == "ok"
