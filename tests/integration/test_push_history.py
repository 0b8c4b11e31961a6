"""The push history as `GET /v1/pushes` lists it (channel_publisher.service_layer.
push_history) against the rows themselves: every filter, both orders, pages by push_id, for
a busy channel and a quiet one whose pushes are all older than the busy one's."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.db import make_engine

from channel_publisher.adapters.tables import pushes
from channel_publisher.config import PublisherSettings
from channel_publisher.service_layer.connections import create_connection
from channel_publisher.service_layer.health_report import connection_health
from channel_publisher.service_layer.push_history import PushFilter, push_history
from tests.integration.publisher_connections import publisher_units


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def history(engine: AsyncEngine) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, list[dict[str, Any]]]:
    """A merchant with a quiet channel (30 pushes, first) and a busy one (300, after), and
    another merchant's pushes on the same connection id (which must never show)."""
    merchant, other = uuid.uuid4(), uuid.uuid4()
    quiet, busy = uuid.uuid4(), uuid.uuid4()
    start = utcnow() - timedelta(hours=2)
    rows = []
    for n, (owner, connection) in enumerate(
        [(merchant, quiet)] * 30 + [(merchant, busy)] * 300 + [(other, quiet)] * 20
    ):
        rows.append(
            {
                "merchant_id": owner,
                "connection_id": connection,
                "sku": f"S-{n % 7}",
                "location": "default",
                "quantity": n % 50,
                "version": n + 1,
                "stock_version": n + 1,
                "rule_ids": [],
                "causation_id": f"history:{n}",
                "status": ("accepted", "accepted", "accepted", "rejected", "retrying")[n % 5],
                "attempts": 1,
                "finished_at": start + timedelta(seconds=20 * n),
            }
        )
    async with engine.begin() as conn:
        stored = (await conn.execute(sa.insert(pushes).returning(pushes), rows)).all()
    return merchant, quiet, busy, [dict(r._mapping) for r in stored]


def expected(
    rows: list[dict[str, Any]], merchant: uuid.UUID, f: PushFilter, newest_first: bool, limit: int
) -> list[int]:
    kept = [
        r["push_id"]
        for r in rows
        if r["merchant_id"] == merchant
        and (f.connection_id is None or r["connection_id"] == f.connection_id)
        and (f.sku is None or r["sku"] == f.sku)
        and (f.status is None or r["status"] == f.status)
        and (f.since is None or r["finished_at"] >= f.since)
        and (f.until is None or r["finished_at"] < f.until)
        and r["push_id"] > f.after
        and (f.before is None or r["push_id"] < f.before)
    ]
    return sorted(kept, reverse=newest_first)[:limit]


async def test_every_filter_and_page_lists_exactly_the_merchants_matching_pushes_in_order(
    engine: AsyncEngine, history: tuple[uuid.UUID, uuid.UUID, uuid.UUID, list[dict[str, Any]]]
) -> None:
    merchant, quiet, busy, rows = history
    ids = sorted(r["push_id"] for r in rows)
    middle = rows[len(rows) // 3]["finished_at"]
    filters = [
        PushFilter(),
        PushFilter(connection_id=quiet),
        PushFilter(connection_id=busy),
        PushFilter(connection_id=quiet, status="accepted"),
        PushFilter(connection_id=quiet, status="rejected"),
        PushFilter(connection_id=busy, sku="S-3"),
        PushFilter(connection_id=quiet, after=ids[10]),
        PushFilter(connection_id=quiet, before=ids[20]),
        PushFilter(connection_id=busy, after=ids[40], before=ids[200]),
        PushFilter(connection_id=quiet, since=middle),
        PushFilter(connection_id=busy, until=middle, status="retrying"),
        PushFilter(sku="S-1", before=ids[-1]),
        PushFilter(connection_id=uuid.uuid4()),
    ]
    for f in filters:
        for newest_first in (False, True):
            for limit in (1, 7, 1000):
                got = [
                    r.push_id for r in await push_history(engine, merchant, f, newest_first=newest_first, limit=limit)
                ]
                assert got == expected(rows, merchant, f, newest_first, limit), (f, newest_first, limit)


async def test_pages_of_a_quiet_channel_newest_first_walk_its_whole_history_once(
    engine: AsyncEngine, history: tuple[uuid.UUID, uuid.UUID, uuid.UUID, list[dict[str, Any]]]
) -> None:
    merchant, quiet, _, rows = history
    seen: list[int] = []
    before = None
    while page := await push_history(
        engine, merchant, PushFilter(connection_id=quiet, before=before), newest_first=True, limit=4
    ):
        seen += [r.push_id for r in page]
        before = page[-1].push_id
    mine = [r["push_id"] for r in rows if r["merchant_id"] == merchant and r["connection_id"] == quiet]
    assert seen == sorted(mine, reverse=True) and len(seen) == 30


async def test_a_connections_health_names_its_newest_error_whichever_its_status(engine: AsyncEngine) -> None:
    merchant = uuid.uuid4()
    connection = await create_connection(
        publisher_units(engine),
        merchant_id=merchant,
        channel_type="generic",
        name="errors",
        base_url="http://127.0.0.1:9",
        credentials={"signing_secret": "whsec_" + "a" * 32},
        webhook_secrets=[],
        settings={},
        inbound={},
        listing_rows=[],
    )
    now = utcnow()

    async def push(status: str, response: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(pushes).values(
                    merchant_id=merchant,
                    connection_id=connection,
                    sku="A",
                    location="default",
                    quantity=1,
                    version=1,
                    stock_version=1,
                    rule_ids=[],
                    causation_id=f"health:{response}",
                    status=status,
                    attempts=1,
                    channel_response=response,
                    finished_at=now,
                )
            )

    assert (await connection_health(engine, merchant, connection, PublisherSettings()) or {})["last_error"] is None
    for status, response in (("retrying", "HTTP 503"), ("rejected", "SKU unknown"), ("accepted", "ok")):
        await push(status, response)
    health = await connection_health(engine, merchant, connection, PublisherSettings())
    assert health is not None
    assert health["last_error"] == {
        "sku": "A",
        "status": "rejected",
        "channel_response": "SKU unknown",
        "finished_at": now,
    }
    await push("retrying", "HTTP 502")
    health = await connection_health(engine, merchant, connection, PublisherSettings())
    assert health is not None and health["last_error"]["channel_response"] == "HTTP 502"
