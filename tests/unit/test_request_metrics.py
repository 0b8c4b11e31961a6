"""The request metrics label each request with its route template, not its raw path."""

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from stocksync_common.metrics import instrument


def test_requests_are_counted_per_route_template_and_status() -> None:
    app = FastAPI()
    instrument(app, "metrics-test")

    @app.get("/v1/stock/{sku}")
    async def stock(sku: str) -> dict[str, str]:
        if sku == "missing":
            raise HTTPException(404, "no such SKU")
        return {"sku": sku}

    client = TestClient(app)
    for sku in ("A", "B", "missing"):
        client.get(f"/v1/stock/{sku}")
    client.get("/nowhere")
    text = client.get("/metrics").text

    ok = 'stocksync_http_requests_total{method="GET",route="/v1/stock/{sku}",service="metrics-test",status="200"} 2.0'
    missing = (
        'stocksync_http_requests_total{method="GET",route="/v1/stock/{sku}",service="metrics-test",status="404"} 1.0'
    )
    unmatched = 'stocksync_http_requests_total{method="GET",route="unmatched",service="metrics-test",status="404"} 1.0'
    assert ok in text
    assert missing in text
    assert unmatched in text
    assert 'route="/v1/stock/A"' not in text
