"""The edge's one table of errors: every code the domain and the edge raise has a status and a
meaning there, and each error's facts become the headers that say them."""

from __future__ import annotations

import pytest

from infergate.api import errors as table
from infergate.api.errors import body_of, headers_of, status_for
from infergate.domain import errors
from infergate.domain.admission import LimitState
from infergate.domain.model_server import CutOff


def every_error_class(root: type = errors.InferGateError) -> list[type]:
    found = [root]
    for child in root.__subclasses__():
        found += every_error_class(child)
    return found


@pytest.mark.parametrize("kind", every_error_class(), ids=lambda kind: kind.__name__)
def test_every_error_has_a_status_and_a_meaning(kind):
    assert kind.code in table.ERRORS, f"{kind.__name__}'s code {kind.code} is not in api/errors.py's table"


def test_a_code_set_on_an_instance_is_answered_by_its_own_status():
    assert status_for(errors.Conflict("no", code="too_many_keys")) == 409
    assert status_for(errors.AnswerCutOff(CutOff("upstream_timeout", "slow"), charged=3)) == 504
    assert status_for(errors.InferGateError("who knows", code="no_such_code")) == 500


def test_not_found_is_404_whatever_it_names():
    assert status_for(errors.NotFound("no model", code="model_not_found")) == 404
    assert status_for(errors.ModelNotFound.naming("ghost")) == 400


def test_the_facts_of_a_refusal_become_its_headers():
    refused = errors.RateLimited("slow down", retry_after=7, limit="rpm", requests=LimitState(60, 0, 6_500),
                                 tokens=LimitState(1000, 200, 30_000))
    assert headers_of(refused) == {
        "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7",
        "X-RateLimit-Limit-Tokens": "1000", "X-RateLimit-Remaining-Tokens": "200", "X-RateLimit-Reset-Tokens": "30",
        "Retry-After": "7"}
    assert headers_of(errors.Unauthorized("token please", challenge="Bearer")) == {"WWW-Authenticate": "Bearer"}
    assert headers_of(errors.ServiceUnavailable("later")) == {}


def test_the_body_names_openais_type_for_the_status():
    body = body_of(errors.ModelNotFound.naming("ghost")).error
    assert (body.type, body.code, body.param) == ("invalid_request_error", "model_not_found", "model")
    assert body_of(errors.UpstreamError("down")).error.type == "api_error"
