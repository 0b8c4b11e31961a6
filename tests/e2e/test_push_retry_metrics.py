"""Push errors apart from throttling: a 429 with Retry-After counts as `throttled`, a 503
as `failed`, and neither as a rejected push (the error-rate alert's numerator)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stocksync_embedded.stack import Stack

from tests.e2e.channel_sandboxes import ChannelSandboxes, case_of
from tests.e2e.conftest import wait_for

WOOCOMMERCE = case_of("woocommerce")


def samples(stack: Stack) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{stack.service_url('channel-publisher')}/metrics", timeout=10).text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("channel_type") != WOOCOMMERCE.type:
                continue
            if sample.name == "stocksync_push_retries_total":
                found[("retry", sample.labels["cause"])] = sample.value
            elif sample.name == "stocksync_pushes_total":
                found[("push", sample.labels["status"])] = sample.value
    return found


def test_throttling_and_transient_failures_are_counted_apart_from_rejections(
    stack: Stack, channel_sandboxes: ChannelSandboxes
) -> None:
    skus = [f"M-{i}" for i in range(3)]
    sandbox = channel_sandboxes.start(WOOCOMMERCE, skus)
    before = samples(stack)
    sandbox.post("fail-next", {"count": 1, "status_code": 429, "retry_after": 1})
    connection_id = channel_sandboxes.connect(sandbox, skus)
    channel_sandboxes.produce(connection_id, [(sku, 1, 4) for sku in skus])
    wait_for(lambda: sandbox.quantities() == dict.fromkeys(skus, 4), timeout=60)
    sandbox.post("fail-next", {"count": 1, "status_code": 503})
    channel_sandboxes.produce(connection_id, [(sku, 2, 5) for sku in skus])
    wait_for(lambda: sandbox.quantities() == dict.fromkeys(skus, 5), timeout=60)

    after: dict[tuple[str, str], float] = wait_for(
        lambda: (s := samples(stack)).get(("push", "accepted"), 0) >= before.get(("push", "accepted"), 0) + 6 and s
    )

    def grew(key: tuple[str, str]) -> float:
        return after.get(key, 0) - before.get(key, 0)

    assert grew(("retry", "throttled")) == len(skus)
    assert grew(("retry", "failed")) == len(skus)
    assert grew(("push", "rejected")) == 0
    assert grew(("push", "accepted")) == 2 * len(skus)
