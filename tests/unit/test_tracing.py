"""stocksync_common.tracing: off by default and free when off; on, the context a consumed
record brings reaches the outbox rows derived from it, and every push has its span."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from stocksync_common import tracing
from stocksync_common.contracts import ChannelQuantityChanged, OrderLineMoved, StockChanged
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.outbox import _headers, outbox_arrays, outbox_row
from stocksync_common.topics import CHANNEL_QUANTITY, ORDERS

MERCHANT = uuid.uuid4()
# A remote parent: what order-ingest's webhook span writes into its outbox row.
PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{PARENT_TRACE}-00f067aa0ba902b7-01"


def order_line(sku: str = "A", line: str = "1") -> OrderLineMoved:
    return OrderLineMoved(
        merchant_id=MERCHANT,
        causation_id=f"shopify:o1:{line}:placed",
        connection_id=uuid.uuid4(),
        channel_type="shopify",
        external_order_id="o1",
        line_id=line,
        sku=sku,
        movement="placed",
        quantity=1,
        received_at=datetime.now(UTC),
    )


def stock_changed(sku: str = "A", causation_id: str = "shopify:o1:1:placed") -> StockChanged:
    return StockChanged(
        merchant_id=MERCHANT, causation_id=causation_id, sku=sku, version=2, on_hand=5, reserved=1, available=4
    )


@dataclass(frozen=True)
class Pending:
    sku: str
    location: str
    quantity: int
    version: int
    trace_context: str | None


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory (the module's tracer, as `configure_tracing` sets it)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_tracing_is_on_only_when_an_otlp_endpoint_is_set_and_not_switched_off() -> None:
    assert not tracing.tracing_configured({})
    assert tracing.tracing_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.tracing_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not tracing.tracing_configured({**on, "OTEL_SDK_DISABLED": "true"})
    assert not tracing.tracing_configured({**on, "OTEL_TRACES_EXPORTER": "none"})


def test_off_nothing_is_read_or_written_and_no_span_is_made() -> None:
    assert not tracing.enabled()
    item = ConsumedEvent(ORDERS, order_line(), 0, 7, trace_context=None)
    with tracing.consuming([item], "stock-ledger") as consumed:
        assert consumed.spans == {}
        assert outbox_row(stock_changed())[-1] is None
    assert tracing.header_trace_context([("traceparent", PARENT.encode())]) is None
    with tracing.pushing("shopify", uuid.uuid4(), [Pending("A", "default", 4, 2, PARENT)]) as pushed:
        assert pushed.spans == []
    assert outbox_arrays([stock_changed()])[-1] == [None]
    headers = _headers({"event_type": "StockChanged", "causation_id": "c", "trace_context": None})
    assert [name for name, _ in headers] == ["event_type", "causation_id"]


def test_a_derived_event_carries_the_span_of_the_consumed_event_it_comes_from(
    spans: InMemorySpanExporter,
) -> None:
    first, other = order_line("A", "1"), order_line("B", "2")
    batch = [
        ConsumedEvent(ORDERS, first, 3, 41, trace_context=PARENT),
        ConsumedEvent(ORDERS, other, 3, 42, trace_context=None),
    ]
    with tracing.consuming(batch, "stock-ledger"):
        # Found by causation id; another SKU's version of the same merchant has no trace.
        carried = outbox_row(stock_changed("A", first.causation_id))[-1]
        untraced = outbox_row(stock_changed("B", other.causation_id))[-1]
    (span,) = spans.get_finished_spans()
    assert span.name == "orders.v1 process" and span.kind == SpanKind.CONSUMER
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert f"{span.context.trace_id:032x}" == PARENT_TRACE
    assert span.attributes is not None and span.attributes["messaging.kafka.offset"] == 41
    assert carried == f"00-{PARENT_TRACE}-{span.context.span_id:016x}-01"
    assert untraced is None
    assert tracing.header_trace_context([("event_type", b"X"), ("traceparent", carried.encode())]) == carried
    assert (b"traceparent", carried.encode()) in [
        (n.encode(), v) for n, v in _headers({"event_type": "X", "causation_id": "c", "trace_context": carried})
    ]


def test_a_version_coalesced_from_several_events_takes_the_trace_of_the_last(spans: InMemorySpanExporter) -> None:
    second_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    batch = [
        ConsumedEvent(ORDERS, order_line("A", "1"), 0, 1, trace_context=PARENT),
        ConsumedEvent(ORDERS, order_line("A", "2"), 0, 2, trace_context=second_parent),
    ]
    with tracing.consuming(batch, "stock-ledger"):
        # A causation the hop made up itself: found by merchant, SKU and location.
        carried = outbox_row(stock_changed("A", "snapshot:x:A"))[-1]
    assert carried is not None and carried.startswith("00-0af7651916cd43dd8448eb211c80319c-")


def test_a_consumed_event_written_on_keeps_its_own_span(spans: InMemorySpanExporter) -> None:
    quantities = [
        ChannelQuantityChanged(
            merchant_id=MERCHANT,
            causation_id="shopify:o1:1:placed",
            connection_id=uuid.uuid4(),
            sku="A",
            quantity=4,
            version=3,
            stock_version=2,
            available=4,
        )
        for _ in range(2)
    ]
    batch = [ConsumedEvent(CHANNEL_QUANTITY, q, 0, n, trace_context=PARENT) for n, q in enumerate(quantities)]
    with tracing.consuming(batch, "channel-publisher"):
        carried = [tracing.trace_context_of(q) for q in quantities]
    finished = {s.attributes["messaging.kafka.offset"]: s for s in spans.get_finished_spans() if s.attributes}
    assert carried == [f"00-{PARENT_TRACE}-{finished[n].context.span_id:016x}-01" for n in (0, 1)]


def test_a_failed_event_and_a_failed_batch_mark_their_spans(spans: InMemorySpanExporter) -> None:
    good = ConsumedEvent(ORDERS, order_line("A", "1"), 0, 1, trace_context=PARENT)
    bad = ConsumedEvent(ORDERS, order_line("B", "2"), 0, 2, trace_context=PARENT)
    with tracing.consuming([good, bad], "stock-ledger") as consumed:
        consumed.failed(bad, ValueError("no such SKU"))
    status = {(s.attributes or {})["messaging.kafka.offset"]: s.status.status_code for s in spans.get_finished_spans()}
    assert status == {1: StatusCode.UNSET, 2: StatusCode.ERROR}
    spans.clear()
    with pytest.raises(ConnectionError), tracing.consuming([good], "stock-ledger"):
        raise ConnectionError("database down")
    assert [s.status.status_code for s in spans.get_finished_spans()] == [StatusCode.ERROR]


def test_each_quantity_of_a_channel_call_is_a_span_of_its_trace_with_the_channels_answer(
    spans: InMemorySpanExporter,
) -> None:
    items = [Pending("A", "default", 4, 2, PARENT), Pending("B", "default", 0, 5, None)]
    with tracing.pushing("shopify", "c1", items) as pushed:
        # The call runs under the first quantity's span (httpx's span is its child).
        current = trace.get_current_span().get_span_context()
        pushed.answered(0, "rejected", "422 Unprocessable: unknown inventory item")
        pushed.answered(1, "accepted", "200")
    (span,) = spans.get_finished_spans()
    assert current.span_id == span.context.span_id
    assert span.name == "push shopify" and span.kind == SpanKind.PRODUCER
    assert f"{span.context.trace_id:032x}" == PARENT_TRACE
    assert span.attributes is not None
    assert span.attributes["stocksync.push.status"] == "rejected"
    assert span.attributes["stocksync.channel.response"] == "422 Unprocessable: unknown inventory item"
    assert span.status.status_code == StatusCode.ERROR


def test_a_malformed_traceparent_starts_a_new_trace_instead_of_failing(spans: InMemorySpanExporter) -> None:
    item = ConsumedEvent(ORDERS, order_line(), 0, 1, trace_context="not-a-traceparent")
    with tracing.consuming([item], "stock-ledger"):
        pass
    (span,) = spans.get_finished_spans()
    assert span.parent is None and span.context.is_valid
