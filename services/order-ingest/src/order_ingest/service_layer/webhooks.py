"""The webhook use case: find the connection, limit, verify, parse, store.

`receive_webhook` takes a `ReceiveWebhook` command (what the HTTP entrypoint read from
the request) and either returns what was stored or raises `Refused` naming the outcome;
the entrypoint only translates HTTP to the command and the outcome to a status. Checks
run in this order and none of the refusals stores or produces anything: overloaded
(too much in flight), unknown channel or connection, rate limited, body too large, bad
signature (or the channel's key service down), malformed. A delivery is accepted once it
and its outbox rows are committed (group commit): that commit is the durability promise,
and no request waits for the broker.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from aiolimiter import AsyncLimiter

from stocksync_common.tracing import current_span

from order_ingest.adapters.channels import MalformedDelivery, VerificationUnavailable
from order_ingest.adapters.channels.registry import WebhookChannel
from order_ingest.adapters.delivery_store import ConnectionDirectory
from order_ingest.domain.movements import Notification
from order_ingest.service_layer.deliveries import Accepted, Delivery, DeliveryGroups, Overloaded

Outcome = Literal[
    "overloaded",
    "unknown_channel",
    "unknown_connection",
    "rate_limited",
    "too_large",
    "unverifiable",
    "bad_signature",
    "malformed",
    "disconnected",
]


class BodyTooLarge(Exception):
    """Raised by a command's `read_body` past the limit it was given."""


class BodyUnreadable(Exception):
    """Raised by a command's `read_body` when the sender went away before its body arrived."""


class Refused(Exception):
    def __init__(self, outcome: Outcome, detail: object, retry_after_s: int | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.detail = detail
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class ReceiveWebhook:
    channel_type: str
    connection_id: str
    headers: Mapping[str, str]  # lower-case names
    path: str  # path and query, as signed by some channels
    # Reads the body, raising `BodyTooLarge` past the given number of bytes (or
    # `BodyUnreadable`); called only once the connection is known and within its rate limit.
    read_body: Callable[[int], Awaitable[bytes]]
    received_at: datetime


@dataclass(frozen=True)
class Received:
    status: Literal["accepted", "duplicate", "ping"]
    notification: Notification | None = None
    accepted: Accepted | None = None


class ConnectionRateLimits:
    """One token bucket per connection, in this process (each instance limits its share)."""

    def __init__(self, rate: int, period_s: float) -> None:
        self.rate = rate
        self.period_s = period_s
        self._limiters: dict[uuid.UUID, AsyncLimiter] = {}

    @property
    def retry_after_s(self) -> int:
        # Time for one token to come back: the earliest a retry can pass.
        return max(1, math.ceil(self.period_s / self.rate))

    async def try_acquire(self, connection_id: uuid.UUID) -> bool:
        limiter = self._limiters.setdefault(connection_id, AsyncLimiter(self.rate, self.period_s))
        if not limiter.has_capacity():
            return False
        await limiter.acquire()
        return True


@dataclass(frozen=True)
class WebhookIntake:
    """What the use case needs, built once per process."""

    channels: Mapping[str, WebhookChannel]
    directory: ConnectionDirectory
    rate_limits: ConnectionRateLimits
    groups: DeliveryGroups
    max_body_bytes: int
    # Retry-After of an overloaded answer, in seconds.
    overload_retry_after_s: int = 1


async def receive_webhook(intake: WebhookIntake, command: ReceiveWebhook) -> Received:
    try:
        with intake.groups.admit():
            return await _receive(intake, command)
    except Overloaded:
        raise Refused("overloaded", "too many webhooks in flight: retry later", intake.overload_retry_after_s) from None


async def _receive(intake: WebhookIntake, command: ReceiveWebhook) -> Received:
    channel = intake.channels.get(command.channel_type)
    if channel is None:
        raise Refused("unknown_channel", "unknown channel type")
    try:
        connection_uuid = uuid.UUID(command.connection_id)
    except ValueError:
        raise Refused("unknown_connection", "unknown connection") from None
    connection = await intake.directory.find(connection_uuid)
    if connection is None or connection.channel_type != command.channel_type:
        raise Refused("unknown_connection", "unknown connection")
    if not await intake.rate_limits.try_acquire(connection.connection_id):
        raise Refused("rate_limited", "too many webhooks for this connection", intake.rate_limits.retry_after_s)
    try:
        body = await command.read_body(intake.max_body_bytes)
    except BodyTooLarge:
        raise Refused("too_large", f"body larger than {intake.max_body_bytes} bytes") from None
    except BodyUnreadable:
        raise Refused("disconnected", "the sender went away before its body was read") from None
    if channel.is_ping(body):
        return Received("ping")
    try:
        verified = await channel.verify(connection, command.headers, body, command.path)
    except VerificationUnavailable as exc:
        raise Refused("unverifiable", str(exc), 30) from None
    if not verified:
        raise Refused("bad_signature", "invalid webhook signature")
    try:
        # The registry's parsers are bounded: what they return can be stored and applied.
        notification = channel.parse(command.headers, body)
    except MalformedDelivery as exc:
        raise Refused("malformed", exc.detail) from None
    accepted = await intake.groups.accept(
        Delivery(connection, notification, body, command.headers, command.received_at, current_span())
    )
    return Received("duplicate" if accepted.duplicate else "accepted", notification, accepted)
