"""Every API fuzzed from its own OpenAPI description, the gateway's merged one and each
service's: no 500, no status code the description does not list, no answer that breaks
its schema, no invalid request accepted.

Bounded: a few examples per operation (positive and negative), no deadline; the whole
file takes about two minutes on a quiet machine. Requests carry a merchant's key, so
operations reach their handlers instead of stopping at 401.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from stocksync_embedded.stack import Stack

from tests.e2e.conftest import Merchant, new_merchant

MAX_EXAMPLES = 8
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, negative_data_rejection]
SERVICES = ("order-ingest", "stock-ledger", "rule-engine", "channel-publisher")


@pytest.fixture(scope="session")
def fuzzing_merchant(api: httpx.Client, stack: Stack) -> Merchant:
    return new_merchant(api, stack, "fuzzing")


def _schema(base_url: str, merchant: Merchant) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.config.update(base_url=base_url, headers=merchant.auth, request_timeout=60)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES)
    # Operational endpoints are not part of the public description's contract.
    return schema.exclude(path_regex="^/(healthz|readyz)$")


def _fuzz(schema: schemathesis.BaseSchema) -> None:
    """Every operation, positive then negative cases; every failure collected, then reported."""
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @_bounded
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                continue  # no negative case exists for an operation that takes no input
            except Exception as exc:  # every check failure, of any operation
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 3
    assert not failures, "\n\n".join(failures)


_bounded = settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
)


def test_the_gateway_answers_as_its_merged_description_says(stack: Stack, fuzzing_merchant: Merchant) -> None:
    _fuzz(_schema(stack.base_url, fuzzing_merchant))


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_answers_as_its_description_says(stack: Stack, fuzzing_merchant: Merchant, service: str) -> None:
    _fuzz(_schema(stack.service_url(service), fuzzing_merchant))
