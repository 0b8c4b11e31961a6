"""What a connection gives its channel adapter: the one constructor argument of every adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from channel_publisher.adapters.channels.http_answers import TokenSource


@dataclass(frozen=True)
class ChannelAccess:
    http: httpx.AsyncClient
    base_url: str
    credentials: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    # The connection's access tokens, for channels whose tokens expire (access_tokens.py).
    tokens: TokenSource | None = None

    def required_tokens(self, channel: str) -> TokenSource:
        """The access tokens, for a channel that cannot call without them."""
        if self.tokens is None:
            raise ValueError(f"{channel} needs the connection's access tokens")
        return self.tokens
