"""What every non-Shopify sandbox marketplace shares: listings, a rate limit, injected
failures, and the record of every call, with one control API under `/_sandbox/`.

Each channel's module (woocommerce.py, amazon.py, ...) speaks its channel's protocol and
uses a `Marketplace` for the rest:

- `admit(skus)` runs before a channel call is served: the injected whole-call failure,
  then the rate limit (a token bucket; 429 with Retry-After). It also notices a SKU sent
  again before the Retry-After the sandbox gave for it (`early_retries`): an adapter that
  ignores Retry-After is caught.
- `transient_failure(sku)` says whether this SKU's next item fails on its own (per-SKU
  5xx inside a batch), as set with `POST /_sandbox/fail-skus`.
- `record(...)` keeps every call with its SKUs and quantities, accepted or not.

Control API (not part of any channel): `GET /_sandbox/health`, `POST/GET /_sandbox/listings`,
`POST /_sandbox/listings/{listing_id}/quantity` (a manual change on the marketplace, for
drift checks), `GET /_sandbox/calls`, `GET /_sandbox/stats`, `POST /_sandbox/fail-next`,
`POST /_sandbox/fail-skus`, `POST /_sandbox/config`, `POST /_sandbox/reset`, and for the
channels with access tokens `POST /_sandbox/revoke-tokens` (every token issued is refused
from then on; `GET /_sandbox/stats` counts `tokens_issued` and `expired_token_calls`).
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field


@dataclass
class Listing:
    listing_id: str
    sku: str
    quantity: int
    # Every quantity the channel accepted for this listing, in order (manual changes too).
    history: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"listing_id": self.listing_id, "sku": self.sku, "quantity": self.quantity, "history": self.history}


@dataclass
class Call:
    seq: int
    received_at: float
    operation: str
    status_code: int
    # (sku, quantity) of every item in the call, whether it was applied or not.
    items: list[tuple[str, int | None]]
    applied: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "received_at": self.received_at,
            "operation": self.operation,
            "status_code": self.status_code,
            "items": [{"sku": sku, "quantity": quantity} for sku, quantity in self.items],
            "applied": self.applied,
        }


@dataclass(frozen=True)
class InjectedFailure:
    status_code: int
    retry_after: float | None


class TokenBucket:
    def __init__(self, rate: float | None, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self._clock = rate, max(1, burst), clock
        self._tokens = float(self.burst)
        self._updated = clock()

    def take(self) -> float:
        """0 when a token was taken; else the seconds until one is there."""
        if not self.rate:
            return 0.0
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class TokenIssuer:
    """Access tokens as the marketplace issues them: each lives `lifetime_s` seconds, then
    the marketplace refuses it. Tests set a short lifetime to cross an expiry."""

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s, self._clock = lifetime_s, clock
        self._expiry: dict[str, float] = {}
        self.issued = 0
        self.expired_calls = 0

    def issue(self) -> str:
        token = secrets.token_urlsafe(24)
        self._expiry[token] = self._clock() + self.lifetime_s
        self.issued += 1
        return token

    def check(self, token: str) -> str:
        """ "ok", "expired" or "unknown"."""
        expiry = self._expiry.get(token)
        if expiry is None:
            return "unknown"
        if self._clock() >= expiry:
            self.expired_calls += 1
            return "expired"
        return "ok"

    def revoke_all(self) -> int:
        """Every token issued so far is refused from now on (a revocation, a key rotation)."""
        revoked = len(self._expiry)
        self._expiry = dict.fromkeys(self._expiry, float("-inf"))
        return revoked

    def stats(self) -> dict[str, int]:
        return {"tokens_issued": self.issued, "expired_token_calls": self.expired_calls}


class ListingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1)
    quantity: int = Field(0, ge=0)
    listing_id: str | None = Field(None, description="The channel's id; the SKU when the channel addresses by SKU")


class SeedListings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    listings: list[ListingIn]


class ManualQuantity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: int = Field(ge=0)


class FailNext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(1, ge=1)
    status_code: int = Field(429, ge=400, le=599)
    retry_after: float | None = Field(None, ge=0)


class FailSkus(BaseModel):
    model_config = ConfigDict(extra="forbid")
    skus: list[str]
    times: int = Field(1, ge=1, description="How many calls each SKU fails in before it passes")


class RateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests_per_second: float | None = Field(None, gt=0)
    burst: int = Field(1, ge=1)


class Marketplace:
    def __init__(
        self,
        channel: str,
        *,
        requests_per_second: float | None,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.clock, self.wall_clock = clock, wall_clock
        self._rate = (requests_per_second, burst)
        # Set by the channels whose API takes short-lived access tokens.
        self.tokens: TokenIssuer | None = None
        self.reset()

    def reset(self) -> None:
        self.listings: dict[str, Listing] = {}
        self.calls: list[Call] = []
        self.bucket = TokenBucket(*self._rate, self.clock)
        self.pending_failures: deque[InjectedFailure] = deque()
        self.failing_skus: dict[str, int] = {}
        self.retry_after_until: dict[str, float] = {}
        self.stats = {"rate_limited": 0, "early_retries": 0, "injected_failures": 0, "unauthorized": 0, "invalid": 0}

    # --- serving channel calls -------------------------------------------------------------

    def admit(self, skus: Sequence[str], operation: str, items: list[tuple[str, int | None]]) -> Response | None:
        """None to serve the call; else the 429/5xx answer (recorded)."""
        now = self.clock()
        if any(self.retry_after_until.get(sku, 0.0) > now for sku in skus):
            self.stats["early_retries"] += 1
        failure = self.pending_failures.popleft() if self.pending_failures else None
        if failure is not None:
            self.stats["injected_failures"] += 1
            return self.refuse(failure.status_code, failure.retry_after, skus, operation, items)
        wait = self.bucket.take()
        if wait > 0:
            self.stats["rate_limited"] += 1
            return self.refuse(429, math.ceil(wait * 10) / 10, skus, operation, items)
        return None

    def refuse_until(self, skus: Sequence[str], retry_after: float) -> None:
        until = self.clock() + retry_after
        for sku in skus:
            self.retry_after_until[sku] = until

    def refuse(
        self,
        status_code: int,
        retry_after: float | None,
        skus: Sequence[str],
        operation: str,
        items: list[tuple[str, int | None]],
    ) -> Response:
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = _seconds(retry_after)
            self.refuse_until(skus, retry_after)
        self.record(operation, status_code, items, [])
        message = "Too Many Requests" if status_code == 429 else "Service Unavailable"
        return JSONResponse({"errors": [{"code": str(status_code), "message": message}]}, status_code, headers=headers)

    def transient_failure(self, sku: str) -> bool:
        remaining = self.failing_skus.get(sku, 0)
        if remaining <= 0:
            return False
        self.failing_skus[sku] = remaining - 1
        return True

    def apply(self, listing: Listing, quantity: int) -> None:
        listing.quantity = quantity
        listing.history.append(quantity)

    def record(self, operation: str, status_code: int, items: list[tuple[str, int | None]], applied: list[str]) -> None:
        self.calls.append(Call(len(self.calls) + 1, self.wall_clock(), operation, status_code, items, applied))

    def by_sku(self, sku: str) -> Listing | None:
        return next((listing for listing in self.listings.values() if listing.sku == sku), None)

    # --- control API -----------------------------------------------------------------------

    def control_router(self) -> APIRouter:
        router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])

        @router.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok", "channel": self.channel}

        @router.post("/listings")
        async def seed(body: SeedListings) -> dict[str, Any]:
            for item in body.listings:
                listing_id = item.listing_id or item.sku
                self.listings[listing_id] = Listing(listing_id, item.sku, item.quantity)
            return {"seeded": len(body.listings)}

        @router.get("/listings")
        async def listings() -> dict[str, Any]:
            return {"listings": [listing.as_json() for listing in self.listings.values()]}

        @router.post("/listings/{listing_id}/quantity")
        async def manual_change(listing_id: str, body: ManualQuantity) -> dict[str, Any]:
            listing = self.listings.get(listing_id)
            if listing is None:
                raise HTTPException(404, f"no listing {listing_id}")
            self.apply(listing, body.quantity)
            return listing.as_json()

        @router.get("/calls")
        async def calls(since_seq: int = 0) -> dict[str, Any]:
            return {"calls": [call.as_json() for call in self.calls if call.seq > since_seq]}

        @router.get("/stats")
        async def stats() -> dict[str, Any]:
            tokens = self.tokens.stats() if self.tokens is not None else {}
            return {**self.stats, **tokens, "calls": len(self.calls)}

        @router.post("/fail-next")
        async def fail_next(body: FailNext) -> dict[str, Any]:
            self.pending_failures.extend([InjectedFailure(body.status_code, body.retry_after)] * body.count)
            return {"pending_failures": len(self.pending_failures)}

        @router.post("/fail-skus")
        async def fail_skus(body: FailSkus) -> dict[str, Any]:
            for sku in body.skus:
                self.failing_skus[sku] = body.times
            return {"failing_skus": self.failing_skus}

        @router.post("/config")
        async def config(body: RateConfig) -> dict[str, Any]:
            self._rate = (body.requests_per_second, body.burst)
            self.bucket = TokenBucket(*self._rate, self.clock)
            return {"requests_per_second": body.requests_per_second, "burst": body.burst}

        @router.post("/revoke-tokens")
        async def revoke_tokens() -> dict[str, int]:
            if self.tokens is None:
                raise HTTPException(404, f"{self.channel} takes no access tokens")
            return {"revoked": self.tokens.revoke_all()}

        @router.post("/reset")
        async def reset() -> dict[str, bool]:
            self.reset()
            return {"reset": True}

        return router


def _seconds(value: float) -> str:
    """Retry-After is whole seconds on the wire (RFC 9110): round up, never down."""
    return str(max(1, math.ceil(value)))
