"""An OpenID Connect provider for the console's browser tests: discovery, the authorization
endpoint (which signs in its one user at once, as an organisation's provider does for someone
already signed in), the token endpoint with a real PKCE check (S256), and its JWKS, over HTTP.
Its ID tokens are signed with a real RSA key (tests/support/identity.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt

from tests.support.identity import SigningKey

CLIENT_ID = "infergate-console"


@dataclass
class OidcProvider:
    """Signs in `email` for the client CLIENT_ID; `exchanged` counts codes redeemed with a verifier that matched."""

    email: str = "sso-user@example.com"
    key: SigningKey = field(default_factory=SigningKey.rsa)
    codes: dict[str, dict] = field(default_factory=dict)
    exchanged: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/jwks"

    def start(self) -> OidcProvider:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def discovery(self) -> dict:
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": self.jwks_url,
                "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public"]}

    def authorize(self, asked: dict[str, str]) -> tuple[int, str]:
        """(302, where to) back to the client with a code; (400, why) for a request it refuses."""
        if asked.get("client_id") != CLIENT_ID or asked.get("response_type") != "code":
            return 400, "unknown client or response type"
        if asked.get("code_challenge_method") != "S256" or not asked.get("code_challenge"):
            return 400, "PKCE with S256 is required"
        code = secrets.token_urlsafe(24)
        self.codes[code] = asked
        return 302, f"{asked['redirect_uri']}?{urlencode({'code': code, 'state': asked.get('state', '')})}"

    def token(self, form: dict[str, str]) -> tuple[int, dict]:
        asked = self.codes.pop(form.get("code", ""), None)
        if asked is None or form.get("grant_type") != "authorization_code":
            return 400, {"error": "invalid_grant", "error_description": "unknown or used code"}
        if form.get("redirect_uri") != asked["redirect_uri"] or form.get("client_id") != CLIENT_ID:
            return 400, {"error": "invalid_grant", "error_description": "the code was issued to another client"}
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != asked["code_challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "the code verifier does not match"}
        self.exchanged += 1
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "sso-user-1", "email": self.email, "iat": now,
                  "exp": now + 600, "nonce": asked.get("nonce")}
        token = jwt.encode(claims, self.key.private, algorithm=self.key.algorithm, headers={"kid": self.key.kid})
        return 200, {"id_token": token, "access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 600}


def _handler(provider: OidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            path = urlsplit(self.path)
            if path.path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif path.path == "/jwks":
                self._json(200, {"keys": [provider.key.jwk()]})
            elif path.path == "/authorize":
                status, where = provider.authorize({name: values[0] for name, values in parse_qs(path.query).items()})
                self.send_response(status)
                self.send_header("Location" if status == 302 else "Content-Type", where if status == 302 else "text/plain")
                self.end_headers()
            else:
                self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            form = {name: values[0] for name, values in parse_qs(self.rfile.read(length).decode()).items()}
            self._json(*provider.token(form) if urlsplit(self.path).path == "/token" else (404, {"error": "not_found"}))

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")  # the console calls it from the gateway's origin
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler
