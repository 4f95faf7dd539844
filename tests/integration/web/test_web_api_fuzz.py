"""Fuzz every API operation from the app's own OpenAPI description: no input, as any
kind of caller, makes the server fail (no 500s), and answers stay within the schema's
declared status codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from enclave.web.app import create_app
from tests.integration.web.world import PREFIX, authenticator, build_world

_HOME = Path(__import__("tempfile").mkdtemp(prefix="enclave-fuzz-"))
APP = create_app(build_world(_HOME / "home"), authenticator())
schema = schemathesis.openapi.from_asgi(f"{PREFIX}/api/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("token", ["t-ada", "t-rob", "t-rita"])
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz_never_fails_on_the_server(case, token):
    case.headers = {**(case.headers or {}), "Authorization": f"token {token}"}
    response = case.call()
    case.validate_response(response, checks=(not_a_server_error,))
    assert response.status_code < 500, response.text
    if response.status_code >= 400 and response.content:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "Traceback" not in detail
