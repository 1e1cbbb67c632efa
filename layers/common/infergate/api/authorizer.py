"""The Lambda REQUEST authorizer in front of every protected route.

A known key yields an Allow policy whose context carries the principal
(user, key, plan limits) to the handlers. A missing or unknown key yields a
Deny whose context carries the error: the API's ACCESS_DENIED gateway
response turns it into `401 {"error": {...}}` with the request's id. An
address with too many failed authentications lately, or a request whose
credential cannot be checked because a store is down, is let through marked
as refused, and the route answers 429 or 503 with Retry-After (a gateway
response cannot; a crashed authorizer would be logged as one).

Collaborators: the Authenticator, which answers a key seen lately from
memory, checks the accounts version in Redis at most twice a second, and
reads MongoDB only for keys it has not seen or after a change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from infergate.api.caller import authorizer_context, refused_context
from infergate.api.errors import status_of
from infergate.api.request_id import request_id_of
from infergate.domain.errors import InferGateError
from infergate.observability import logger, note, open_access_line, record_access_lines_with, write_access_line

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from infergate.bootstrap import Services
    from infergate.domain.authentication import Authenticator, Refusal
    from infergate.domain.principal import Operator, Principal

_BEARER = "bearer "
_FORMS = "send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'"
_MISSING = f"An API key is required: {_FORMS}."
_OTHER_SCHEME = f"This Authorization scheme is not accepted: {_FORMS}."


class AuthorizerEvent:
    """What the authorizer reads of API Gateway's REQUEST authorizer event, as Powertools'
    APIGatewayAuthorizerRequestEvent reads it (its headers by lower-case name), without importing
    Powertools' data classes: the package imports every event source's, at each cold start."""

    def __init__(self, raw_event: Mapping[str, Any]) -> None:
        self.raw_event = raw_event
        self.headers = {name.lower(): value for name, value in (raw_event.get("headers") or {}).items()}
        self.resource: str | None = raw_event.get("resource")
        self.http_method: str | None = raw_event.get("httpMethod")
        context = raw_event.get("requestContext") or {}
        self.request_id: str | None = context.get("requestId")
        self.source_ip: str | None = (context.get("identity") or {}).get("sourceIp")
        # arn:aws:execute-api:{region}:{account}:{api id}/{stage}/{method}/{resource}
        arn = raw_event["methodArn"].split(":")
        self.region, self.account_id = arn[3], arn[4]
        self.api_id, self.stage = arn[5].split("/")[:2]


class Policy:
    """The authorizer's answer: an IAM policy on every route of the stage, allowing or denying, with
    the context the routes get; as Powertools' APIGatewayAuthorizerResponse writes it."""

    def __init__(self, event: AuthorizerEvent) -> None:
        self.principal_id = "anonymous"
        self.context: dict[str, Any] | None = None
        self._every_route = f"arn:aws:execute-api:{event.region}:{event.account_id}:{event.api_id}/{event.stage}/*/*"
        self._effect: str | None = None

    def allow_all_routes(self) -> None:
        self._effect = "Allow"

    def deny_all_routes(self) -> None:
        self._effect = "Deny"

    def asdict(self) -> dict[str, Any]:
        if self._effect is None:
            raise ValueError("No statements defined for the policy")
        statement = {"Action": "execute-api:Invoke", "Effect": self._effect, "Resource": [self._every_route]}
        response: dict[str, Any] = {"principalId": self.principal_id,
                                    "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}
        if self.context:
            response["context"] = self.context
        return response


def presented_key(event: AuthorizerEvent) -> str | None:
    """The key from `x-api-key`, or else from `Authorization: Bearer <key>`; "" when an
    Authorization header of another scheme (Basic, ...) is all there is."""
    key = event.headers.get("x-api-key", "")
    if key:
        return key.strip()
    authorization = event.headers.get("authorization", "")
    if authorization[: len(_BEARER)].lower() == _BEARER:
        return authorization[len(_BEARER) :].strip()
    return "" if authorization.strip() else None


def authorizer(services: Services) -> Callable[[dict, LambdaContext], dict]:
    """The authorizer's Lambda handler, authenticating with the instance's services."""
    # A key denied here is a request no function answers: its access line counts in the metrics too.
    record_access_lines_with(lambda line: services.request_metrics.record(line))  # Redis is made on first use

    @logger.inject_lambda_context(clear_state=True)
    def lambda_handler(raw_event: dict, context: LambdaContext) -> dict:
        event = AuthorizerEvent(raw_event)
        request_id = request_id_of(raw_event)
        logger.set_correlation_id(request_id)
        open_access_line(route=event.resource, method=event.http_method, api_request_id=event.request_id,
                         source_ip=event.source_ip)
        # API Gateway's own id: what its 401 carries, so that the two can be matched.
        logger.append_keys(api_request_id=event.request_id)
        policy = Policy(event)
        try:
            caller = _authenticate(services.authenticator, event)
        except InferGateError as error:  # a store the answer depends on is down: 503, not a crash
            logger.warning("credentials could not be checked", extra={"error_code": error.code})
            policy.context = refused_context(error, status=status_of(error.code))
            policy.allow_all_routes()  # the route answers: see refused_context
            return _answered(policy, request_id)
        _decide(policy, caller, request_id)
        return _answered(policy, request_id)

    return lambda_handler


def _authenticate(authenticator: Authenticator, event: AuthorizerEvent) -> Principal | Operator | Refusal:
    from infergate.domain.authentication import Refusal  # with the authenticator, on the first request

    source = event.source_ip or ""
    credential = presented_key(event)
    if credential is None:
        return authenticator.refuse(Refusal("missing_api_key", _MISSING), source=source)
    if not credential:
        return authenticator.refuse(Refusal("invalid_api_key", _OTHER_SCHEME), source=source)
    return authenticator.authenticate(credential, source=source)


def _decide(policy: Policy, caller: Principal | Operator | Refusal, request_id: str) -> None:
    """Allow a caller, with who it is in the context; deny a refused credential, or let it through
    marked refused when its refusal is a matter of time (the route answers 429)."""
    from infergate.domain.authentication import Refusal

    if isinstance(caller, Refusal):
        if caller.retry_after:
            refusal = InferGateError(caller.message, code=caller.code, retry_after=caller.retry_after)
            policy.context = refused_context(refusal, status=status_of(caller.code))
            policy.allow_all_routes()  # the route answers: see refused_context
        else:
            policy.context = {"requestId": request_id, "errorCode": caller.code, "errorMessage": caller.message}
            policy.deny_all_routes()
            # No function answers a request denied here: its access line is the authorizer's.
            note(status=401, outcome=caller.code)
            write_access_line()
        return
    policy.principal_id = getattr(caller, "user_id", None) or caller.key_id
    logger.append_keys(caller=policy.principal_id, key_id=caller.key_id)
    policy.context = authorizer_context(caller)
    policy.allow_all_routes()


def _answered(policy: Policy, request_id: str) -> dict:
    """The policy, its context naming the request's correlation id for API Gateway's access log
    ($context.authorizer.correlationId); request_id_of admits no character that would need escaping."""
    policy.context = {**(policy.context or {}), "correlationId": request_id}
    return policy.asdict()
