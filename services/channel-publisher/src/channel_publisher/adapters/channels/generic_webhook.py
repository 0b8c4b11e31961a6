"""Generic channel: the merchant's own endpoint receives quantities as Standard Webhooks.

`POST <base_url>` with `{"type": "inventory.quantities.updated", "timestamp", "data":
{"quantities": [{sku, location, quantity, version}]}}`, signed with the connection's
`whsec_` secret: `webhook-signature: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`.
The `webhook-id` is derived from the batch, so a retried batch keeps its id (the
receiver's dedupe key). A 2xx accepts the batch except the items listed in an optional
`{"rejected": [{sku, location, message}]}` answer; 429/5xx are retried; other 4xx are
permanent. Stocksync defines this contract: 100 quantities per call.
"""

from __future__ import annotations

import time
import uuid

import orjson

from stocksync_common import standard_webhooks

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer, Paced
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem

MAX_BATCH = 100
EVENT_TYPE = "inventory.quantities.updated"


class GenericWebhookAdapter(Paced):
    channel_type = "generic"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        self.url = access.base_url
        self.secret = str(access.credentials["signing_secret"])
        self.batch_limit = min(int(access.settings.get("batch_limit", MAX_BATCH)), MAX_BATCH)
        self.pacer = CallPacer(access.settings.get("requests_per_second"), int(access.settings.get("burst", 1)))

    async def push(self, items: list[PushItem]) -> BatchResult:
        quantities = [
            {"sku": i.sku, "location": i.location, "quantity": i.quantity, "version": i.version} for i in items
        ]
        message_id = "msg_" + uuid.uuid5(uuid.NAMESPACE_URL, self.url + orjson.dumps(quantities).decode()).hex
        timestamp = int(time.time())
        body = orjson.dumps({"type": EVENT_TYPE, "timestamp": timestamp, "data": {"quantities": quantities}})
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_webhooks.sign(self.secret, message_id, timestamp, body),
        }
        response = await send(self.http, self.pacer, "POST", self.url, content=body, headers=headers)
        raise_for_channel_status(response)
        rejected: dict[tuple[str, str], str] = {}
        if response.content and response.headers.get("content-type", "").startswith("application/json"):
            for entry in response.json().get("rejected") or []:
                rejected[(entry.get("sku"), entry.get("location", items[0].location))] = str(entry.get("message"))
        result = BatchResult()
        for index, item in enumerate(items):
            message = rejected.get((item.sku, item.location))
            result.outcomes[index] = (
                ItemOutcome("rejected", message)
                if message is not None
                else ItemOutcome("accepted", str(response.status_code))
            )
        return result
