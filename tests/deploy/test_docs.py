"""docs/operations.md and docs/configuration.md stay true to the code."""

from __future__ import annotations

import re

import pytest

from stocksync_common.settings import ServiceSettings

from channel_publisher.config import PublisherSettings
from order_ingest.config import IngestSettings
from rule_engine.config import RuleEngineSettings
from stock_ledger.config import LedgerSettings
from tests.deploy.conftest import REPO
from tests.deploy.test_kubernetes import registered_metric_names


def test_operations_doc_lists_every_exported_metric() -> None:
    documented = (REPO / "docs" / "operations.md").read_text()
    families = {re.sub(r"_(bucket|count|sum|created|total)$", "", name) for name in registered_metric_names()}
    assert sorted(name for name in families if name not in documented) == []


@pytest.mark.parametrize(
    "settings",
    [ServiceSettings, IngestSettings, LedgerSettings, RuleEngineSettings, PublisherSettings],
    ids=lambda cls: cls.__name__,
)
def test_configuration_doc_has_a_row_for_every_setting(settings: type[ServiceSettings]) -> None:
    documented = (REPO / "docs" / "configuration.md").read_text()
    missing = [name.upper() for name in settings.model_fields if f"`{name.upper()}`" not in documented]
    assert missing == []
