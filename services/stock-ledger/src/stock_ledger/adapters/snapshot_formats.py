"""Stock import formats: JSON lines and CSV, read as a stream, one row at a time.

Neither reader holds more than one line in memory. A row that cannot be read or
validated becomes a `RejectedRow` naming its line number (1-based, the CSV header is
line 1) and field; the import goes on with the next row.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from stocksync_common.bounds import Quantity, Sku, Timestamp, no_control_characters, storable_text
from stocksync_common.contracts import DEFAULT_LOCATION, utcnow

from stock_ledger.service_layer.snapshots import AttributeUpdate, RejectedRow, SnapshotRow

MAX_LINE_BYTES = 64 * 1024
# Clocks differ a little; an as_of further ahead than this is a mistake in the file.
AS_OF_SKEW = timedelta(minutes=5)
CSV_KNOWN_COLUMNS = ("sku", "on_hand", "location", "as_of", "brand", "category", "tags")
CSV_TAG_SEPARATOR = "|"
# Columns named "#..." are comments, ignored.
CSV_COMMENT_PREFIX = "#"


# Every string of a row is refused with a control character (PostgreSQL text cannot hold
# a NUL): a row that was accepted can always be stored.
AttributeName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(no_control_characters)]
Location = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(no_control_characters)]
Tag = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(no_control_characters)]
AttributeText = Annotated[str, Field(max_length=500), AfterValidator(storable_text)]
Name = Annotated[str, Field(max_length=200), AfterValidator(storable_text)]


class SnapshotRecord(BaseModel):
    """One SKU's stock as the ERP or catalogue reports it."""

    model_config = ConfigDict(extra="forbid")
    sku: Sku
    on_hand: Quantity
    location: Location = DEFAULT_LOCATION
    as_of: Timestamp | None = Field(None, description="When the ERP counted; default: the upload's as_of")
    brand: Name | None = None
    category: Name | None = None
    tags: list[Tag] | None = Field(None, max_length=100)
    attributes: dict[AttributeName, AttributeText] | None = Field(
        None, max_length=100, description="Other catalogue attributes; an empty value removes one"
    )

    @field_validator("as_of")
    @classmethod
    def _not_in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > utcnow() + AS_OF_SKEW:
            raise ValueError("as_of is in the future")
        return value

    def to_row(self, line: int, default_as_of: datetime) -> SnapshotRow:
        named = self.model_fields_set
        attributes = None
        if named & {"brand", "category", "tags", "attributes"}:
            attributes = AttributeUpdate(
                brand=self.brand or None,
                category=self.category or None,
                tags=tuple(self.tags) if self.tags is not None else None,
                attributes=dict(self.attributes or {}),
                names_brand="brand" in named,
                names_category="category" in named,
            )
        return SnapshotRow(line, self.sku, self.location, self.on_hand, self.as_of or default_as_of, attributes)


def validation_error(line: int, exc: ValidationError) -> RejectedRow:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    return RejectedRow(line, field, first["msg"])


async def read_lines(stream: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes | None]]:
    """(line number, line without its end) for every line; None for a line too long to keep."""
    buffer = bytearray()
    number = 0
    skipping = False
    async for chunk in stream:
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            number += 1
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            yield number, None if skipping else line
            skipping = False
        if len(buffer) > MAX_LINE_BYTES:
            buffer.clear()
            skipping = True
    if buffer or skipping:
        yield number + 1, None if skipping else bytes(buffer).rstrip(b"\r")


async def read_json_lines(
    stream: AsyncIterator[bytes], default_as_of: datetime
) -> AsyncIterator[SnapshotRow | RejectedRow]:
    async for number, raw in read_lines(stream):
        if raw is None:
            yield RejectedRow(number, None, f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        if not raw.strip():
            continue
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield RejectedRow(number, None, f"not JSON: {exc}")
            continue
        if not isinstance(document, dict):
            yield RejectedRow(number, None, "a line must be a JSON object")
            continue
        try:
            yield SnapshotRecord.model_validate(document).to_row(number, default_as_of)
        except ValidationError as exc:
            yield validation_error(number, exc)


class UnreadableUpload(ValueError):
    """The upload as a whole cannot be read (a CSV without its header): refused, nothing applied."""


def csv_header(cells: list[str]) -> list[str]:
    """The column names of a CSV upload's first line; UnreadableUpload if it cannot be one."""
    header = [cell.strip() for cell in cells]
    missing = [name for name in ("sku", "on_hand") if name not in header]
    if missing or len(set(header)) != len(header):
        problem = f"missing column {missing[0]}" if missing else "a column appears twice"
        raise UnreadableUpload(f"header: {problem}")
    return header


async def checked_csv_upload(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The upload's bytes, unchanged, once its first non-empty line reads as a header:
    a file that can never apply a row is refused before anything is stored."""
    head = bytearray()
    checked = False
    async for chunk in stream:
        if not checked:
            head += chunk
            lines = bytes(head).split(b"\n")
            complete = [line for line in lines[:-1] if line.strip()]
            if not complete and len(head) <= MAX_LINE_BYTES:
                continue
            first = complete[0] if complete else bytes(head)
            try:
                text = first.rstrip(b"\r").decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise UnreadableUpload("header: not UTF-8") from exc
            csv_header(next(csv.reader([text])))
            checked = True
            chunk, head = bytes(head), bytearray()
        yield chunk
    if not checked:
        lines = [line for line in bytes(head).split(b"\n") if line.strip()]
        if not lines:
            raise UnreadableUpload("the file is empty")
        try:
            text = lines[0].rstrip(b"\r").decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UnreadableUpload("header: not UTF-8") from exc
        csv_header(next(csv.reader([text])))
        yield bytes(head)


async def read_csv(stream: AsyncIterator[bytes], default_as_of: datetime) -> AsyncIterator[SnapshotRow | RejectedRow]:
    """CSV with a header line: sku, on_hand, then optional location, as_of, brand, category,
    tags (separated by "|"); a column named "#..." is ignored; any other column is a
    catalogue attribute of that name.
    """
    header: list[str] | None = None
    async for number, raw in read_lines(stream):
        if raw is None:
            yield RejectedRow(number, None, f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = raw.decode("utf-8-sig" if header is None else "utf-8")
        except UnicodeDecodeError:
            yield RejectedRow(number, None, "not UTF-8")
            continue
        if not text.strip():
            continue
        cells = next(csv.reader([text]))
        if header is None:
            header = csv_header(cells)
            continue
        if len(cells) != len(header):
            yield RejectedRow(number, None, f"{len(cells)} cells where the header has {len(header)}")
            continue
        try:
            yield SnapshotRecord.model_validate(_csv_document(header, cells)).to_row(number, default_as_of)
        except ValidationError as exc:
            yield validation_error(number, exc)


def _csv_document(header: list[str], cells: list[str]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    attributes: dict[str, str] = {}
    for name, value in zip(header, cells, strict=True):
        value = value.strip()
        if name.startswith(CSV_COMMENT_PREFIX):
            continue  # e.g. the line and reason columns of a refused-rows report sent again
        if name in ("location", "as_of"):
            if value:
                document[name] = value
        elif name == "tags":
            document["tags"] = [tag.strip() for tag in value.split(CSV_TAG_SEPARATOR) if tag.strip()]
        elif name in CSV_KNOWN_COLUMNS:
            document[name] = value
        else:
            attributes[name] = value
    if attributes:
        document["attributes"] = attributes
    return document
