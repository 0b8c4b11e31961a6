"""A channel connection as order-ingest knows it (a projection of connections.v1)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InboundConnection:
    connection_id: uuid.UUID
    merchant_id: uuid.UUID
    channel_type: str
    # Current webhook secrets, newest first; several during a rotation's overlap.
    webhook_secrets: tuple[str, ...]
    # Per-type inbound settings: Amazon's expected `api_key`, Mirakl's `poll_interval_s`.
    inbound: dict[str, Any] = field(default_factory=dict)
    # What order-ingest needs to call the channel itself: Mirakl's OR11, eBay's public
    # keys. `base_url` plus the credential the call needs.
    channel_api: dict[str, Any] = field(default_factory=dict)

    @property
    def signature_headers(self) -> frozenset[str]:
        """Headers this connection names for its signature (Walmart's `authHeaderName`),
        lower case: kept out of the audit like the fixed signature headers."""
        name = self.inbound.get("signature_header")
        return frozenset({name.lower()}) if isinstance(name, str) and name else frozenset()
