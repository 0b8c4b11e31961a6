"""Alembic, one schema per service: each service's `migrations/env.py` calls `run_env`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(script_location, database_url), revision)


def schema_is_current(script_location: Path, database_url: str, schema: str) -> bool:
    """Whether the service's schema is at the head revision of the code that asks."""
    heads = set(ScriptDirectory.from_config(alembic_config(script_location, database_url)).get_heads())

    def current(connection: Connection) -> set[str]:
        context = MigrationContext.configure(connection, opts={"version_table_schema": schema})
        return set(context.get_current_heads())

    async def read() -> set[str]:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(current)
        finally:
            await engine.dispose()

    return asyncio.run(read()) == heads


def wait_until_current(script_location: Path, database_url: str, schema: str, timeout_s: float) -> bool:
    """Poll until the migration Job has brought the schema to this code's head (the init
    container of every Deployment: a new pod never serves on an older schema)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if schema_is_current(script_location, database_url, schema):
                return True
        except (OSError, sa.exc.SQLAlchemyError):
            pass  # the database is not reachable yet: keep waiting
        if time.monotonic() >= deadline:
            return False
        time.sleep(2.0)


def run_env(metadata: sa.MetaData) -> None:
    """Body of a service's env.py: migrate only that service's schema."""
    schema = metadata.schema
    assert schema is not None, "service metadata must be bound to a schema"
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    def include_name(name: str | None, type_: str, parent_names: object) -> bool:
        return name == schema if type_ == "schema" else True

    def migrate(connection: Connection) -> None:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            include_name=include_name,
        )
        with context.begin_transaction():
            # Several instances may start at once: one migrates, the others wait.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            await connection.run_sync(migrate)
            await connection.commit()
        await engine.dispose()

    if context.is_offline_mode():
        raise SystemExit("offline migrations are not supported; run against a database")
    asyncio.run(main())
