"""The admin API over HTTP, with the standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class AdminApi:
    def __init__(self, url: str | None, key: str | None, *, timeout: float = 30) -> None:
        if not url:
            raise ApiError(0, "no_url", "Say where the gateway is: --url or INFERGATE_URL.")
        if not key:
            raise ApiError(401, "missing_api_key", "An admin key is needed: --key or INFERGATE_ADMIN_KEY.")
        self._url, self._key, self._timeout = url.rstrip("/"), key, timeout

    def get(self, path: str, **query: object) -> object:
        present = {name: value for name, value in query.items() if value is not None}
        return self._call("GET", path + ("?" + urllib.parse.urlencode(present) if present else ""))

    def send(self, method: str, path: str, body: object | None = None) -> object:
        return self._call(method, path, body)

    def text(self, path: str, **query: object) -> str:
        """A GET whose answer is text (a CSV export), as it came."""
        present = {name: value for name, value in query.items() if value is not None}
        return self._call("GET", path + "?" + urllib.parse.urlencode(present), text=True)

    def _call(self, method: str, path: str, body: object | None = None, *, text: bool = False) -> object:
        request = urllib.request.Request(
            self._url + path, method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"x-api-key": self._key, "Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                answer = response.read()
                return answer.decode() if text else json.loads(answer or b"null")
        except urllib.error.HTTPError as error:
            raise _api_error(error.code, error.read()) from None
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiError(0, "unreachable", f"The gateway at {self._url} could not be reached: {reason}.") from None


def _api_error(status: int, body: bytes) -> ApiError:
    try:
        error = json.loads(body)["error"]
        return ApiError(status, error["code"], error["message"])
    except (ValueError, KeyError, TypeError):
        return ApiError(status, "http_error", f"The gateway answered {status}.")
