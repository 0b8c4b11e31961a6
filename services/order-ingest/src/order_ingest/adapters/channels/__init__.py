"""One module per channel: how its order notifications are verified and read.

Each module has `parse(headers, body) -> Notification` (headers with lower-case names)
and a verifier; `registry.py` puts them together per channel type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from stocksync_common.bounds import Identifier, Label, Quantity, Sku

from order_ingest.domain.movements import Notification


class MalformedDelivery(ValueError):
    """A delivery that passed verification but cannot be read; answered 422 naming the field."""

    def __init__(self, detail: str | list[dict[str, Any]]) -> None:
        super().__init__(detail)
        # A sentence for a missing header, pydantic-style errors with `loc` for the body.
        self.detail = detail

    @classmethod
    def missing_header(cls, name: str) -> MalformedDelivery:
        return cls(f"header {name} is required")

    @classmethod
    def from_validation(cls, error: ValidationError) -> MalformedDelivery:
        return cls([{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors()])


class VerificationUnavailable(Exception):
    """The signature cannot be checked right now (the channel's key service is down):
    answered 503 so that the channel retries, never 401 (which would drop the order)."""


class _BoundedLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    external_order_id: Identifier
    line_id: Identifier
    sku: Sku
    ordered: Quantity
    shipped: Quantity
    cancelled: Quantity
    returned: Quantity


class _BoundedNotification(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel_event_id: Identifier
    topic: Label
    lines: list[_BoundedLine]
    skipped_lines: list[Identifier]


Parser = Callable[[Mapping[str, str], bytes], Notification]


def bounded(parse: Parser) -> Parser:
    """A channel's parser that refuses what the pipeline could not store or apply.

    Every channel's notification goes through the same bounds (stocksync_common.bounds):
    a SKU, order id or line id that is too long or holds a control character, or a
    quantity beyond any stock, makes the delivery malformed (422) before anything is
    stored, instead of an orders.v1 event the ledger can never apply.
    """

    def parse_bounded(headers: Mapping[str, str], body: bytes) -> Notification:
        notification = parse(headers, body)
        try:
            _BoundedNotification.model_validate(dataclasses.asdict(notification))
        except ValidationError as exc:
            raise MalformedDelivery.from_validation(exc) from None
        return notification

    return parse_bounded
