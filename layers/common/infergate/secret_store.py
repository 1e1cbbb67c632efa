"""Settings kept in AWS Secrets Manager or SSM Parameter Store rather than in the function's
environment: MONGODB_URI_SECRET, REDIS_URL_SECRET and METRICS_TOKEN_SECRET say where
MONGODB_URI, REDIS_URL and METRICS_TOKEN are.

A reference is a Secrets Manager secret's ARN or an SSM parameter's name (a SecureString,
decrypted). It is read with Powertools Parameters when the client that needs it is first
made, so once per function instance, and boto3 is imported only then. A secret that cannot
be read is a 503 like a store that cannot be reached, bounded like one (two attempts of at
most two seconds each), and its value reaches no log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infergate.domain.errors import ServiceUnavailable
from infergate.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import BaseProvider

# Values are cached for this long; a client built from one keeps it for the instance's life.
MAX_AGE_SECONDS = 300


class SecretUnavailable(ServiceUnavailable):
    """A setting's secret could not be read."""


def is_secrets_manager_arn(reference: str) -> bool:
    return reference.startswith("arn:") and reference.split(":")[2:3] == ["secretsmanager"]


class KeptSettings:
    """Reads settings from where they are kept, through one Powertools provider per service,
    made on first use and kept for the instance's life (bootstrap holds one)."""

    def __init__(self) -> None:
        self._providers: dict[str, BaseProvider] = {}

    def read(self, reference: str) -> str:
        """The value kept at `reference`: a Secrets Manager ARN, else an SSM parameter's name."""
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            if is_secrets_manager_arn(reference):
                value = self._provider("secretsmanager").get(reference, max_age=MAX_AGE_SECONDS)
            else:
                value = self._provider("ssm").get(reference, max_age=MAX_AGE_SECONDS, decrypt=True)
        except GetParameterError as error:
            # The AWS error names the reference and the role, never the value.
            logger.error("setting could not be read from where it is kept",
                         extra={"kept_at": reference, "error": str(error)})
            raise SecretUnavailable("A setting of the gateway's could not be read from where it is kept; retry "
                                    "shortly.", retry_after=1) from None
        text = value.decode() if isinstance(value, bytes) else str(value or "")
        if not text.strip():
            logger.error("setting kept empty", extra={"kept_at": reference})
            raise SecretUnavailable("A setting of the gateway's is kept empty; an operator must set it.",
                                    retry_after=60)
        return text.strip()

    def _provider(self, service: str) -> BaseProvider:
        if service not in self._providers:
            from aws_lambda_powertools.utilities import parameters
            from botocore.config import Config

            bounded = Config(connect_timeout=2, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})
            self._providers[service] = (parameters.SecretsProvider(boto_config=bounded) if service == "secretsmanager"
                                        else parameters.SSMProvider(boto_config=bounded))
        return self._providers[service]
