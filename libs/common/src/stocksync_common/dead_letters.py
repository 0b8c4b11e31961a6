"""Per-event isolation in a consumer batch, and the dead letters it leaves.

A consumer applies a batch in one go. When the handler fails, either the failure is
transient (the database or the broker is unreachable: `is_transient`) and the whole
batch is retried after a backoff, or one or more events cannot be applied and
`isolate_failures` narrows the batch down to them by bisection: every other event is
applied, and each event at fault becomes a dead letter. The partition never stops for
one event. Later events of the same key are not held back (docs/dead-letters.md says
why): every event on a stock topic carries absolute values and a version, and order-line
movements converge in the ledger whatever their order.

A dead letter is written in the consuming service's own `dead_letters` table and, in
the same transaction, through its outbox to `<topic>.dlq`, where the stock-ledger
collects every service's dead letters for the merchant-facing list and replay.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import orjson
import sqlalchemy as sa
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError
from prometheus_client import Counter
from sqlalchemy.dialects import postgresql as pg

from stocksync_common.bounds import TEXT_MAX_LENGTH
from stocksync_common.contracts import DeadLetterRecorded
from stocksync_common.topics import dead_letter_topic_of

if TYPE_CHECKING:  # the unit of work imports the outbox, which imports kafka, which imports this
    from stocksync_common.uow import UnitOfWorkFactory

DEAD_LETTERS = Counter(
    "stocksync_dead_letters_total", "Events a consumer could not apply, moved to a dead letter", ["group", "topic"]
)

# The merchant of a record that does not say which (it broke its contract): only the
# operators' view lists it.
UNKNOWN_MERCHANT = uuid.UUID(int=0)

# SQLSTATE classes and codes that say "try again later", not "this event is wrong":
# connection exceptions, insufficient resources, operator intervention (shutdown,
# restart), serialization failures and deadlocks.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "57P", "40001", "40P01", "55P03")
_TRANSIENT_KAFKA = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, RequestTimedOutError)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `orig`) and what caused it, once each."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending.extend([current.__cause__, current.__context__, orig if isinstance(orig, BaseException) else None])


def is_transient(exc: BaseException) -> bool:
    """Whether a handler's failure says the database or the broker is unreachable.

    The one place that decides between "retry the batch later" and "find the event at
    fault": a transient failure never dead-letters anything.
    """
    for cause in _causes(exc):
        if isinstance(cause, (OSError, TimeoutError, *_TRANSIENT_KAFKA)):
            return True  # connection refused or reset, DNS, socket and statement timeouts
        if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
            return True
        if isinstance(cause, (sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError)):
            return True  # "connection is closed", pool checkout timeout
        if type(cause).__module__.startswith("asyncpg") and type(cause).__name__ in (
            "InterfaceError",
            "ConnectionDoesNotExistError",
            "ConnectionFailureError",
            "InternalClientError",
        ):
            return True
        sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return True
    return False


T = TypeVar("T")


async def isolate_failures(
    batch: Sequence[T],
    handler: Callable[[list[T]], Awaitable[None]],
    *,
    transient: Callable[[BaseException], bool] = is_transient,
) -> list[tuple[T, Exception]]:
    """Apply `batch`; if it fails for a reason other than a transient one, bisect.

    Returns the events that fail on their own, with their error; every other event has
    been applied, in batch order. The handler is called at most 2n - 1 times for n
    events (each call a node of a binary tree whose leaves are single events), so a
    batch with one bad event costs about 2 log2(n) extra calls. A transient failure is
    raised at once: the caller retries the whole batch, which the inboxes make harmless
    for the parts already applied.
    """
    failed: list[tuple[T, Exception]] = []

    async def apply(part: list[T]) -> None:
        try:
            await handler(part)
        except Exception as exc:
            if transient(exc):
                raise
            if len(part) == 1:
                failed.append((part[0], exc))
                return
            middle = len(part) // 2
            await apply(part[:middle])
            await apply(part[middle:])

    if batch:
        await apply(list(batch))
    return failed


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with a cap: base, 2 base, 4 base, ... never above cap."""
    return float(min(cap_s, base_s * 2 ** min(attempt, 32)))


