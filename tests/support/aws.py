"""AWS Secrets Manager and SSM Parameter Store over HTTP (moto's server), for settings kept there:
boto3 and Powertools reach it through AWS_ENDPOINT_URL, as they would reach AWS."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from devkit.backends import free_port

REGION = "us-east-1"


@dataclass
class SecretsService:
    url: str

    @property
    def environment(self) -> dict[str, str]:
        """What a process needs to reach it, with credentials it accepts."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}

    def client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keep_secret(self, name: str, value: str) -> str:
        """A Secrets Manager secret holding `value`: its ARN."""
        return self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]

    def keep_parameter(self, name: str, value: str) -> str:
        """An SSM SecureString parameter holding `value`: its name."""
        self.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
        return name


@contextmanager
def secrets_service() -> Iterator[SecretsService]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield SecretsService(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
