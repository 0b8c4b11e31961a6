"""Per-event isolation: the bisection finds the events at fault and applies the rest."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from stocksync_common.dead_letters import (
    UNKNOWN_MERCHANT,
    DeadLetter,
    backoff_delay,
    dead_letter_event,
    dead_letter_row,
    is_transient,
    isolate_failures,
)
from stocksync_common.topics import ALL_TOPICS, DEAD_LETTER_TOPICS, EVENT_TOPICS, dead_letter_topic_of


class PoisonError(ValueError):
    pass


class TransactionalHandler:
    """Applies a batch all or nothing, as a handler's database transaction does."""

    def __init__(self, poison: set[int], transient_on_call: int | None = None) -> None:
        self.poison = poison
        self.applied: list[int] = []
        self.calls = 0
        self.transient_on_call = transient_on_call

    async def __call__(self, batch: list[int]) -> None:
        self.calls += 1
        if self.calls == self.transient_on_call:
            raise ConnectionRefusedError("database down")
        bad = [event for event in batch if event in self.poison]
        if bad:
            raise PoisonError(f"cannot apply {bad[0]}")
        self.applied.extend(batch)


@given(
    size=st.integers(min_value=1, max_value=200),
    data=st.data(),
)
@settings(max_examples=50, deadline=None)
def test_bisection_applies_every_good_event_once_in_order_and_returns_exactly_the_bad_ones(
    size: int, data: st.DataObject
) -> None:
    batch = list(range(size))
    poison = set(data.draw(st.lists(st.sampled_from(batch), max_size=5)))
    handler = TransactionalHandler(poison)

    failed = asyncio.run(isolate_failures(batch, handler))

    assert [event for event, _ in failed] == sorted(poison)
    assert all(isinstance(error, PoisonError) for _, error in failed)
    assert handler.applied == [event for event in batch if event not in poison]
    # Bounded: the calls are the nodes of a binary tree over the batch.
    assert handler.calls <= 2 * size - 1


def test_one_bad_event_in_a_large_batch_costs_about_two_log_n_calls() -> None:
    handler = TransactionalHandler({317})

    failed = asyncio.run(isolate_failures(list(range(500)), handler))

    assert [event for event, _ in failed] == [317]
    assert len(handler.applied) == 499
    assert handler.calls <= 2 * 9 + 1  # 2 * ceil(log2(500)) + the first call


def test_a_transient_failure_during_bisection_is_raised_and_nothing_is_dead_lettered() -> None:
    handler = TransactionalHandler({3}, transient_on_call=3)

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(isolate_failures(list(range(8)), handler))


def test_a_batch_that_fails_only_transiently_is_never_bisected() -> None:
    async def database_down(batch: list[int]) -> None:
        raise ConnectionResetError("connection reset by peer")

    with pytest.raises(ConnectionResetError):
        asyncio.run(isolate_failures(list(range(8)), database_down))


def _wrapped_by_sqlalchemy(cause: Exception) -> sa.exc.DBAPIError:
    try:
        try:
            raise cause
        except Exception as exc:
            raise sa.exc.DBAPIError("INSERT ...", {}, exc) from exc
    except sa.exc.DBAPIError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "connection refused"),
        TimeoutError(),
        OSError("network unreachable"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        _wrapped_by_sqlalchemy(asyncpg.exceptions.AdminShutdownError("terminating connection")),
        sa.exc.InterfaceError("SELECT 1", {}, Exception("connection is closed")),
    ],
)
def test_database_and_broker_outages_are_transient(error: BaseException) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.ProgramLimitExceededError("index row requires 10040 bytes, maximum size is 8191"),
        _wrapped_by_sqlalchemy(asyncpg.exceptions.ProgramLimitExceededError("index row requires 10040 bytes")),
        _wrapped_by_sqlalchemy(asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")),
        OverflowError("int too big to convert"),
        ValueError("Integer exceeds 64-bit range"),
        KeyError("connection"),
    ],
)
def test_errors_of_the_event_itself_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_delay(n, 0.5, 30) for n in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert backoff_delay(10_000, 0.5, 30) == 30


def test_a_dead_letter_keeps_the_original_record_byte_for_byte() -> None:
    merchant = uuid.uuid4()
    value = b'{"merchant_id": "' + str(merchant).encode() + b'", "sku": "\\u0000"}'
    letter = DeadLetter("stock-ledger", "orders.v1", 3, 41, b"m:sku", value, "ValidationError: sku")

    event = dead_letter_event(uuid.uuid4(), letter)
    row = dead_letter_row(event)

    assert event.merchant_id == merchant  # read from the record although it breaks its contract
    assert (row["key"], row["value"], row["topic"], row["partition"], row["offset"]) == (
        b"m:sku",
        value,
        "orders.v1",
        3,
        41,
    )


def test_a_record_that_names_no_merchant_goes_to_the_operators_only() -> None:
    letter = DeadLetter("rule-engine", "stock.changed.v1", 0, 1, None, b"\xff not json", "ValidationError")
    assert dead_letter_event(uuid.uuid4(), letter).merchant_id == UNKNOWN_MERCHANT


def test_every_event_topic_has_its_dead_letter_topic_in_the_registry() -> None:
    assert {dead_letter_topic_of(topic.name) for topic in EVENT_TOPICS} == set(DEAD_LETTER_TOPICS)
    assert set(DEAD_LETTER_TOPICS) <= set(ALL_TOPICS)
