"""The bounds every edge applies, so that whatever is accepted can be stored and applied.

PostgreSQL cannot store a NUL in text, a btree index row holds at most about 8 KB, and
the columns and contracts hold 64-bit integers. An edge (an API model, a query
parameter, a channel's order parser) that accepts a value outside these bounds hands a
consumer an event it can never apply. Use these types at every edge instead of restating
the limits.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

SKU_MAX_LENGTH = 200
IDENTIFIER_MAX_LENGTH = 200
TEXT_MAX_LENGTH = 2000

# The signed 64-bit range of PostgreSQL's bigint (versions, offsets, ledger ids).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Quantities and thresholds: far above any real stock, and small enough that sums of
# many of them (a bundle, a funnel of rules, a ledger total) stay within bigint.
QUANTITY_MAX = 1_000_000_000

# C0 controls (NUL included), DEL and C1 controls: not storable (NUL) or never meaningful
# in an identifier or a label. Tabs and newlines are allowed only in free text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The same rule as a JSON schema `pattern`, so that the OpenAPI description says it.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
# RFC 3339 date-time, offset required: no epoch numbers, no dates without a time.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def no_control_characters(value: str) -> str:
    """Refuse NUL and other control characters (an identifier, a SKU, a name)."""
    match = _CONTROL.search(value)
    if match:
        raise ValueError(f"control character U+{ord(match.group()):04X} is not allowed")
    return value


def storable_text(value: str) -> str:
    """Refuse what PostgreSQL text cannot hold or a reader would not expect in prose."""
    match = _CONTROL_EXCEPT_WHITESPACE.search(value)
    if match:
        raise ValueError(f"control character U+{ord(match.group()):04X} is not allowed")
    return value


def rfc3339_text(value: object) -> object:
    """Refuse a date-time that is not RFC 3339 text (pydantic alone takes 0.5 as a timestamp)."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("a date-time such as 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00")
    return value


def in_utc_range(value: datetime) -> datetime:
    """Refuse a date-time that leaves the calendar once converted to UTC (0001-01-01T00:00:00+01:00)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date-time out of range") from None


def is_valid_sku(value: object) -> bool:
    """Whether `value` is a SKU every edge accepts (for parsers that skip rather than raise)."""
    return isinstance(value, str) and 0 < len(value) <= SKU_MAX_LENGTH and not _CONTROL.search(value)


_NO_CONTROL = Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN})
Sku = Annotated[str, Field(min_length=1, max_length=SKU_MAX_LENGTH), _NO_CONTROL, AfterValidator(no_control_characters)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH), _NO_CONTROL, AfterValidator(no_control_characters)
]
Label = Annotated[
    str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH), _NO_CONTROL, AfterValidator(no_control_characters)
]
Text = Annotated[str, Field(max_length=TEXT_MAX_LENGTH), AfterValidator(storable_text)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[int, Field(ge=0, le=QUANTITY_MAX)]
PositiveQuantity = Annotated[int, Field(gt=0, le=QUANTITY_MAX)]
SignedQuantity = Annotated[int, Field(ge=-QUANTITY_MAX, le=QUANTITY_MAX)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(rfc3339_text), AfterValidator(in_utc_range)]
"""An RFC 3339 date-time with its offset, as UTC."""

JSON_MAX_DEPTH = 8
JSON_MAX_ITEMS = 1000


def storable_json(value: object) -> object:
    """Refuse a JSON document PostgreSQL's jsonb cannot hold (a NUL in a string) or too deep or big to mean anything."""
    count = 0

    def walk(item: object, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > JSON_MAX_DEPTH or count > JSON_MAX_ITEMS:
            raise ValueError(f"at most {JSON_MAX_ITEMS} values, nested at most {JSON_MAX_DEPTH} deep")
        if isinstance(item, str):
            if "\x00" in item or len(item) > TEXT_MAX_LENGTH:
                raise ValueError(f"a text value holds a NUL or is longer than {TEXT_MAX_LENGTH} characters")
        elif isinstance(item, dict):
            for key, inner in item.items():
                walk(key, depth + 1)
                walk(inner, depth + 1)
        elif isinstance(item, list):
            for inner in item:
                walk(inner, depth + 1)
        elif isinstance(item, int) and not isinstance(item, bool) and not INT64_MIN <= item <= INT64_MAX:
            raise ValueError("an integer outside the signed 64-bit range")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError("a number that is not finite")

    walk(value, 0)
    return value
