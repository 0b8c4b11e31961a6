"""asyncpg directly, on a connection of the SQLAlchemy pool, for hot paths.

The paths that run for every webhook or every consumer batch send hand-written SQL
through asyncpg (prepared once per connection by asyncpg's statement cache) on a
connection borrowed from the same pool as the rest of the service; everything else
stays on SQLAlchemy. Why, and what it cost before: docs/decisions/0001-raw-asyncpg-on-hot-paths.md.
A use case gets its connection from a unit of work (stocksync_common.uow).

Parameters that are JSON travel as text and are cast in SQL (`$1::text::jsonb`), so the
statements do not depend on the codecs SQLAlchemy registers on its connections.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Connection: TypeAlias = asyncpg.Connection
"""asyncpg's connection: what a hot path's statements run on (a unit of work's `connection`)."""


@asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[Connection]:
    """An asyncpg connection from the engine's pool, inside a transaction.

    The transaction commits when the block ends and rolls back if it raises. A
    connection that could not be rolled back cleanly (a query cancelled mid-flight)
    is discarded rather than handed back to the pool inside a transaction.
    """
    async with engine.connect() as conn:
        pooled = await conn.get_raw_connection()
        driver: Connection = pooled.driver_connection
        try:
            async with driver.transaction():
                yield driver
        except BaseException:
            if driver.is_closed() or driver.is_in_transaction():
                await conn.invalidate()
            raise


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[Connection]:
    """An asyncpg connection from the engine's pool, outside any transaction: for a
    single statement (its own implicit transaction)."""
    async with engine.connect() as conn:
        pooled = await conn.get_raw_connection()
        driver: Connection = pooled.driver_connection
        try:
            yield driver
        except BaseException:
            if driver.is_closed() or driver.is_in_transaction():
                await conn.invalidate()
            raise


async def driver_connection(conn: AsyncConnection) -> Connection:
    """The asyncpg connection under a SQLAlchemy connection, inside its transaction.

    SQLAlchemy begins the driver's transaction at its first statement; one is sent if
    none has been, so that what runs on the driver is never outside the transaction.
    """
    driver: Connection = (await conn.get_raw_connection()).driver_connection
    if conn.in_transaction() and not driver.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return driver


def column_arrays(rows: Sequence[object], names: Sequence[str]) -> list[list[Any]]:
    """Rows (objects with those attributes) as one list per named column: the array
    parameters of an `unnest`, which keeps a statement the same for any number of rows."""
    return [[getattr(row, name) for row in rows] for name in names]


def unnest_sql(
    columns: Sequence[tuple[str, str]], first_parameter: int, alias: str, *, ordinality: bool = False
) -> str:
    """`unnest($n::type[], ...) AS alias(name, ...)` for (name, type) columns, whose
    parameters are `column_arrays` of the same names; with `ordinality`, a last column
    `n` numbers the rows in array order."""
    arrays = ", ".join(f"${first_parameter + i}::{type_}[]" for i, (_, type_) in enumerate(columns))
    names = [name for name, _ in columns] + (["n"] if ordinality else [])
    return f"unnest({arrays}){' WITH ORDINALITY' if ordinality else ''} AS {alias}({', '.join(names)})"


def uuid_array_literal(ids: Iterable[uuid.UUID]) -> str:
    """A uuid[] as PostgreSQL's array text ('{a,b}'): how a list per row travels in an
    `unnest` of text, cast back with `::uuid[]`."""
    return "{" + ",".join(str(i) for i in ids) + "}"
