"""What every sandbox channel's order side shares: the order lines a test asks for and
one POST of a signed delivery to the receiver, recorded with its answer.

The channel modules (`<channel>_orders.py`) build the payload in their channel's shape
and sign it in their channel's scheme; this module only sends the bytes they made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field


class SandboxOrderLine(BaseModel):
    """A line as a test describes it: cumulative shipped and cancelled quantities."""

    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)
    shipped: int = Field(0, ge=0)
    cancelled: int = Field(0, ge=0)
    line_id: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    url: str
    sent_at: float
    status_code: int | None
    body: str
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "sent_at": self.sent_at,
            "status_code": self.status_code,
            "body": self.body,
            "error": self.error,
        }


async def post_delivery(
    url: str, body: bytes, headers: dict[str, str], client: httpx.AsyncClient | None = None, timeout_s: float = 30.0
) -> DeliveryResult:
    """POST the exact bytes that were signed; a connection error is a result, not an exception."""
    sent_at = time.time()
    owned = client is None
    http = client or httpx.AsyncClient()
    try:
        answer = await http.post(url, content=body, headers=headers, timeout=timeout_s)
        return DeliveryResult(url, sent_at, answer.status_code, answer.text)
    except httpx.HTTPError as error:
        return DeliveryResult(url, sent_at, None, "", f"{type(error).__name__}: {error}")
    finally:
        if owned:
            await http.aclose()
