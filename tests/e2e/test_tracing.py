"""One order is one trace, across the four service processes of the session's stack.

The services export their spans over OTLP/HTTP to the session's receiver (tests/e2e/otlp.py);
the W3C trace context travels in outbox rows and Kafka record headers between them.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, wait_for, webhook_url
from tests.e2e.otlp import ReceivedSpan, TraceReceiver
from tests.e2e.test_order_flow import ITEM_C1, ITEM_C2, set_up_two_channels

SERVER, PRODUCER, CONSUMER, CLIENT = 2, 4, 5, 3  # OTLP's SpanKind numbers


def test_one_order_is_one_trace_from_the_webhook_to_every_channels_answer(
    api: httpx.Client,
    merchant: Merchant,
    sandbox_shopify: Callable[[], SandboxShopify],
    traces: TraceReceiver,
) -> None:
    c1, c1_id, c2, c2_id = set_up_two_channels(api, merchant, sandbox_shopify)
    wait_for(lambda: c1.quantities(ITEM_C1) == [5] and c2.quantities(ITEM_C2) == [5])

    order = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 1}])
    assert order["status_code"] == 200, order
    wait_for(lambda: c1.quantities(ITEM_C1)[-1:] == [4] and c2.quantities(ITEM_C2)[-1:] == [4])

    def webhook_span() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in traces.spans()
                if s.service == "order-ingest"
                and s.kind == SERVER
                and s.name.startswith("POST /webhooks/")
                and any(isinstance(v, str) and c1_id in v for v in s.attributes.values())
            ),
            None,
        )

    webhook = wait_for(webhook_span)

    def the_trace() -> list[ReceivedSpan] | None:
        spans = [s for s in traces.spans() if s.trace_id == webhook.trace_id]
        pushes = [s for s in spans if s.name == "push shopify"]
        # Each process exports on its own schedule: wait for every hop's span.
        hops = {(s.service, s.name) for s in spans}
        every_hop = {
            ("stock-ledger", "orders.v1 process"),
            ("rule-engine", "stock.changed.v1 process"),
            ("channel-publisher", "channel.quantity.v1 process"),
        }
        return spans if len(pushes) == 2 and every_hop <= hops else None

    spans = wait_for(the_trace)
    by_id = {s.span_id: s for s in spans}

    def only(service: str, name: str) -> ReceivedSpan:
        found = [s for s in spans if s.service == service and s.name == name]
        assert len(found) == 1, (service, name, [(s.service, s.name) for s in spans])
        span: ReceivedSpan = found[0]
        return span

    ledger = only("stock-ledger", "orders.v1 process")
    assert ledger.kind == CONSUMER and ledger.parent_span_id == webhook.span_id
    assert ledger.attributes["stocksync.merchant_id"] == merchant.merchant_id
    assert ledger.attributes["messaging.destination.name"] == "orders.v1"
    rules = only("rule-engine", "stock.changed.v1 process")
    assert rules.kind == CONSUMER and rules.parent_span_id == ledger.span_id

    published = [s for s in spans if s.service == "channel-publisher" and s.name == "channel.quantity.v1 process"]
    assert len(published) == 2 and {s.parent_span_id for s in published} == {rules.span_id}
    pushes = [s for s in spans if s.name == "push shopify"]
    assert {s.attributes["stocksync.connection_id"] for s in pushes} == {c1_id, c2_id}
    for push in pushes:
        assert push.service == "channel-publisher" and push.kind == PRODUCER
        assert by_id[push.parent_span_id] in published
        assert (push.attributes["stocksync.sku"], push.attributes["stocksync.quantity"]) == ("A", 4)
        assert push.attributes["stocksync.push.status"] == "accepted"
        assert push.attributes["stocksync.channel.response"]
    # The call to each channel's API is a client span under its push.
    calls = [s for s in spans if s.kind == CLIENT and s.parent_span_id in {p.span_id for p in pushes}]
    assert len(calls) >= 2
    # Nothing of this trace hangs off a span that is not in it (but the webhook, its root).
    assert all(s.parent_span_id in by_id for s in spans if s is not webhook and s.parent_span_id)
    assert webhook.parent_span_id == ""
