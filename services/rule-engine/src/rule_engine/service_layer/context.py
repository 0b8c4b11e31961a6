"""What the rule engine's consumer use cases work with: `handle(events, context)`."""

from __future__ import annotations

from dataclasses import dataclass, field

from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.domain.adaptive import Estimation
from rule_engine.service_layer.stock_changes import RuleSets


@dataclass(frozen=True)
class ConsumerContext:
    """One per consumer, shared by its calls (entrypoints/app.py's handler table).

    `units` opens the use cases' units of work (`units()` for the stock batch,
    `units.begin()` for those whose reads are SQLAlchemy's, `reevaluate`), whose commit
    wakes the relay when they wrote events. `rule_sets` is the stock batch's cache of
    each merchant's rules.
    """

    units: UnitOfWorkFactory
    rule_sets: RuleSets = field(default_factory=RuleSets)
    estimation: Estimation = field(default_factory=Estimation)
