"""A sandbox Mirakl shop: the STO01 stock import and its status and error report,
checked as Mirakl checks them.

- `Authorization: <shop API key>` (401 else).
- `POST /api/offers/stock/imports`, multipart with a `file`: a `;`-separated CSV whose
  header holds `offer-sku;quantity;warehouse-code;update-delete` (400 else). At most one
  import per `--min-interval` seconds (Mirakl: once a minute per operation): earlier
  calls get 429 with Retry-After. Answers `{import_id}` (201).
- The import runs asynchronously. STO02 `GET /api/offers/stock/imports/{import_id}/status`
  answers `{import_id, shop_id, date_created, status, lines_in_success, lines_in_error,
  has_error_report}` with status WAITING, then COMPLETE after `--processing-delay`
  seconds (Mirakl's enum: WAITING, RUNNING, COMPLETE, FAILED). At most once every
  `--status-interval` seconds (Mirakl: 15): earlier reads get 429 with Retry-After.
- STO03 `GET .../{import_id}/error_report` is a CSV of the lines in error: the line
  number first, the error reason second, then the line's columns (404 when there is
  none). At most once every `--report-interval` seconds (Mirakl: once a minute).
- A line for an offer the shop does not have, or with a bad quantity, is in error; the
  other lines apply.

Run it: python -m stocksync_sandboxes mirakl --port 9501 --api-key KEY
"""

from __future__ import annotations

import argparse
import csv
import hmac
import io
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from stocksync_sandboxes import mirakl_orders
from stocksync_sandboxes.marketplace_sandbox import Marketplace

REQUIRED_COLUMNS = ("offer-sku", "quantity", "warehouse-code", "update-delete")
MIN_INTERVAL_S = 60.0
STATUS_INTERVAL_S = 15.0
REPORT_INTERVAL_S = 60.0
PROCESSING_DELAY_S = 0.5
SHOP_ID = 2001
UNKNOWN_OFFER_MESSAGE = "The offer does not exist"  # (unverified) Mirakl's wording


@dataclass(frozen=True)
class MiraklSandboxSettings:
    api_key: str
    min_interval_s: float = MIN_INTERVAL_S
    processing_delay_s: float = PROCESSING_DELAY_S
    status_interval_s: float = STATUS_INTERVAL_S
    report_interval_s: float = REPORT_INTERVAL_S


@dataclass
class StockImport:
    import_id: int
    created_at: float
    lines: list[dict[str, str]]
    status: str = "WAITING"
    errors: list[tuple[dict[str, str], str]] = field(default_factory=list)
    applied: int = 0

    def as_json(self, created: str) -> dict[str, Any]:
        return {
            "import_id": str(self.import_id),
            "shop_id": SHOP_ID,
            "date_created": created,
            "status": self.status,
            "lines_in_success": self.applied,
            "lines_in_error": len(self.errors),
            "has_error_report": bool(self.errors),
        }


