"""An import job refuses, before storing anything, a CSV whose first line is no header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stock_ledger.adapters.snapshot_formats import UnreadableUpload, checked_csv_upload


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _read(chunks: list[bytes]) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in checked_csv_upload(_stream(chunks))])

    return asyncio.run(collect())


@pytest.mark.parametrize(
    "chunks",
    [
        [b"sku,on_hand\nA,1\nB,2\n"],
        [b"\xef\xbb\xbfsk", b"u,on_ha", b"nd,brand\r\n", b"A,1,x\n"],
        [b"\n\nsku,on_hand"],
        [b"sku,on_hand\n"],
    ],
)
def test_a_csv_with_its_header_passes_byte_for_byte(chunks: list[bytes]) -> None:
    assert _read(chunks) == b"".join(chunks)


@pytest.mark.parametrize(
    "chunks",
    [[b"false"], [b"A,1\nB,2\n"], [b""], [], [b"sku,sku,on_hand\n"], [b"\xff\xfe,on_hand\n"], [b"sku,", b"qty\nA,1"]],
)
def test_a_csv_without_a_header_is_refused(chunks: list[bytes]) -> None:
    with pytest.raises(UnreadableUpload):
        _read(chunks)