@dataclass(frozen=True)
class DeadLetter:
    """An event a consumer group could not apply, with the record as it was consumed."""

    group: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    error: str
    merchant_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None

    @property
    def merchant(self) -> uuid.UUID:
        return self.merchant_id or merchant_of_record(self.value) or UNKNOWN_MERCHANT


def merchant_of_record(value: bytes) -> uuid.UUID | None:
    """The merchant a record names, even when the rest of it breaks its contract."""
    try:
        document = orjson.loads(value)
        return uuid.UUID(str(document["merchant_id"])) if isinstance(document, dict) else None
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None


def describe_error(exc: BaseException) -> str:
    """The error a dead letter records: type and message, bounded like any text."""
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00")
    return text[:TEXT_MAX_LENGTH]


DeadLetterSink = Callable[[list[DeadLetter]], Awaitable[None]]


def dead_letters_table(metadata: sa.MetaData) -> sa.Table:
    """A service's dead letters; in the stock-ledger, every service's (via `<topic>.dlq`)."""
    return sa.Table(
        "dead_letters",
        metadata,
        sa.Column("dead_letter_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("merchant_id", pg.UUID(as_uuid=True), nullable=False),
        sa.Column("consumer_group", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("event_id", pg.UUID(as_uuid=True), nullable=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_count", sa.Integer, server_default="0", nullable=False),
        sa.Index("ix_dead_letters_merchant_time", "merchant_id", "dead_lettered_at"),
    )


def dead_letter_event(dead_letter_id: uuid.UUID, letter: DeadLetter) -> DeadLetterRecorded:
    return DeadLetterRecorded(
        causation_id=f"dead-letter:{dead_letter_id}",
        merchant_id=letter.merchant,
        dead_letter_id=dead_letter_id,
        consumer_group=letter.group,
        topic=letter.topic,
        partition=letter.partition,
        offset=letter.offset,
        key=base64.b64encode(letter.key).decode() if letter.key is not None else None,
        value=base64.b64encode(letter.value).decode(),
        original_event_id=letter.event_id,
        error=letter.error,
    )


def dead_letter_row(event: DeadLetterRecorded) -> dict[str, object]:
    """The `dead_letters` row of a dead letter, as every service's table holds it."""
    return {
        "dead_letter_id": event.dead_letter_id,
        "merchant_id": event.merchant_id,
        "consumer_group": event.consumer_group,
        "topic": event.topic,
        "partition": event.partition,
        "offset": event.offset,
        "key": base64.b64decode(event.key) if event.key is not None else None,
        "value": base64.b64decode(event.value),
        "event_id": event.original_event_id,
        "error": event.error,
        "dead_lettered_at": event.occurred_at,
    }


class DeadLetterStore:
    """Writes dead letters to the service's table and, in the same unit of work, their
    records to its outbox (whose commit wakes the relay)."""

    def __init__(self, units: UnitOfWorkFactory, table: sa.Table) -> None:
        self.units = units
        self.table = table

    async def record(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        events = [dead_letter_event(uuid.uuid4(), letter) for letter in letters]
        async with self.units.begin() as uow:
            await uow.sqlalchemy.execute(sa.insert(self.table), [dead_letter_row(event) for event in events])
            # On the dead-letter topic of the topic the event came from, keyed by merchant.
            uow.add_records(
                (
                    dead_letter_topic_of(event.topic).name,
                    str(event.merchant_id).encode(),
                    orjson.dumps(event.model_dump(mode="json")),
                    DeadLetterRecorded.__name__,
                    event.causation_id,
                    None,
                )
                for event in events
            )
        for letter in letters:
            DEAD_LETTERS.labels(letter.group, letter.topic).inc()
