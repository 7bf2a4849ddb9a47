"""Property-based fuzzing of every documented route against the running app's own OpenAPI
schema (schemathesis 4): no 5xx, and every response conforms to the schema."""

from __future__ import annotations

from collections.abc import Callable

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.checks import positive_data_acceptance

from tests.integration.fuzz.conftest import ADMIN
from tests.support.servers import AppServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES_PER_OPERATION = 40
EXCLUDED_CHECKS = [positive_data_acceptance]
"""Not asserted: JSON Schema calls `3.0` an integer and Litestar drops `minLength` on the items
of `list[Text]`, while msgspec (strictly, and rightly) refuses both with a 400. Every other
default check runs: no 5xx, documented status codes, content types, headers, body schemas."""


def _operations(app: AppServer) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{app.url}/schema/openapi.json")
    schema.config.base_url = app.url  # type: ignore[misc]
    return [result.ok() for result in schema.get_all_operations()]


def _fuzzer(
    operation: schemathesis.APIOperation, base_url: str, model_name: str
) -> Callable[[], None]:
    # Admin routes with the valid token, so fuzzing reaches the handlers, not the guard.
    headers = ADMIN if operation.path.startswith("/admin") else {}

    @given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def fuzz(case: schemathesis.Case) -> None:
        if case.path_parameters and "name" in case.path_parameters:
            # The served model's name, so V2 fuzzing reaches tensors, not the unknown-model 404.
            case.path_parameters["name"] = model_name
        case.call_and_validate(
            base_url=base_url, headers=headers, timeout=30, excluded_checks=EXCLUDED_CHECKS
        )

    return fuzz  # type: ignore[no-any-return]


@pytest.mark.timeout(240)
def test_every_route_conforms_and_never_5xx(fuzz_app: AppServer) -> None:
    operations = _operations(fuzz_app)
    paths = {op.path for op in operations}
    assert {"/predict", "/predict/batch", "/healthz", "/readyz", "/admin/slots"} <= paths
    assert {"/v2", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"} <= paths
    model_name = fuzz_app.env["BLUEGREEN_MODEL_NAME"]
    failures: list[str] = []
    for operation in operations:
        try:
            _fuzzer(operation, fuzz_app.url, model_name)()
        except BaseException as exc:  # collect every operation's failures, then report all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)
