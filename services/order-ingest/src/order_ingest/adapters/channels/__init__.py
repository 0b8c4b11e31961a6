"""One module per channel: how its order notifications are verified and read.

Each module has `parse(headers, body) -> Notification` (headers with lower-case names)
and a verifier; `registry.py` puts them together per channel type.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


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
