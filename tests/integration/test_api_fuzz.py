"""OpenAPI-driven fuzzing of every endpoint of the HTTP API with schemathesis (in-process ASGI).

For each operation of ``/openapi.json``, schemathesis generates requests that fit the spec
(positive) and requests that break it (negative) — 25 of each, derandomized, so a run is
repeatable and takes a few seconds per operation. Each response goes through schemathesis's
checks, which include ``not_a_server_error`` (no 5xx, ever), ``status_code_conformance`` (only
documented statuses), ``content_type_conformance``, ``response_schema_conformance`` and
``negative_data_rejection`` (a request the spec forbids is a 4xx), plus :func:`semantic_rejections`
below. Two built-in checks are left out, and why:

* ``positive_data_acceptance`` (a spec-valid request must not be a 4xx): some rules are not
  expressible per field in OpenAPI — ``positions`` / ``propensities`` / ``sources`` as long as
  ``items_shown``, a ``cursor`` this API issued — and 404 is the answer for ids that do not exist. Instead,
  :func:`semantic_rejections` allows a spec-valid request to be refused only for those reasons.
* ``negative_data_rejection`` on GET: a query string carries no types, so "an array instead of
  a string" (``category=true``) is, on the wire, a valid string.

Decisions the run relies on (see also tests/unit/test_api.py): unknown users get the cold-start
page (200); an interaction or impression naming an item the catalogue does not know is an
accepted, logged event (202); unknown items are 404 for ``/similar`` and ``DELETE``.
"""

from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from funnel.api.app import create_app
from funnel.api.routes import catalogue, events, experiments, health, models, recommendations
from funnel.engine import Engine

EXAMPLES = 25
SEMANTIC_FIELDS = {"cursor", "positions", "propensities", "sources", "arms", "model_version"}
"""Fields a spec-valid request may still be refused for (a rule between fields or list entries: arm
names unique; an opaque token; an arm's model version, which must exist in the registry)."""
ROUTES = sorted(
    f"{method} {route.path}"
    for module in (recommendations, events, catalogue, experiments, models, health)
    for route in module.router.routes
    for method in route.methods
)


def semantic_rejections(ctx, response, case):
    """A spec-valid request is refused only with 404, 409 or a 422 naming a cross-field/opaque field.

    409: the state forbids it (an experiment name already taken, another experiment running).
    """
    meta = case.meta
    if meta is None or meta.generation.mode is not GenerationMode.POSITIVE:
        return None
    if response.status_code < 400 or response.status_code in (404, 409, 413) or response.status_code >= 500:
        return None  # 5xx: not_a_server_error's job; 413: a generated body over the cap
    field = (response.json().get("error") or {}).get("field") or ""
    if response.status_code == 422 and field.split(".")[-1] in SEMANTIC_FIELDS:
        return None
    raise RejectedPositiveData(
        operation=case.operation.label,
        message=f"a spec-valid request was refused: {response.status_code} {response.text[:300]}",
        status_code=response.status_code,
        allowed_statuses=["2xx", "404", "409", "422 on " + ", ".join(sorted(SEMANTIC_FIELDS))],
    )


@pytest.fixture(scope="module")
def api_schema(api_data_template, tmp_path_factory):
    """The spec of an open app (no keys: every handler is reachable) over its own data copy."""
    data = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(api_data_template, data)
    app = create_app(Engine(data))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_the_spec_lists_every_route(api_schema):
    labels = sorted(result.ok().label for result in api_schema.get_all_operations())
    assert labels == ROUTES


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", ROUTES)
def test_fuzz_operation(api_schema, label, mode):
    operation = api_schema[label.split(" ", 1)[1]][label.split(" ", 1)[0]]
    if mode is GenerationMode.NEGATIVE and not any(
        (operation.path_parameters, operation.query, operation.headers, operation.body)
    ):
        pytest.skip("no input to break")
    excluded = [positive_data_acceptance]
    if operation.method.upper() == "GET":
        excluded.append(negative_data_rejection)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        case.call_and_validate(excluded_checks=excluded, additional_checks=[semantic_rejections])

    run()
