"""What the rule engine's consumer use cases work with: `handle(events, context)`."""

from __future__ import annotations

from dataclasses import dataclass, field

from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.domain.adaptive import Estimation
from rule_engine.service_layer.stock_changes import RuleSets


@dataclass(frozen=True)
class ConsumerContext:
    """One per consumer, shared by its calls (entrypoints/app.py's handler table).

    `units` opens the stock batch's units of work, whose commit wakes the relay when it
    wrote events; the use cases whose reads are SQLAlchemy's (`reevaluate`) run in a
    transaction of `units.engine` and wake it themselves after their commit
    (`published`). `rule_sets` is the stock batch's cache of each merchant's rules.
    """

    units: UnitOfWorkFactory
    rule_sets: RuleSets = field(default_factory=RuleSets)
    estimation: Estimation = field(default_factory=Estimation)

    def published(self, emitted: int) -> None:
        """After the commit of a transaction that published `emitted` quantities."""
        if emitted and self.units.wake_relay is not None:
            self.units.wake_relay()
