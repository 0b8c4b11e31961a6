"""Mirakl: STO01 stock import, a CSV file, at most once a minute.

`POST /api/offers/stock/imports` (multipart, field `file`) with the columns
`offer-sku;quantity;warehouse-code;update-delete` answers an `import_id`. The import
runs asynchronously: its status is polled (STO02) until it is complete, and the lines in
error are read from its error report (STO03) and recorded with Mirakl's message; the
other lines are accepted. Because a connection may call STO01 once a minute, the
publisher waits for `ready_in()` before taking rows, so a minute of changes coalesces
into one import. OF24 is never used: it resets every offer field not sent.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import httpx

from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem, TransientChannelError

IMPORTS_PATH = "/api/offers/stock/imports"
MIN_INTERVAL_S = 60.0
# (unverified) no documented line limit for a stock file; large imports stay well below it.
MAX_LINES = 10_000
CSV_COLUMNS = ("offer-sku", "quantity", "warehouse-code", "update-delete")
# (unverified) STO02 status values and STO03 report columns (the import's columns plus
# `error-message`); kept here so they are easy to change.
DONE_STATUSES = frozenset({"COMPLETE"})
FAILED_STATUSES = frozenset({"FAILED", "CANCELLED"})
ERROR_MESSAGE_COLUMN = "error-message"
STATUS_POLL_INTERVAL_S = 0.5
IMPORT_TIMEOUT_S = 120.0


class MiraklAdapter:
    channel_type = "mirakl"

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, credentials: dict[str, Any], settings: dict[str, Any]
    ) -> None:
        self.http = http
        self.url = base_url.rstrip("/") + IMPORTS_PATH
        self.headers = {"Authorization": str(credentials["api_key"]), "Accept": "application/json"}
        self.batch_limit = min(int(settings.get("batch_limit", MAX_LINES)), MAX_LINES)
        self.pacer = CallPacer(None, min_interval_s=float(settings.get("min_interval_s", MIN_INTERVAL_S)))
        # Status reads are another operation with their own (looser) limit.
        self.status_pacer = CallPacer(None)
        self.import_timeout_s = float(settings.get("import_timeout_s", IMPORT_TIMEOUT_S))

    def ready_in(self) -> float:
        return self.pacer.ready_in()

    async def push(self, items: list[PushItem]) -> BatchResult:
        offer_skus = [str(item.external.get("offer_sku") or item.sku) for item in items]
        response = await send(
            self.http,
            self.pacer,
            "POST",
            self.url,
            headers=self.headers,
            files={"file": ("stock.csv", self._csv(items, offer_skus), "text/csv")},
        )
        raise_for_channel_status(response)
        import_id = response.json()["import_id"]
        status = await self._wait_for_import(import_id)
        errors: dict[str, str] = {}
        if int(status.get("lines_in_error") or 0) > 0 or status.get("has_error_report"):
            errors = await self._error_report(import_id)
        result = BatchResult()
        for index, offer_sku in enumerate(offer_skus):
            if offer_sku in errors:
                result.outcomes[index] = ItemOutcome("rejected", errors[offer_sku])
            else:
                result.outcomes[index] = ItemOutcome("accepted", f"import {import_id}")
        return result

    @staticmethod
    def _csv(items: list[PushItem], offer_skus: list[str]) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";", lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for item, offer_sku in zip(items, offer_skus, strict=True):
            writer.writerow([offer_sku, item.quantity, item.external.get("warehouse_code", ""), "update"])
        return out.getvalue().encode()

    async def _wait_for_import(self, import_id: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.import_timeout_s
        while True:
            response = await send(self.http, self.status_pacer, "GET", f"{self.url}/{import_id}", headers=self.headers)
            raise_for_channel_status(response)
            status: dict[str, Any] = response.json()
            if status.get("status") in DONE_STATUSES:
                return status
            if status.get("status") in FAILED_STATUSES:
                return {**status, "has_error_report": True}
            if time.monotonic() > deadline:
                # Sending the same absolute quantities again is harmless if it completes later.
                raise TransientChannelError(f"import {import_id} still {status.get('status')}")
            await asyncio.sleep(STATUS_POLL_INTERVAL_S)

    async def _error_report(self, import_id: Any) -> dict[str, str]:
        response = await send(
            self.http, self.status_pacer, "GET", f"{self.url}/{import_id}/error_report", headers=self.headers
        )
        raise_for_channel_status(response)
        rows = csv.DictReader(io.StringIO(response.text), delimiter=";")
        return {row["offer-sku"]: row.get(ERROR_MESSAGE_COLUMN) or "error" for row in rows if row.get("offer-sku")}
