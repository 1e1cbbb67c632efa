"""An identity provider for tests: real RSA and EC keys, their JWKS served over HTTP, and
tokens signed with them (PyJWT + cryptography)."""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://id.example.com/"
AUDIENCE = "infergate"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    @classmethod
    def rsa(cls) -> SigningKey:
        return cls(f"rsa-{uuid.uuid4().hex[:8]}", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls) -> SigningKey:
        return cls(f"ec-{uuid.uuid4().hex[:8]}", "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict:
        algorithm = RSAAlgorithm if self.algorithm.startswith("RS") else ECAlgorithm
        return {**json.loads(algorithm.to_jwk(self.private.public_key())), "kid": self.kid, "use": "sig",
                "alg": self.algorithm}


@functools.cache
def _usual_keys() -> tuple[SigningKey, SigningKey]:
    # Made once per test session: an RSA key takes a while to generate.
    return SigningKey.rsa(), SigningKey.ec()


@dataclass
class IdentityProvider:
    """Publishes its keys at `jwks_url`; counts how often they were fetched."""

    keys: list[SigningKey] = field(default_factory=lambda: list(_usual_keys()))
    fetches: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def jwks_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/.well-known/jwks.json"

    def start(self) -> IdentityProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                provider.fetches += 1
                body = json.dumps({"keys": [key.jwk() for key in provider.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rotate(self) -> SigningKey:
        """A new signing key, published beside the old ones."""
        key = SigningKey.rsa()
        self.keys.append(key)
        return key

    def token(self, subject: str = "alice", *, key: SigningKey | None = None, lifetime: float = 300, **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + int(lifetime), **claims}
        return jwt.encode({name: value for name, value in payload.items() if value is not None}, key.private,
                          algorithm=key.algorithm, headers={"kid": key.kid})
