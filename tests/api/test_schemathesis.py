"""Schemathesis against the OpenAPI spec, with a tenant key: no 5xx, and every response as
the spec declares it (status, schema, content type, headers). Bounded: a few examples per
operation (THRIFTY_SCHEMATHESIS_EXAMPLES, default 15), so it runs in `make test`.

Left out: ``positive_data_acceptance`` (a schema-valid request must be 2xx). Some refusals
are rules no JSON Schema states: a webhook host that does not resolve, an expiry already
past, metadata numbers beyond 64 bits at any depth; they are 4xx in the one error schema,
which the other checks hold them to."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.openapi.loaders import from_asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import app
from app.models import Tenant

EXAMPLES = int(os.environ.get("THRIFTY_SCHEMATHESIS_EXAMPLES", "15"))


schema = from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_to_its_spec(case: schemathesis.Case, tenant: tuple[Tenant, str]) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {tenant[1]}"},
        excluded_checks=[positive_data_acceptance],
    )
