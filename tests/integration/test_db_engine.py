"""The services' engine pings only connections idle for a while; a dead one is replaced."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stocksync_common import db
from stocksync_common.db import make_engine

pytestmark = [pytest.mark.integration]


async def test_a_pooled_connection_whose_backend_died_is_replaced_at_checkout(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url, pool_size=1)
    killer = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            before = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        async with killer.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        # The connection was used moments ago; with no idle grace it is pinged, the ping
        # fails, and the pool hands out a fresh connection instead of the dead one.
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        async with engine.connect() as conn:
            after = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        assert after != before
    finally:
        await engine.dispose()
        await killer.dispose()
