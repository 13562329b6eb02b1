"""Property-based robustness: schemathesis drives every operation of the OpenAPI schema with generated
requests (a bounded number of examples) as an admin. No 500s; responses match their schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from gpufleet.api.app import create_app
from tests.api.conftest import make_api


@pytest.mark.slow
def test_every_operation_no_server_errors_and_schema_conformance(tmp_path: Path) -> None:
    api = make_api(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(api.ctx))
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 25
    exercised: set[str] = set()
    try:
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def run(case: schemathesis.Case) -> None:
                # a fresh admin token per example: logout / password examples must not end the run
                case.call_and_validate(headers=api.headers("root"),
                                       checks=[not_a_server_error, response_schema_conformance])
                exercised.add(f"{case.method} {case.path}")

            run()
    finally:
        api.ctx.db.dispose()
    assert len(exercised) == len(operations)
