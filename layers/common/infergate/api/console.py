"""The console (GET /console and GET /console/assets/{asset}): one page and its two files, shipped in
the infergate package and served by the ops function, so that deploying the stack deploys it.

The page names each file by a hash of its content: a file is cached for a year, and a release
that changes it changes its name. The page itself is never cached, and its
Content-Security-Policy allows scripts and styles from the gateway alone (nothing inline) and
connections to the gateway and, for single sign-on, the identity provider."""

from __future__ import annotations

import functools
import hashlib
import html
from importlib.resources import files
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response

from infergate.domain.errors import NotFound

_FILES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8"}
_A_YEAR = "public, max-age=31536000, immutable"
_GUARDS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def page(*, oidc_issuer: str, oidc_client_id: str) -> Response:
    """The console's one page, naming its files by their hashes and its identity provider, if any."""
    text = _page_template()
    for name, hashed in _hashed_names().items():
        text = text.replace("{" + name + "}", hashed)
    text = text.replace("{oidc_issuer}", html.escape(oidc_issuer)).replace("{oidc_client_id}", html.escape(oidc_client_id))
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=text, headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": _policy(oidc_issuer), **_GUARDS})


def asset(name: str) -> Response:
    """A file of the console by its hashed name; NotFound for any other name (an earlier release's)."""
    found = _assets().get(name)
    if found is None:
        raise NotFound("There is no such console file; reload the console.", code="not_found")
    _, content_type, body = found
    return Response(status_code=200, content_type=content_type, body=body, headers={"Cache-Control": _A_YEAR, **_GUARDS})


def _policy(oidc_issuer: str) -> str:
    issuer = urlsplit(oidc_issuer)
    connect = f" {issuer.scheme}://{issuer.netloc}" if issuer.scheme in ("http", "https") and issuer.netloc else ""
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'{connect}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


@functools.cache
def _page_template() -> str:
    return _folder().joinpath("index.html").read_text(encoding="utf-8")


@functools.cache
def _assets() -> dict[str, tuple[str, str, str]]:
    """Each file by its hashed name (console.<12 hex>.js), with its own name, its type and its
    text: read once an instance, as they never change."""
    found = {}
    for name, content_type in _FILES.items():
        body = _folder().joinpath(name).read_text(encoding="utf-8")
        found[_hashed(name, body)] = (name, content_type, body)
    return found


def _hashed_names() -> dict[str, str]:
    return {name: hashed for hashed, (name, _, _) in _assets().items()}


def _hashed(name: str, body: str) -> str:
    stem, extension = name.rsplit(".", 1)
    return f"{stem}.{hashlib.sha256(body.encode()).hexdigest()[:12]}.{extension}"


def _folder():
    return files("infergate").joinpath("console")
