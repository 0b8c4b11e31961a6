"""Pure parts of the push contracts: credential shapes, settings bounds, answers read back."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from channel_publisher.adapters.channels.access_tokens import _margin
from channel_publisher.adapters.channels.mirakl import error_report_lines
from channel_publisher.adapters.channels.woocommerce import _applied
from channel_publisher.domain.channels import (
    AMAZON_LWA_TOKEN_URL,
    CHANNELS,
    EBAY_INVENTORY_SCOPE,
    ConnectionSettings,
)


def stored(channel: str, credentials: dict[str, Any]) -> dict[str, Any]:
    dumped: dict[str, Any] = (
        CHANNELS[channel].credentials.model_validate(credentials).model_dump(mode="json", exclude_none=True)
    )
    return dumped


def test_amazon_and_ebay_credentials_are_completed_with_the_official_endpoint_and_scope() -> None:
    amazon = stored(
        "amazon",
        {"seller_id": "S", "marketplace_ids": ["M"], "client_id": "c", "client_secret": "s", "refresh_token": "r"},
    )
    assert amazon["token_url"] == AMAZON_LWA_TOKEN_URL
    assert stored("ebay", {"client_id": "c", "client_secret": "s", "refresh_token": "r"})["scope"] == (
        EBAY_INVENTORY_SCOPE
    )


@pytest.mark.parametrize(
    ("channel", "credentials"),
    [
        ("amazon", {"seller_id": "S", "marketplace_ids": ["M"], "access_token": "Atza|fixed"}),
        ("ebay", {"access_token": "v^1.1#fixed"}),
        ("walmart", {"access_token": "fixed"}),
        ("shopify", {"refresh_token": "r"}),
        ("shopify", {}),
        ("walmart", {"client_id": "c", "client_secret": "has space"}),
        ("mirakl", {"api_key": "x" * 2001}),
    ],
)
def test_credentials_not_as_the_marketplace_issues_them_are_refused(channel: str, credentials: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        stored(channel, credentials)


def test_shopify_takes_an_offline_token_or_the_expiring_token_triple() -> None:
    assert stored("shopify", {"access_token": "shpat_x"}) == {"access_token": "shpat_x"}
    triple = {"client_id": "c", "client_secret": "s", "refresh_token": "r"}
    assert stored("shopify", triple) == triple


@pytest.mark.parametrize(
    "settings",
    [{"skus_per_call": 26}, {"skus_per_call": 0}, {"manage_stock": "yes"}, {"min_interval_s": -1}, {"burst": 0}],
)
def test_settings_out_of_bounds_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ConnectionSettings.model_validate(settings)


def test_an_unknown_setting_is_refused_rather_than_silently_ignored() -> None:
    # A misspelt limit ("batch_limt") would otherwise be kept and never applied.
    with pytest.raises(ValidationError):
        ConnectionSettings.model_validate({"batch_limt": 10})


def test_the_mirakl_error_report_gives_each_offer_skus_reason_from_the_second_column() -> None:
    report = (
        "\ufeffline-number;error-message;offer-sku;quantity;warehouse-code;update-delete\n"
        "3;The offer does not exist;Z-1;4;;update\n"
        "4;;Z-2;x;;update\n"
    )
    assert error_report_lines(report) == {"Z-1": "The offer does not exist", "Z-2": "error"}
    assert error_report_lines("") == {}
    assert error_report_lines("a;b\n1;2\n") == {}


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ({"id": 1, "manage_stock": True, "stock_quantity": 5}, "accepted"),
        ({"id": 1, "manage_stock": False, "stock_quantity": None}, "rejected"),
        ({"id": 1, "manage_stock": True, "stock_quantity": None}, "rejected"),
        ({"id": 1, "manage_stock": True, "stock_quantity": 4}, "rejected"),
    ],
)
def test_woocommerce_accepts_only_the_quantity_it_reads_back(answer: dict[str, Any], status: str) -> None:
    assert _applied(answer, 5).status == status


def test_a_token_is_refreshed_two_minutes_early_or_a_quarter_of_a_short_life() -> None:
    assert _margin(3600) == 120
    assert _margin(900) == 120
    assert _margin(4) == 1
