"""Each service's migrations build exactly the schema its table definitions describe: no
table, column, index or constraint in one and not the other (alembic's autogenerate
comparison, on a database migrated from nothing like production)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PrivateDatabase


def _metadata() -> dict[str, sa.MetaData]:
    from channel_publisher.adapters.tables import metadata as channel_publisher
    from order_ingest.adapters.tables import metadata as order_ingest
    from rule_engine.adapters.tables import metadata as rule_engine
    from stock_ledger.adapters.tables import metadata as stock_ledger

    return {m.schema or "": m for m in (order_ingest, stock_ledger, rule_engine, channel_publisher)}


def _same_index(connection: sa.Connection, schema: str, index: sa.Index) -> bool:
    """Whether the catalogue's definition of `index` has the elements `index` declares,
    collations included, in order."""
    definition = connection.execute(
        sa.text("SELECT indexdef FROM pg_indexes WHERE schemaname = :s AND indexname = :n"),
        {"s": schema, "n": index.name},
    ).scalar_one()
    declared = [
        element.name if isinstance(element, sa.Column) else str(element).strip("()") for element in index.expressions
    ]
    listed = definition.split(" USING btree (", 1)[1].rsplit(")", 1)[0]
    actual = [part.strip().strip("()").replace("'", "") for part in listed.split(", ")]
    return actual == [d.replace("'", "") for d in declared]


@pytest.fixture(scope="module")
def migrated_url(private_database: PrivateDatabase) -> Any:
    with private_database() as url:
        yield url


@pytest.mark.parametrize("schema", sorted(_metadata()))
def test_the_migrations_build_what_the_tables_describe(migrated_url: str, schema: str) -> None:
    metadata = _metadata()[schema]

    def differences(connection: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _: name == schema if type_ == "schema" else True,
                "version_table_schema": schema,
            },
        )
        found = list(compare_metadata(context, metadata))
        # Reflection drops an index element's collation (`(sku COLLATE "C")` comes back as
        # `sku`): such a pair is compared here by the index's definition in the catalogue.
        removed = {d[1].name: d[1] for d in found if d[0] == "remove_index"}
        added = {d[1].name: d[1] for d in found if d[0] == "add_index"}
        same = {name for name in removed.keys() & added.keys() if _same_index(connection, schema, added[name])}
        return [
            d
            for d in found
            if not (d[0] in ("remove_index", "add_index") and d[1].name in same)
            and not (d[0] == "remove_table" and d[1].name == "alembic_version")
        ]

    async def compare() -> list[Any]:
        engine = create_async_engine(migrated_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(differences)
        finally:
            await engine.dispose()

    assert asyncio.run(compare()) == []
