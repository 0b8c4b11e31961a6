"""Secrets at rest: channel credentials and webhook secrets, encrypted in their columns.

Column types encrypt on write and decrypt on read, so a table declares its secret columns
once (`EncryptedJSON`, `EncryptedText`, `EncryptedTextArray`) and every query through SQLAlchemy stays as
it was. Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key derived from
`SECRETS_KEY`; keys in `SECRETS_PREVIOUS_KEYS` still decrypt, so the key can be rotated.
A stored value is `fernet:<token>`; a value without that prefix is a row written before
encryption and is read as it is (it is encrypted the next time it is written).

The same sealing carries secrets on the broker: `connections.v1` holds its webhook secrets,
inbound settings and channel credentials encrypted (`seal_connection`), so only a service
holding `SECRETS_KEY` reads them (`open_connection`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from stocksync_common.contracts import ConnectionChanged
from stocksync_common.settings import ServiceSettings

_PREFIX = "fernet:"
_box: MultiFernet | None = None


def fernet_key(secret: str) -> bytes:
    """A Fernet key from an operator's secret (any text of 16+ characters)."""
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def configure_secrets(current: str, previous: Sequence[str] = ()) -> None:
    """Set the process's key (from the settings, once at start); `previous` keys only decrypt."""
    global _box
    _box = MultiFernet([Fernet(fernet_key(key)) for key in (current, *previous)])


def _fernet() -> MultiFernet:
    if _box is None:  # a tool or test using the tables without a Runtime: the environment's keys
        settings = ServiceSettings()
        configure_secrets(settings.secrets_key.get_secret_value(), settings.previous_secrets_keys)
    assert _box is not None
    return _box


def encrypt(plaintext: str) -> str:
    return _PREFIX + _fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(_PREFIX):
        return stored  # written before encryption
    return _fernet().decrypt(stored.removeprefix(_PREFIX).encode()).decode()


def encrypt_json(value: Any) -> dict[str, str]:
    """A JSON document as `{"fernet": "<token>"}` (a column's value, or an event's field)."""
    return {"fernet": encrypt(orjson.dumps(value).decode())}


def decrypt_json(value: Any) -> Any:
    """The document `encrypt_json` sealed; any other value is returned as it is (written
    before encryption)."""
    if isinstance(value, dict) and set(value) == {"fernet"} and isinstance(value["fernet"], str):
        return orjson.loads(decrypt(value["fernet"]))
    return value


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document stored as `{"fernet": "<token>"}` in a jsonb column."""

    impl = pg.JSONB
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return encrypt_json(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return decrypt_json(value)


class EncryptedText(TypeDecorator[str]):
    """A secret in a text column, stored as `fernet:<token>`."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else decrypt(value)


class EncryptedTextArray(TypeDecorator[list[str]]):
    """A list of secrets in a text[] column, each encrypted on its own."""

    impl = pg.ARRAY(Text)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return [encrypt(item) for item in value]

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return [decrypt(item) for item in value]


def seal_connection(event: ConnectionChanged) -> ConnectionChanged:
    """The event with its secret fields encrypted, for the broker."""
    return event.model_copy(
        update={
            "webhook_secrets": tuple(encrypt(secret) for secret in event.webhook_secrets),
            "inbound": encrypt_json(event.inbound) if event.inbound else {},
            "channel_api": encrypt_json(event.channel_api) if event.channel_api else {},
        }
    )


def open_connection(event: ConnectionChanged) -> ConnectionChanged:
    """The event with its secret fields in clear; an event published before they were
    sealed is read as it is."""
    return event.model_copy(
        update={
            "webhook_secrets": tuple(decrypt(secret) for secret in event.webhook_secrets),
            "inbound": decrypt_json(event.inbound),
            "channel_api": decrypt_json(event.channel_api),
        }
    )
