"""The Lambda REQUEST authorizer in front of every protected route.

A known key yields an Allow policy whose context carries the principal
(user, key, plan limits) to the handlers. A missing or unknown key yields a
Deny whose context carries the error: the API's ACCESS_DENIED gateway
response turns it into `401 {"error": {...}}` with the request's id.

Collaborators: the Authenticator (wiring), which answers a key seen lately
from memory, checks the accounts version in Redis at most twice a second,
and reads MongoDB only for keys it has not seen or after a change.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import event_source
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayAuthorizerResponse,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from infergate import wiring
from infergate.api.request_id import request_id_of
from infergate.models.principal import authorizer_context
from infergate.observability import logger

_BEARER = "bearer "
_MISSING = "An API key is required: send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'."


def presented_key(event: APIGatewayAuthorizerRequestEvent) -> str | None:
    """The key from `x-api-key`, or else from `Authorization: Bearer <key>`."""
    key = event.headers.get("x-api-key", "")
    if key:
        return key.strip()
    authorization = event.headers.get("authorization", "")
    if authorization[: len(_BEARER)].lower() == _BEARER:
        return authorization[len(_BEARER) :].strip()
    return None


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=APIGatewayAuthorizerRequestEvent)
def lambda_handler(event: APIGatewayAuthorizerRequestEvent, context: LambdaContext) -> dict:
    from infergate.domain.authentication import Refusal

    request_id = request_id_of(event.raw_event)
    logger.set_correlation_id(request_id)
    arn = event.parsed_arn
    credential = presented_key(event)
    caller = wiring.authenticator().authenticate(credential) if credential else Refusal("missing_api_key", _MISSING)

    policy = APIGatewayAuthorizerResponse(
        principal_id=getattr(caller, "user_id", None) or getattr(caller, "key_id", "anonymous"),
        region=arn.region,
        aws_account_id=arn.aws_account_id,
        api_id=arn.api_id,
        stage=arn.stage,
    )
    if isinstance(caller, Refusal):
        logger.info("request refused", extra={"reason": caller.code})
        policy.context = {"requestId": request_id, "errorCode": caller.code, "errorMessage": caller.message}
        policy.deny_all_routes()
    else:
        logger.append_keys(caller=policy.principal_id, key_id=caller.key_id)
        policy.context = authorizer_context(caller)
        policy.allow_all_routes()
    return policy.asdict()
