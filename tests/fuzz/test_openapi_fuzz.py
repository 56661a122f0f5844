"""Property-based fuzzing from the app's own OpenAPI document (schemathesis): whatever it sends,
no 5xx, and every answer matches the documented status codes, media types and schemas."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from api.app import create_app
from api.settings import load_settings

# Bounded so `make test` stays quick.
EXAMPLES = 25

# Built at import because schemathesis' fixture-based loader does not run on pytest 9 yet;
# no I/O happens here (the store opens when a request starts the app's lifespan).
_data = tempfile.TemporaryDirectory(prefix="lambdarun-fuzz-")
app = create_app(load_settings(database_url=f"sqlite:///{_data.name}/fuzz.db"))
config = SchemathesisConfig.from_path(str(Path(__file__).with_name("schemathesis.toml")))
schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_answers_every_generated_request_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate()
