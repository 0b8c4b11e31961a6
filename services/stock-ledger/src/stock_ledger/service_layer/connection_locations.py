"""connections.v1 in the stock-ledger: where each connection's new order lines reserve.

Only the locations are kept: the channel-publisher owns connections, and the ledger
needs nothing else of them. The newest announcement per connection wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from stocksync_common.contracts import ConnectionChanged
from stocksync_common.topics import CONNECTIONS
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters.connection_locations_store import save_connection_locations


async def apply_connection_changes(events: Sequence[ConnectionChanged], uow: UnitOfWork) -> int:
    """Record each connection's newest list of locations; return how many connections changed."""
    if not events:
        return 0
    async with uow:
        claimed = await uow.claim(CONNECTIONS.name, (e.event_id for e in events))
        newest: dict[uuid.UUID, ConnectionChanged] = {}
        for event in events:
            if event.event_id in claimed:
                current = newest.get(event.connection_id)
                if current is None or current.occurred_at <= event.occurred_at:
                    newest[event.connection_id] = event
        await save_connection_locations(
            uow.connection,
            ((e.connection_id, e.merchant_id, e.locations, e.occurred_at) for e in newest.values()),
        )
        await uow.commit()
    return len(newest)
