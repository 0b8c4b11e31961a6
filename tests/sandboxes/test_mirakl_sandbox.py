"""The Mirakl sandbox takes one STO01 import a minute and reports its errors asynchronously."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stocksync_sandboxes.mirakl import MiraklSandboxSettings, create_app

HEADERS = {"Authorization": "key"}
CSV = "offer-sku;quantity;warehouse-code;update-delete\nA;4;;update\nZ;4;;update\n"


def shop(min_interval: float = 60.0, status_interval: float = 15.0) -> TestClient:
    client = TestClient(
        create_app(
            MiraklSandboxSettings("key", min_interval, processing_delay_s=0.0, status_interval_s=status_interval)
        )
    )
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A"}]})
    return client


def upload(client: TestClient, text: str = CSV) -> object:
    return client.post("/api/offers/stock/imports", headers=HEADERS, files={"file": ("s.csv", text, "text/csv")})


def test_an_import_completes_and_reports_its_lines_in_error() -> None:
    client = shop()
    created = upload(client)
    assert created.status_code == 201  # type: ignore[attr-defined]
    import_id = created.json()["import_id"]  # type: ignore[attr-defined]
    status = client.get(f"/api/offers/stock/imports/{import_id}/status", headers=HEADERS).json()
    assert (status["status"], status["lines_in_success"], status["lines_in_error"]) == ("COMPLETE", 1, 1)
    assert status["has_error_report"] is True and status["import_id"] == str(import_id)
    report = client.get(f"/api/offers/stock/imports/{import_id}/error_report", headers=HEADERS).text
    # STO03: the line number, the reason, then the line as sent.
    assert report.splitlines()[1] == "3;The offer does not exist;Z;4;;update"


def test_the_status_is_read_at_most_once_every_15_seconds_and_the_report_once_a_minute() -> None:
    client = shop()
    import_id = upload(client).json()["import_id"]  # type: ignore[attr-defined]
    assert client.get(f"/api/offers/stock/imports/{import_id}/status", headers=HEADERS).status_code == 200
    early = client.get(f"/api/offers/stock/imports/{import_id}/status", headers=HEADERS)
    assert early.status_code == 429 and 14 <= int(early.headers["Retry-After"]) <= 15
    assert client.get(f"/api/offers/stock/imports/{import_id}/error_report", headers=HEADERS).status_code == 200
    assert client.get(f"/api/offers/stock/imports/{import_id}/error_report", headers=HEADERS).status_code == 429
    # The old path without /status is not Mirakl's STO02.
    assert client.get(f"/api/offers/stock/imports/{import_id}", headers=HEADERS).status_code in (404, 405)


def test_a_second_import_within_the_minute_is_429_with_retry_after() -> None:
    client = shop(min_interval=60)
    assert upload(client).status_code == 201  # type: ignore[attr-defined]
    refused = upload(client)
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert 55 <= int(refused.headers["Retry-After"]) <= 60  # type: ignore[attr-defined]


def test_a_file_without_the_stock_columns_is_refused() -> None:
    assert upload(shop(), "sku,quantity\nA,1\n").status_code == 400  # type: ignore[attr-defined]


def test_a_wrong_api_key_is_401() -> None:
    answer = shop().post(
        "/api/offers/stock/imports", headers={"Authorization": "nope"}, files={"file": ("s.csv", CSV, "text/csv")}
    )
    assert answer.status_code == 401