def create_app(settings: MiraklSandboxSettings) -> FastAPI:
    market = Marketplace("mirakl", requests_per_second=None, burst=1)
    imports: dict[int, StockImport] = {}
    numbers = itertools.count(1001)
    last_import_at: list[float] = []
    # When each limited read operation was last served (STO02, STO03), across imports.
    last_read_at: dict[str, float] = {}
    app = FastAPI(title="Mirakl sandbox")
    app.state.market = market
    app.state.imports = imports
    app.include_router(market.control_router())
    # The order side (OR11 and its control endpoint): stocksync_sandboxes.mirakl_orders.
    order_book = mirakl_orders.MiraklShop(settings.api_key, min_call_interval_s=settings.min_interval_s)
    app.include_router(mirakl_orders.orders_router(order_book))

    def authorised(request: Request) -> bool:
        if hmac.compare_digest(request.headers.get("Authorization", "").encode(), settings.api_key.encode()):
            return True
        market.stats["unauthorized"] += 1
        return False

    def process(stock_import: StockImport) -> None:
        """Apply an import once its processing delay has passed (Mirakl runs it in the background)."""
        if stock_import.status != "WAITING" or market.clock() < stock_import.created_at + settings.processing_delay_s:
            return
        for line in stock_import.lines:
            listing = market.listings.get(line.get("offer-sku", ""))
            quantity = line.get("quantity", "")
            if listing is None:
                stock_import.errors.append((line, UNKNOWN_OFFER_MESSAGE))
            elif not quantity.isdigit():
                stock_import.errors.append((line, f"The quantity '{quantity}' is not a positive integer"))
            elif market.transient_failure(listing.sku):
                stock_import.errors.append((line, "An internal error occurred, please import this line again"))
            else:
                market.apply(listing, int(quantity))
                stock_import.applied += 1
        stock_import.status = "COMPLETE"

    @app.post("/api/offers/stock/imports")
    async def import_stock(request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"status": 401, "message": "Unauthorized"}, 401)
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            market.stats["invalid"] += 1
            return JSONResponse({"status": 400, "message": "A file is required"}, 400)
        text = (await upload.read()).decode("utf-8-sig")
        reader = csv.DictReader(io.StringIO(text), delimiter=";")
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in REQUIRED_COLUMNS):
            market.stats["invalid"] += 1
            market.record("STO01", 400, [], [])
            return JSONResponse(
                {"status": 400, "message": f"The file header must hold {';'.join(REQUIRED_COLUMNS)}"}, 400
            )
        lines = [dict(row) for row in reader]
        items = [
            (line.get("offer-sku", ""), int(q) if (q := line.get("quantity", "")).isdigit() else None) for line in lines
        ]
        refused = market.admit([sku for sku, _ in items], "STO01", items)
        if refused is not None:
            return refused
        now = market.clock()
        if last_import_at and now < last_import_at[-1] + settings.min_interval_s:
            retry_after = last_import_at[-1] + settings.min_interval_s - now
            market.stats["rate_limited"] += 1
            return market.refuse(429, retry_after, [sku for sku, _ in items], "STO01", items)
        last_import_at.append(now)
        stock_import = StockImport(next(numbers), now, lines)
        imports[stock_import.import_id] = stock_import
        market.record("STO01", 201, items, [sku for sku, _ in items])
        return JSONResponse({"import_id": stock_import.import_id}, 201)

    def too_soon(operation: str, interval: float) -> Response | None:
        """429 when `operation` was served less than `interval` seconds ago."""
        now = market.clock()
        last = last_read_at.get(operation)
        if last is not None and now < last + interval:
            market.stats["rate_limited"] += 1
            return market.refuse(429, last + interval - now, [], operation, [])
        last_read_at[operation] = now
        return None

    @app.get("/api/offers/stock/imports/{import_id}/status")
    async def import_status(import_id: int, request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"status": 401, "message": "Unauthorized"}, 401)
        refused = too_soon("STO02", settings.status_interval_s)
        if refused is not None:
            return refused
        stock_import = imports.get(import_id)
        if stock_import is None:
            return JSONResponse({"status": 404, "message": f"Import {import_id} not found"}, 404)
        process(stock_import)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(market.wall_clock()))
        return JSONResponse(stock_import.as_json(created))

    @app.get("/api/offers/stock/imports/{import_id}/error_report")
    async def error_report(import_id: int, request: Request) -> Response:
        if not authorised(request):
            return JSONResponse({"status": 401, "message": "Unauthorized"}, 401)
        refused = too_soon("STO03", settings.report_interval_s)
        if refused is not None:
            return refused
        stock_import = imports.get(import_id)
        if stock_import is None or not stock_import.errors:
            return JSONResponse({"status": 404, "message": "No error report"}, 404)
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";", lineterminator="\n")
        writer.writerow(["line-number", "error-message", *REQUIRED_COLUMNS])
        for line, message in stock_import.errors:
            number = stock_import.lines.index(line) + 2  # the header is line 1
            writer.writerow([number, message, *(line.get(c, "") for c in REQUIRED_COLUMNS)])
        return PlainTextResponse(out.getvalue(), media_type="text/csv")

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_sandboxes mirakl")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9501)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--min-interval", type=float, default=MIN_INTERVAL_S)
    parser.add_argument("--processing-delay", type=float, default=PROCESSING_DELAY_S)
    parser.add_argument("--status-interval", type=float, default=STATUS_INTERVAL_S, help="STO02: at most once per")
    parser.add_argument("--report-interval", type=float, default=REPORT_INTERVAL_S, help="STO03: at most once per")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = MiraklSandboxSettings(
        args.api_key, args.min_interval, args.processing_delay, args.status_interval, args.report_interval
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
