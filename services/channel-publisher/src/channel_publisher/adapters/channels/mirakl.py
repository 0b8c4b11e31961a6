"""Mirakl: STO01 stock import, a CSV file, at most once a minute.

From Mirakl's MMP Seller API (developer.mirakl.com, offers STO01, STO02, STO03):
- STO01 `POST /api/offers/stock/imports` (multipart, field `file`) with the columns
  `offer-sku;quantity;warehouse-code;update-delete` answers an `import_id`. Maximum usage
  once per minute: imports are spaced a minute plus `MARGIN` apart, and the publisher
  waits for `ready_in()` before taking rows, so a minute of changes coalesces into one.
- STO02 `GET /api/offers/stock/imports/{import_id}/status` gives `status` (WAITING,
  RUNNING, COMPLETE, FAILED), `lines_in_success`, `lines_in_error`, `has_error_report`.
  Maximum usage once every 15 seconds: polled every 15 s plus `MARGIN`. An import not
  yet visible (404 just after STO01) is polled again, not taken as refused.
- STO03 `GET .../{import_id}/error_report` (maximum once per minute) is a CSV of the lines
  in error: "the first column contains the line number in error, the second the error
  reason", then the line as sent. Those lines are rejected with Mirakl's reason; the
  others are accepted only once the import is COMPLETE.
OF24 is never used: it resets every offer field not sent.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.http_answers import raise_for_channel_status, send
from channel_publisher.adapters.channels.pacing import CallPacer, Paced
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem, TransientChannelError

IMPORTS_PATH = "/api/offers/stock/imports"
# A margin on every documented "at most once every ...": clocks and queues differ.
MARGIN = 1.1
MIN_INTERVAL_S = 60.0 * MARGIN
STATUS_POLL_INTERVAL_S = 15.0 * MARGIN
ERROR_REPORT_INTERVAL_S = 60.0 * MARGIN
# (unverified) no documented line limit for a stock file; large imports stay well below it.
MAX_LINES = 10_000
CSV_COLUMNS = ("offer-sku", "quantity", "warehouse-code", "update-delete")
DONE_STATUSES = frozenset({"COMPLETE"})
FAILED_STATUSES = frozenset({"FAILED"})
IMPORT_TIMEOUT_S = 300.0


class MiraklAdapter(Paced):
    channel_type = "mirakl"

    def __init__(self, access: ChannelAccess) -> None:
        self.http = access.http
        self.url = access.base_url.rstrip("/") + IMPORTS_PATH
        self.headers = {"Authorization": str(access.credentials["api_key"]), "Accept": "application/json"}
        self.batch_limit = min(int(access.settings.get("batch_limit", MAX_LINES)), MAX_LINES)
        self.pacer = CallPacer(None, min_interval_s=float(access.settings.get("min_interval_s", MIN_INTERVAL_S)))
        # STO02 and STO03 are operations with their own limits.
        self.status_pacer = CallPacer(
            None, min_interval_s=float(access.settings.get("status_poll_interval_s", STATUS_POLL_INTERVAL_S))
        )
        self.report_pacer = CallPacer(
            None, min_interval_s=float(access.settings.get("error_report_interval_s", ERROR_REPORT_INTERVAL_S))
        )
        self.import_timeout_s = float(access.settings.get("import_timeout_s", IMPORT_TIMEOUT_S))

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
        if status.get("has_error_report"):
            errors = await self._error_report(import_id)
        result = BatchResult()
        if status.get("status") in FAILED_STATUSES and not errors:
            message = f"import {import_id} FAILED with no error report"
            return BatchResult({index: ItemOutcome("rejected", message) for index in range(len(items))})
        for index, offer_sku in enumerate(offer_skus):
            if offer_sku in errors:
                result.outcomes[index] = ItemOutcome("rejected", errors[offer_sku])
            elif status.get("status") in DONE_STATUSES:
                result.outcomes[index] = ItemOutcome("accepted", f"import {import_id} COMPLETE")
            else:
                result.outcomes[index] = ItemOutcome("rejected", f"import {import_id} {status.get('status')}")
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
        seen = "not yet visible"
        while True:
            # The status pacer spaces these reads by STO02's limit, across imports too.
            await asyncio.sleep(self.status_pacer.ready_in())
            response = await send(
                self.http, self.status_pacer, "GET", f"{self.url}/{import_id}/status", headers=self.headers
            )
            if response.status_code != 404:
                raise_for_channel_status(response)
                status: dict[str, Any] = response.json()
                if status.get("status") in DONE_STATUSES | FAILED_STATUSES:
                    return status
                seen = str(status.get("status"))
            if time.monotonic() > deadline:
                # Sending the same absolute quantities again is harmless if it completes later.
                raise TransientChannelError(f"import {import_id} still {seen} after {self.import_timeout_s:.0f}s")

    async def _error_report(self, import_id: Any) -> dict[str, str]:
        response = await send(
            self.http, self.report_pacer, "GET", f"{self.url}/{import_id}/error_report", headers=self.headers
        )
        raise_for_channel_status(response)
        return error_report_lines(response.text)


def error_report_lines(report: str) -> dict[str, str]:
    """{offer-sku: Mirakl's reason} from an STO03 report: the line number first, the
    reason second, then the columns of the line as sent (found by the `offer-sku` header)."""
    rows = list(csv.reader(io.StringIO(report.lstrip("\ufeff")), delimiter=";"))
    if not rows or "offer-sku" not in rows[0] or len(rows[0]) < 2:
        return {}
    sku_at = rows[0].index("offer-sku")
    return {row[sku_at]: row[1] or "error" for row in rows[1:] if len(row) > max(sku_at, 1) and row[sku_at]}
