"""Schemathesis against the service's own ``/openapi.json`` on a real server: requests generated
from the schema (valid and invalid, bounded in number) never get a 5xx, and every error answer is
in the unified format ``{"status": "error", "code", "message", "details"}``."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from owf_magics.runs.crypto import generate_key
from owf_magics.service.config import SCOPES
from tests.service_server import start, token, write_flows

pytestmark = pytest.mark.slow

#: Examples per operation: the whole run stays well under a minute on two cores.
EXAMPLES = 25


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    srv = start(folder, str(write_flows(folder)), "--max-body-bytes", "65536", env={"OWF_SECRET_KEY": generate_key()})
    yield srv
    srv.stop()
    assert "Traceback" not in srv.stderr(), srv.stderr()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


#: Every operation of the schema (a new route is fuzzed once it is added here; the test below fails
#: when the schema and this list differ).
OPERATIONS = [
    "GET /health",
    "POST /workflows/validate",
    "POST /workflows/execute",
    "GET /workflows",
    "GET /workflows/{name}",
    "GET /runs",
    "GET /runs/{run_id}",
    "GET /runs/{run_id}/events",
    "POST /runs/{run_id}/resume",
    "POST /runs/{run_id}/cancel",
    "GET /queue",
    # published workflows, sources and queues (issue 24)
    "POST /workflows",
    "GET /workflows/{name}/versions",
    "DELETE /workflows/{name}/{version}",
    "POST /sources",
    "GET /sources",
    "GET /sources/{source_id}",
    "PUT /sources/{source_id}",
    "DELETE /sources/{source_id}",
    "GET /queues",
    "GET /queues/{workflow}/{queue_id}",
    "PUT /queues/{workflow}/{queue_id}",
    "GET /metrics",
]


def test_every_operation_is_fuzzed(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


def unified_errors(response, case) -> None:
    """Every 4xx/5xx answer is ``{"status": "error", "code", "message", "details"}``."""
    if response.status_code < 400:
        return
    where = f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    body = response.json()
    assert isinstance(body, dict) and body.get("status") == "error", where
    assert isinstance(body.get("message"), str) and body["message"], where
    assert isinstance(body.get("code"), str) and "details" in body, where


#: Operations without parameters or a body have no invalid requests to generate.
WITHOUT_INPUT = {"GET /health", "GET /workflows", "GET /queue", "GET /sources", "GET /queues", "GET /metrics"}
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in OPERATIONS if label not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{m.value}-{label}" for label, m in CASES])
def test_no_server_errors_and_every_error_unified(api_schema, fuzz_server, label, mode):
    operation = api_schema.find_operation_by_label(label)
    headers = {"Authorization": f"Bearer {token(scope=' '.join(SCOPES))}"}

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same examples on every run: CI stays reproducible
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        response = case.call(base_url=fuzz_server.url, headers=headers, timeout=30)
        case.validate_response(response, checks=[not_a_server_error])
        unified_errors(response, case)

    check()
