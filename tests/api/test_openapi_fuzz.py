"""schemathesis against /openapi.json of a real server: every GET route, generated inputs,
responses checked against the published schemas (no 5xx, documented status codes and shapes)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.api.server import WebServer, web_server


@pytest.fixture(scope="module")
def fuzz_web(sample_db: Path) -> Iterator[WebServer]:
    with web_server(sample_db) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_web: WebServer) -> OpenApiSchema:
    loaded = schemathesis.openapi.from_url(fuzz_web.url + "/openapi.json")
    loaded.config.base_url = fuzz_web.url
    chosen = loaded.include(method="GET").exclude(path="/api/stream")  # an endless stream
    assert isinstance(chosen, OpenApiSchema)
    return chosen


def test_get_routes_conform_to_the_published_schema(api_schema: OpenApiSchema) -> None:
    checked = []
    for result in api_schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def conforms(case: schemathesis.Case[Any]) -> None:
            # A schema cannot say which ISO dates exist or which cursors this server issued:
            # such inputs get the documented 400, which positive_data_acceptance would flag.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        conforms()
        checked.append(operation.path)
    assert {"/api/events", "/api/timeline", "/api/alerts", "/metrics"} <= set(checked)
