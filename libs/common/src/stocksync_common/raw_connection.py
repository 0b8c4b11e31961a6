"""asyncpg directly, on a connection of the SQLAlchemy pool, for hot paths.

SQLAlchemy's Core costs a few hundred microseconds of Python per statement (compiling
or looking up the cache, binding, the greenlet hop, building rows). On the paths that
run for every webhook or every consumer batch that was a fifth of a service's CPU, so
those paths send hand-written SQL through asyncpg (prepared once per connection by
asyncpg's statement cache) on a connection borrowed from the same pool as the rest of
the service. Everything else stays on SQLAlchemy.

Parameters that are JSON travel as text and are cast in SQL (`$1::text::jsonb`), so the
statements do not depend on the codecs SQLAlchemy registers on its connections.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine


@asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection from the engine's pool, inside a transaction.

    The transaction commits when the block ends and rolls back if it raises. A
    connection that could not be rolled back cleanly (a query cancelled mid-flight)
    is discarded rather than handed back to the pool inside a transaction.
    """
    async with engine.connect() as conn:
        pooled = await conn.get_raw_connection()
        driver: Any = pooled.driver_connection
        try:
            async with driver.transaction():
                yield driver
        except BaseException:
            if driver.is_closed() or driver.is_in_transaction():
                await conn.invalidate()
            raise


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """An asyncpg connection from the engine's pool, outside any transaction: for a
    single statement (its own implicit transaction)."""
    async with engine.connect() as conn:
        pooled = await conn.get_raw_connection()
        driver: Any = pooled.driver_connection
        try:
            yield driver
        except BaseException:
            if driver.is_closed() or driver.is_in_transaction():
                await conn.invalidate()
            raise


def uuid_array_literal(ids: Iterable[uuid.UUID]) -> str:
    """A uuid[] as PostgreSQL's array text ('{a,b}'): how a list per row travels in an
    `unnest` of text, cast back with `::uuid[]`."""
    return "{" + ",".join(str(i) for i in ids) + "}"
