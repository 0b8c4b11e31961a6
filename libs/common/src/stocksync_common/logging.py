"""JSON logs that carry the causation id of the event being handled."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

causation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("causation_id", default=None)


class _CausationFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        causation = causation_id_var.get()
        if causation is not None and not hasattr(record, "causation_id"):
            record.causation_id = causation
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_CausationFilter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The Kafka client is chatty at INFO about group membership.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@contextmanager
def causation(causation_id: str | None) -> Iterator[None]:
    token = causation_id_var.set(causation_id)
    try:
        yield
    finally:
        causation_id_var.reset(token)
