"""The rule engine over the real broker and database, run in this process.

Stock, connections and catalogue attributes are produced to the broker as the ledger,
the publisher and the catalogue import would; the channel quantities the engine emits
are read back from `channel.quantity.v1`. Each test uses its own merchant.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stocksync_common.auth import ApiKeyVerifier, issue_api_key
from stocksync_common.contracts import (
    ChannelQuantityChanged,
    ConnectionChanged,
    ConnectionDelayMeasured,
    Event,
    ProductAttributesChanged,
    StockChanged,
    utcnow,
)
from stocksync_common.db import make_engine
from stocksync_common.ids import new_id
from stocksync_common.kafka import decode_event, encode_event
from stocksync_common.topics import CHANNEL_QUANTITY, topic_for
from stocksync_embedded.stack import Stack

from rule_engine.config import RuleEngineSettings
from rule_engine.entrypoints.app import create_app
from stock_ledger.adapters.api_key_store import ApiKeyStore
from tests.conftest import PrivateDatabase, own_infrastructure
from tests.integration.rule_engine_helpers import stock_changed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rule_engine_infrastructure(
    tmp_path_factory: pytest.TempPathFactory, private_database: PrivateDatabase
) -> Iterator[Stack]:
    """A database and broker of this module's own.

    The session's stack may run a rule-engine service for the end-to-end tests; it would
    join this module's consumer group and run its own scheduler over the same rules, so
    these tests, which stop and restart the engine, would not control every instance.
    """
    with own_infrastructure(tmp_path_factory.mktemp("rule-engine"), private_database) as stack:
        yield stack


@pytest.fixture(scope="module")
def database_url(rule_engine_infrastructure: Stack) -> str:
    assert rule_engine_infrastructure.database_url
    return rule_engine_infrastructure.database_url


@pytest.fixture(scope="module")
def kafka_bootstrap_servers(rule_engine_infrastructure: Stack) -> str:
    assert rule_engine_infrastructure.kafka_bootstrap_servers
    return rule_engine_infrastructure.kafka_bootstrap_servers


async def eventually(predicate: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.1)


class Broker:
    """Produces events as other services would and reads what the rule engine emits."""

    def __init__(self, bootstrap_servers: str) -> None:
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
        self.emitted: list[ChannelQuantityChanged] = []

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        self.consumer.assign([TopicPartition(CHANNEL_QUANTITY.name, p) for p in range(CHANNEL_QUANTITY.partitions)])
        await self.consumer.seek_to_end()

    async def stop(self) -> None:
        await self.producer.stop()
        await self.consumer.stop()

    async def send(self, *events: Event) -> None:
        for event in events:
            topic = topic_for(event)
            await self.producer.send_and_wait(topic.name, encode_event(event), key=topic.key_of(event))

    async def quantities(self, merchant_id: uuid.UUID) -> list[ChannelQuantityChanged]:
        records = await self.consumer.getmany(timeout_ms=100)
        for batch in records.values():
            for record in batch:
                event = decode_event(CHANNEL_QUANTITY, record.value)
                assert isinstance(event, ChannelQuantityChanged)
                self.emitted.append(event)
        return [e for e in self.emitted if e.merchant_id == merchant_id]


@pytest.fixture
async def broker(kafka_bootstrap_servers: str) -> AsyncIterator[Broker]:
    broker = Broker(kafka_bootstrap_servers)
    await broker.start()
    yield broker
    await broker.stop()


RuleEngine = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def rule_engine(database_url: str, kafka_bootstrap_servers: str) -> RuleEngine:
    """Starts the rule-engine app (consumers, scheduler, relay) in this process; can restart it."""
    settings = RuleEngineSettings(
        database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers, rule_schedule_interval_s=0.2
    )

    @asynccontextmanager
    async def running() -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings)
        # No stock-ledger runs here: the rule-engine verifies keys with the ledger's own
        # store over the same database, instead of over HTTP.
        engine = make_engine(database_url)
        store = ApiKeyStore(engine, settings.api_key_secret.get_secret_value())
        app.state.api_keys = ApiKeyVerifier(store.verify, ttl_s=5, negative_ttl_s=5)
        try:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://rule-engine", timeout=30) as client:
                    yield client
        finally:
            await engine.dispose()

    return running


class Merchant:
    def __init__(self) -> None:
        self.merchant_id = uuid.uuid4()
        self.connection_id = uuid.uuid4()
        key = issue_api_key(RuleEngineSettings().api_key_secret.get_secret_value(), self.merchant_id)
        self.auth = {"X-API-Key": key}

    def connection(self, connection_id: uuid.UUID | None = None) -> ConnectionChanged:
        return ConnectionChanged(
            merchant_id=self.merchant_id,
            connection_id=connection_id or self.connection_id,
            channel_type="shopify",
            name="C",
            active=True,
            causation_id="test",
        )

    def stock(self, sku: str, available: int, version: int = 1) -> StockChanged:
        return stock_changed(self.merchant_id, sku, version, available, causation_id=f"snapshot:{sku}:{version}")

    def buffer_rule(self, **fields: Any) -> dict[str, Any]:
        """A rule on this merchant's channel showing 0 while 3 or fewer are available,
        unless `fields` say otherwise."""
        return {
            "name": "seed buffer",
            "channels": [str(self.connection_id)],
            "condition": {"op": "<=", "value": 3},
            "action": {"type": "set", "value": 0},
            **fields,
        }

    def attributes(self, sku: str, version: int, **values: Any) -> ProductAttributesChanged:
        return ProductAttributesChanged(
            merchant_id=self.merchant_id, sku=sku, version=version, causation_id=f"import:{sku}:{version}", **values
        )


def latest(events: list[ChannelQuantityChanged], connection_id: uuid.UUID) -> dict[str, int]:
    newest: dict[str, ChannelQuantityChanged] = {}
    for event in events:
        if event.connection_id == connection_id and (
            event.sku not in newest or event.version > newest[event.sku].version
        ):
            newest[event.sku] = event
    return {sku: event.quantity for sku, event in newest.items()}


async def published(broker: Broker, merchant: Merchant, expected: dict[str, int]) -> list[ChannelQuantityChanged]:
    """Wait until the channel shows `expected` (for these SKUs), then return every event so far."""

    async def shows() -> list[ChannelQuantityChanged] | None:
        events = await broker.quantities(merchant.merchant_id)
        current = latest(events, merchant.connection_id)
        return events if all(current.get(sku) == q for sku, q in expected.items()) else None

    result: list[ChannelQuantityChanged] = await eventually(shows)
    return result


async def set_up(broker: Broker, merchant: Merchant, stock: dict[str, int]) -> None:
    await broker.send(merchant.connection(), *(merchant.stock(sku, q) for sku, q in stock.items()))
    await published(broker, merchant, stock)


async def test_rule_with_a_period_changes_quantities_when_it_starts_and_restores_them_when_it_ends(
    rule_engine: RuleEngine, broker: Broker
) -> None:
    merchant = Merchant()
    async with rule_engine() as api:
        await set_up(broker, merchant, {"A": 2, "B": 10})
        starts_at = utcnow() + timedelta(seconds=4)
        ends_at = starts_at + timedelta(seconds=4)
        answer = await api.post(
            "/v1/rules",
            headers=merchant.auth,
            json=merchant.buffer_rule(
                name="weekend buffer", starts_at=starts_at.isoformat(), ends_at=ends_at.isoformat()
            ),
        )
        assert answer.status_code == 201, answer.text
        rule = answer.json()
        assert (rule["in_force"], rule["channel_quantities_changed"]) == (False, 0)

        events = await published(broker, merchant, {"A": 0})
        started = next(e for e in events if e.sku == "A" and e.quantity == 0)
        assert started.occurred_at >= starts_at
        assert started.causation_id == f"rule:{rule['rule_id']}:started"
        assert started.rule_ids == (uuid.UUID(rule["rule_id"]),)
        assert (started.stock_version, started.available) == (1, 2)

        events = await published(broker, merchant, {"A": 2})
        ended = [e for e in events if e.sku == "A"][-1]
        assert ended.occurred_at >= ends_at
        assert (ended.causation_id, ended.rule_ids) == (f"rule:{rule['rule_id']}:ended", ())
        assert [e.quantity for e in events if e.sku == "A"] == [2, 0, 2]
        # B (10) never met the condition: nothing was re-published for it.
        assert [e.quantity for e in events if e.sku == "B"] == [10]


async def test_a_boundary_that_passed_while_the_engine_was_down_is_applied_at_restart(
    rule_engine: RuleEngine, broker: Broker
) -> None:
    merchant = Merchant()
    async with rule_engine() as api:
        await set_up(broker, merchant, {"A": 2})
        starts_at = utcnow() + timedelta(seconds=8)
        answer = await api.post(
            "/v1/rules",
            headers=merchant.auth,
            json={
                "name": "from soon",
                "condition": {"op": "always"},
                "action": {"type": "set", "value": 0},
                "starts_at": starts_at.isoformat(),
            },
        )
        assert answer.status_code == 201, answer.text
    # Down while the period starts (the margin covers a slow shutdown on a loaded machine).
    assert utcnow() < starts_at, "the engine took longer to stop than the test's margin"
    await asyncio.sleep((starts_at - utcnow()).total_seconds() + 1)
    assert latest(await broker.quantities(merchant.merchant_id), merchant.connection_id) == {"A": 2}
    async with rule_engine():
        events = await published(broker, merchant, {"A": 0})
    assert [e.quantity for e in events] == [2, 0]


async def test_preview_lists_exactly_what_saving_the_rule_then_emits(rule_engine: RuleEngine, broker: Broker) -> None:
    merchant = Merchant()
    stock = {f"S{i:02}": i for i in range(12)}
    async with rule_engine() as api:
        await set_up(broker, merchant, stock)
        rule = {
            "name": "buffer",
            "condition": {"op": "between", "value": 2, "upper": 5},
            "action": {"type": "subtract", "value": 3},
        }
        preview = (await api.post("/v1/rules/preview", headers=merchant.auth, json={"rule": rule})).json()
        assert (preview["channel_quantities_changed"], preview["skus_changed"], preview["truncated"]) == (4, 4, False)
        assert {c["sku"]: (c["current"], c["proposed"]) for c in preview["changes"]} == {
            "S02": (2, 0),
            "S03": (3, 0),
            "S04": (4, 1),
            "S05": (5, 2),
        }

        # Pages: the totals still count every change; `next` continues after the last row listed.
        page = (await api.post("/v1/rules/preview", headers=merchant.auth, json={"rule": rule, "limit": 2})).json()
        assert (page["channel_quantities_changed"], page["skus_changed"], page["truncated"]) == (4, 4, True)
        assert (page["changes"], page["next"]) == (preview["changes"][:2], {"sku": "S03", "location": "default"})
        rest = await api.post(
            "/v1/rules/preview",
            headers=merchant.auth,
            json={"rule": rule, "limit": 2, "after": page["next"], "at": page["at"]},
        )
        assert (rest.json()["changes"], rest.json()["truncated"], rest.json()["next"]) == (
            preview["changes"][2:],
            False,
            None,
        )

        saved = (await api.post("/v1/rules", headers=merchant.auth, json=rule)).json()
        assert saved["channel_quantities_changed"] == 4
        events = await published(broker, merchant, {"S02": 0, "S05": 2})
        by_rule = [e for e in events if e.causation_id == f"rule:{saved['rule_id']}:created"]
        assert {e.sku: e.quantity for e in by_rule} == {c["sku"]: c["proposed"] for c in preview["changes"]}

        # Previewing a change to the saved rule, then a deletion, compares with what is published now.
        change = await api.post(
            "/v1/rules/preview",
            headers=merchant.auth,
            json={"rule_id": saved["rule_id"], "patch": {"action": {"type": "set", "value": 1}}},
        )
        assert {c["sku"]: (c["current"], c["proposed"]) for c in change.json()["changes"]} == {
            "S02": (0, 1),
            "S03": (0, 1),
            "S05": (2, 1),
        }
        deletion = await api.post(
            "/v1/rules/preview", headers=merchant.auth, json={"rule_id": saved["rule_id"], "delete": True}
        )
        assert deletion.json()["channel_quantities_changed"] == 4


async def test_an_adaptive_rule_is_previewed_per_channel_saved_and_hides_more_on_the_slow_one(
    rule_engine: RuleEngine, broker: Broker
) -> None:
    merchant = Merchant()
    fast, slow = merchant.connection_id, uuid.uuid4()
    async with rule_engine() as api:
        await broker.send(merchant.connection(slow))
        await set_up(broker, merchant, {"X": 100})
        # The publisher measured both channels; then 30 units sell on the fast one (60 an hour).
        await broker.send(
            *(
                ConnectionDelayMeasured(
                    merchant_id=merchant.merchant_id,
                    connection_id=c,
                    causation_id="test",
                    p50_s=p95 / 2,
                    p95_s=p95,
                    samples=20,
                )
                for c, p95 in ((fast, 3.0), (slow, 600.0))
            ),
            StockChanged(
                merchant_id=merchant.merchant_id,
                sku="X",
                version=2,
                on_hand=70,
                reserved=0,
                available=70,
                causation_id="shopify:order-1:line-1:placed",
                origin_received_at=utcnow(),
            ),
        )
        await published(broker, merchant, {"X": 70})

        rule = {
            "name": "adaptive buffer",
            "condition": {"op": "always"},
            "action": {"type": "adaptive", "confidence_pct": 95, "maximum": 10},
        }

        async def previewed() -> Any:
            answer = await api.post("/v1/rules/preview", headers=merchant.auth, json={"rule": rule})
            assert answer.status_code == 200, answer.text
            # The delays may still be on their way to the projection: wait for the slow one's.
            return answer.json() if answer.json()["changes"] and "600 s" in str(answer.json()) else None

        preview = await eventually(previewed)
        assert [(c["connection_id"], c["current"], c["proposed"]) for c in preview["changes"]] == [(str(slow), 70, 60)]
        # The rate has decayed a little since the sale: 59.9x units an hour, 10 expected.
        (reason,) = preview["changes"][0]["reasons"]
        assert re.fullmatch(
            r"adaptive buffer hid 10: the SKU sells (59\.9\d|60\.00) units/h, this channel shows a change after "
            r"600 s \(p95\), (9\.99|10\.00) units expected meanwhile, 95% confidence, bounds 0-10",
            reason,
        ), reason

        saved = await api.post("/v1/rules", headers=merchant.auth, json=rule)
        assert saved.status_code == 201, saved.text
        assert saved.json()["action"] == {
            "type": "adaptive",
            "value": 0,
            "confidence_pct": 95.0,
            "minimum": 0,
            "maximum": 10,
            "floor_per_hour": 0.0,
        }
        assert saved.json()["channel_quantities_changed"] == 1

        async def slow_shows_60() -> list[ChannelQuantityChanged] | None:
            events = [e for e in await broker.quantities(merchant.merchant_id) if e.connection_id == slow]
            return events if events and events[-1].quantity == 60 else None

        events = await eventually(slow_shows_60)
        assert events[-1].reasons[0].startswith("adaptive buffer hid 10: the SKU sells")


async def test_brand_scoped_rule_reacts_when_a_products_brand_changes(rule_engine: RuleEngine, broker: Broker) -> None:
    merchant = Merchant()
    async with rule_engine() as api:
        await broker.send(
            merchant.attributes("A", 1, brand="Acme", tags=("fragile",)), merchant.attributes("B", 1, brand="Other")
        )
        await set_up(broker, merchant, {"A": 8, "B": 8})
        answer = await api.post(
            "/v1/rules",
            headers=merchant.auth,
            json={
                "name": "cap Acme",
                "product_filter": {"brands": ["ACME"]},
                "condition": {"op": "always"},
                "action": {"type": "cap", "value": 3},
            },
        )
        assert answer.status_code == 201, answer.text
        await published(broker, merchant, {"A": 3, "B": 8})

        await broker.send(merchant.attributes("A", 2, brand="Other"), merchant.attributes("B", 2, brand="acme"))
        events = await published(broker, merchant, {"A": 8, "B": 3})
        assert [e.quantity for e in events if e.sku == "A"] == [8, 3, 8]
        # An older version of the attributes, delivered late, is ignored.
        await broker.send(merchant.attributes("A", 1, brand="Acme"))
        await broker.send(merchant.stock("B", 9, version=2))
        events = await published(broker, merchant, {"B": 3})
        assert latest(events, merchant.connection_id) == {"A": 8, "B": 3}


async def test_rule_changes_are_re_evaluated_at_once_and_kept_in_the_history(
    rule_engine: RuleEngine, broker: Broker
) -> None:
    merchant = Merchant()
    async with rule_engine() as api:
        await set_up(broker, merchant, {"A": 3})
        created = (await api.post("/v1/rules", headers=merchant.auth, json=merchant.buffer_rule())).json()
        rule_url = f"/v1/rules/{created['rule_id']}"
        await published(broker, merchant, {"A": 0})

        disabled = await api.patch(rule_url, headers=merchant.auth, json={"enabled": False})
        assert (disabled.json()["enabled"], disabled.json()["channel_quantities_changed"]) == (False, 1)
        await published(broker, merchant, {"A": 3})

        enabled = await api.patch(rule_url, headers=merchant.auth, json={"enabled": True})
        assert enabled.json()["channel_quantities_changed"] == 1
        await published(broker, merchant, {"A": 0})

        replaced = await api.put(
            rule_url,
            headers=merchant.auth,
            json={
                "name": "safety stock",
                "condition": {"op": "always"},
                "action": {"type": "subtract", "value": 1},
            },
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["channels"] == "all"
        await published(broker, merchant, {"A": 2})

        deleted = await api.delete(rule_url, headers=merchant.auth)
        assert deleted.json()["channel_quantities_changed"] == 1
        events = await published(broker, merchant, {"A": 3})
        assert [e.quantity for e in events] == [3, 0, 3, 0, 2, 3]
        assert (await api.get(rule_url, headers=merchant.auth)).status_code == 404

        history = (await api.get(f"{rule_url}/history", headers=merchant.auth)).json()
        key_id = merchant.auth["X-API-Key"].split("_")[2]
        assert [h["kind"] for h in history] == ["created", "disabled", "enabled", "updated", "deleted"]
        assert {h["changed_by"] for h in history} == {f"api_key:{key_id}"}
        assert history[0]["before"] is None and history[-1]["after"] is None
        assert (history[1]["before"]["enabled"], history[1]["after"]["enabled"]) == (True, False)
        assert (history[3]["before"]["name"], history[3]["after"]["name"]) == ("seed buffer", "safety stock")
        assert [h["channel_quantities_changed"] for h in history] == [1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ends_at": "2026-01-01T00:00:00Z", "starts_at": "2026-02-01T00:00:00Z"}, "ends_at"),
        ({"action": {"type": "percent", "value": 150}}, "action"),
        ({"action": {"type": "adaptive", "minimum": 5, "maximum": 2}}, "maximum"),
        ({"action": {"type": "adaptive", "confidence_pct": 100}}, "confidence_pct"),
        ({"action": {"type": "adaptive", "maximum": 100_000}}, "maximum"),
        ({"action": {"type": "adaptive", "floor_per_hour": -1}}, "floor_per_hour"),
        ({"action": {"type": "set", "value": 0, "confidence_pct": 90}}, "confidence_pct"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"skus": []}, "skus"),
        ({"channels": [str(uuid.UUID(int=7))]}, "channels"),
        ({"weekly_windows": [{"days": ["funday"], "start": "09:00", "end": "10:00"}]}, "weekly_windows"),
        ({"product_filter": {"colours": ["red"]}}, "product_filter"),
    ],
)
async def test_bad_rule_gets_422_naming_the_field_and_saves_nothing(
    rule_engine: RuleEngine, change: dict[str, Any], field: str
) -> None:
    merchant = Merchant()
    rule = {"name": "r", "condition": {"op": "always"}, "action": {"type": "set", "value": 0}, **change}
    async with rule_engine() as api:
        answer = await api.post("/v1/rules", headers=merchant.auth, json=rule)
        assert answer.status_code == 422
        assert field in str(answer.json()["detail"])
        assert (await api.get("/v1/rules", headers=merchant.auth)).json() == []


async def test_another_merchants_rule_answers_as_an_unknown_rule(rule_engine: RuleEngine) -> None:
    owner, intruder = Merchant(), Merchant()
    rule = {"name": "r", "condition": {"op": "always"}, "action": {"type": "set", "value": 0}}
    async with rule_engine() as api:
        rule_id = (await api.post("/v1/rules", headers=owner.auth, json=rule)).json()["rule_id"]
        unknown = str(uuid.uuid4())
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "/history", None),
            ("DELETE", "", None),
            ("PATCH", "", {"enabled": False}),
            ("PUT", "", rule),
        ):
            theirs = await api.request(method, f"/v1/rules/{rule_id}{suffix}", headers=intruder.auth, json=body)
            nobodys = await api.request(method, f"/v1/rules/{unknown}{suffix}", headers=intruder.auth, json=body)
            assert theirs.status_code == nobodys.status_code == 404
            assert theirs.json()["code"] == nobodys.json()["code"] == "not_found"
        preview = {"rule_id": rule_id, "delete": True}
        theirs = await api.post("/v1/rules/preview", headers=intruder.auth, json=preview)
        assert theirs.status_code == 404
        assert (await api.get(f"/v1/rules/{rule_id}", headers=owner.auth)).json()["enabled"] is True


async def test_a_rule_naming_a_connection_made_a_moment_ago_waits_for_it_to_arrive(
    rule_engine: RuleEngine, broker: Broker
) -> None:
    """The publisher made the connection (a UUIDv7 id) and answered; connections.v1 brings it
    here a moment later. A rule on it sent in between is saved once it arrives, not refused."""
    merchant = Merchant()
    merchant.connection_id = new_id()
    rule = merchant.buffer_rule()
    async with rule_engine() as api:
        saving = asyncio.create_task(api.post("/v1/rules", headers=merchant.auth, json=rule))
        await asyncio.sleep(1)  # the connection arrives while the rule waits for it
        await broker.send(merchant.connection(), merchant.stock("A", 2))
        saved = await saving
        assert saved.status_code == 201, saved.text
        await published(broker, merchant, {"A": 0})

        # A connection made long ago that this merchant does not have, and a random id: at once.
        made_long_ago = uuid.UUID(int=(new_id().int & ~(((1 << 48) - 1) << 80)) | (1 << 80))
        for unknown in (made_long_ago, uuid.uuid4()):
            refused = await api.post("/v1/rules", headers=merchant.auth, json={**rule, "channels": [str(unknown)]})
            assert refused.status_code == 422 and refused.json()["field"] == "body.channels", refused.text
