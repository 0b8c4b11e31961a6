"""Rules, pure: for one channel and one SKU, what quantity the channel should show.

Rules form an ordered funnel: the available quantity enters the first applicable rule
(lowest position), each rule whose scope and condition match transforms the quantity,
and the next rule sees the result. The condition is tested on the quantity as it
enters the rule. The result is an integer, never below 0.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

ConditionOp = Literal["<=", "<", ">=", ">", "==", "between", "always"]
ActionType = Literal["set", "subtract", "cap", "percent", "allocate"]


@dataclass(frozen=True)
class Condition:
    op: ConditionOp
    value: int | None = None
    upper: int | None = None  # for "between", inclusive

    def holds(self, quantity: int) -> bool:
        v = self.value if self.value is not None else 0
        match self.op:
            case "always":
                return True
            case "<=":
                return quantity <= v
            case "<":
                return quantity < v
            case ">=":
                return quantity >= v
            case ">":
                return quantity > v
            case "==":
                return quantity == v
            case "between":
                upper = self.upper if self.upper is not None else v
                return v <= quantity <= upper
        raise ValueError(f"unknown condition {self.op!r}")


@dataclass(frozen=True)
class Action:
    type: ActionType
    value: int

    def apply(self, quantity: int) -> int:
        match self.type:
            case "set":
                return self.value
            case "subtract":
                return quantity - self.value
            case "cap":
                return min(quantity, self.value)
            case "percent":
                # Rounded down: never publish a unit that is not there.
                return math.floor(max(quantity, 0) * self.value / 100)
            case "allocate":
                # A fixed number of units reserved for this channel, whatever the stock.
                return self.value
        raise ValueError(f"unknown action {self.type!r}")


@dataclass(frozen=True)
class Rule:
    rule_id: uuid.UUID
    position: int
    condition: Condition
    action: Action
    # Empty means every connection of the merchant.
    connection_ids: frozenset[uuid.UUID] = frozenset()
    # Empty means every product.
    skus: frozenset[str] = frozenset()
    enabled: bool = True

    def applies_to(self, connection_id: uuid.UUID, sku: str) -> bool:
        return (
            self.enabled
            and (not self.connection_ids or connection_id in self.connection_ids)
            and (not self.skus or sku in self.skus)
        )


@dataclass(frozen=True)
class Decision:
    quantity: int
    rule_ids: tuple[uuid.UUID, ...] = field(default=())


def channel_quantity(rules: Sequence[Rule], connection_id: uuid.UUID, sku: str, available: int) -> Decision:
    quantity = available
    decided_by: list[uuid.UUID] = []
    for rule in sorted(rules, key=lambda r: (r.position, str(r.rule_id))):
        if rule.applies_to(connection_id, sku) and rule.condition.holds(quantity):
            quantity = rule.action.apply(quantity)
            decided_by.append(rule.rule_id)
    return Decision(max(0, int(quantity)), tuple(decided_by))
