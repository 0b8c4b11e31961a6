"""Each connection's channel adapter, and the one HTTP client they all call through.

An adapter is built once per connection and kept for the life of the process, so that
its pacing (rate limit, Retry-After, Mirakl's once a minute) holds across batches, and
across the drain, the drift check and the display probes, which all call through it.
The drainer, the drift check and the display delays take an `AdapterSource`: a test
gives its own adapters through it (or through `ConnectionAdapters(factories=...)`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.channel_hosts import channel_http_client
from stocksync_common.tracing import instrument_client

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.access_tokens import AccessTokens, grant_for
from channel_publisher.adapters.channels.registry import ADAPTERS, AdapterFactory
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.channels import CHANNELS
from channel_publisher.domain.pushes import BatchResult, ChannelAdapter, CredentialsError, PushItem
from channel_publisher.service_layer.connections import Connection, load_connection


@dataclass(frozen=True)
class ConnectionAdapter:
    connection: Connection
    adapter: ChannelAdapter


class AdapterSource(Protocol):
    async def adapter_for(self, connection_id: uuid.UUID) -> ConnectionAdapter | None:
        """The connection and its adapter; None when the connection is gone."""
        ...


class ConnectionAdapters:
    """The adapters of the connections, built from the channel registry (`factories`)."""

    def __init__(
        self, engine: AsyncEngine, settings: PublisherSettings, factories: Mapping[str, AdapterFactory] = ADAPTERS
    ) -> None:
        self.engine = engine
        self.factories = factories
        self.http = channel_http_client(settings.private_channel_hosts_allowed, settings.channel_timeout_s)
        instrument_client(self.http)
        self._built: dict[uuid.UUID, ConnectionAdapter] = {}

    async def adapter_for(self, connection_id: uuid.UUID) -> ConnectionAdapter | None:
        built = self._built.get(connection_id)
        if built is not None:
            return built
        async with self.engine.connect() as conn:
            connection = await load_connection(conn, connection_id)
        if connection is None or connection.channel_type not in self.factories:
            return None
        adapter: ChannelAdapter
        try:
            CHANNELS[connection.channel_type].credentials.model_validate(connection.credentials)
            grant = grant_for(connection.channel_type, connection.base_url, connection.credentials)
            tokens = AccessTokens(self.engine, self.http, connection_id, grant) if grant is not None else None
            access = ChannelAccess(self.http, connection.base_url, connection.credentials, connection.settings, tokens)
            adapter = self.factories[connection.channel_type](access)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            # Stored before the channel's credentials took their current shape (a fixed
            # access token where a refresh token is needed now): the connection's problem.
            adapter = UnusableConnection(connection.channel_type, f"{type(exc).__name__}: {exc}")
        # Two callers building at once keep the first: one pacer per connection.
        return self._built.setdefault(connection_id, ConnectionAdapter(connection, adapter))

    async def aclose(self) -> None:
        await self.http.aclose()


class UnusableConnection:
    """A connection whose stored credentials or settings no longer build its adapter: every
    call is a credentials error (health, pause), its quantities wait for a new connection."""

    batch_limit = 100

    def __init__(self, channel_type: str, problem: str) -> None:
        self.channel_type = channel_type
        self.problem = problem[:1000]

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        raise CredentialsError(f"the connection's stored credentials cannot be used: {self.problem}")
