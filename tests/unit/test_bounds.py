"""The shared edge bounds refuse what the database or the contracts cannot hold."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from stocksync_common.bounds import INT64_MAX, Int64, Quantity, Sku, Text, is_valid_sku

SKU = TypeAdapter(Sku)


@pytest.mark.parametrize("sku", ["SKU-A", "AB/12", "a b%20", "ünïcødé", "x" * 200])
def test_a_sku_with_slashes_spaces_and_unicode_is_accepted(sku: str) -> None:
    assert SKU.validate_python(sku) == sku
    assert is_valid_sku(sku)


@pytest.mark.parametrize("sku", ["", "x" * 201, "a\x00b", "a\x12", "tab\there", "a\x7f", "new\nline"])
def test_a_sku_too_long_empty_or_with_control_characters_is_refused(sku: str) -> None:
    with pytest.raises(ValidationError):
        SKU.validate_python(sku)
    assert not is_valid_sku(sku)


def test_free_text_keeps_newlines_but_not_nul() -> None:
    assert TypeAdapter(Text).validate_python("two\nlines\tok") == "two\nlines\tok"
    with pytest.raises(ValidationError):
        TypeAdapter(Text).validate_python("nul\x00")


def test_integers_are_bounded_to_what_bigint_and_quantities_hold() -> None:
    assert TypeAdapter(Int64).validate_python(INT64_MAX) == INT64_MAX
    with pytest.raises(ValidationError):
        TypeAdapter(Int64).validate_python(INT64_MAX + 1)
    with pytest.raises(ValidationError):
        TypeAdapter(Quantity).validate_python(2**70)
    with pytest.raises(ValidationError):
        TypeAdapter(Quantity).validate_python(-1)
