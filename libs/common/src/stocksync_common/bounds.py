"""The bounds every edge applies, so that whatever is accepted can be stored and applied.

PostgreSQL cannot store a NUL in text, a btree index row holds at most about 8 KB, and
the columns and contracts hold 64-bit integers. An edge (an API model, a query
parameter, a channel's order parser) that accepts a value outside these bounds hands a
consumer an event it can never apply. Use these types at every edge instead of restating
the limits.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field

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


def is_valid_sku(value: object) -> bool:
    """Whether `value` is a SKU every edge accepts (for parsers that skip rather than raise)."""
    return isinstance(value, str) and 0 < len(value) <= SKU_MAX_LENGTH and not _CONTROL.search(value)


Sku = Annotated[str, Field(min_length=1, max_length=SKU_MAX_LENGTH), AfterValidator(no_control_characters)]
Identifier = Annotated[
    str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH), AfterValidator(no_control_characters)
]
Label = Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH), AfterValidator(no_control_characters)]
Text = Annotated[str, Field(max_length=TEXT_MAX_LENGTH), AfterValidator(storable_text)]
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
Quantity = Annotated[int, Field(ge=0, le=QUANTITY_MAX)]
PositiveQuantity = Annotated[int, Field(gt=0, le=QUANTITY_MAX)]
SignedQuantity = Annotated[int, Field(ge=-QUANTITY_MAX, le=QUANTITY_MAX)]
