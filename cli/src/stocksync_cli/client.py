"""The HTTP client of the command line: one base URL, the API key, errors as the API gives them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

# Exit codes (docs/cli.md): scripts rely on them.
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# A gateway that cannot reach the service behind it answers these: the server is not there.
_UNREACHABLE_STATUSES = {502, 503, 504}


@dataclass(frozen=True)
class Problem:
    """One thing the API refused: the field at fault (if it names one) and why."""

    field: str | None
    reason: str

    def describe(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class ApiRefused(Exception):
    def __init__(self, status: int, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.describe() for p in problems))
        self.status = status
        self.problems = problems


class Unreachable(Exception):
    pass


def problems_of(response: httpx.Response) -> list[Problem]:
    """The API's own words: FastAPI's `detail` (a message or a list of field errors), or
    an `errors` list, or a `title`/`message`; the raw body when it is none of these."""
    try:
        body = response.json()
    except ValueError:
        return [Problem(None, response.text.strip()[:2000] or response.reason_phrase)]
    if isinstance(body, dict):
        detail = body.get("detail", body.get("errors"))
        if isinstance(detail, list) and detail:
            return [_problem(item) for item in detail]
        if isinstance(detail, dict):
            return [_problem(detail)]
        if isinstance(detail, str):
            return [Problem(None, detail)]
        for key in ("message", "title", "error"):
            if isinstance(body.get(key), str):
                return [Problem(None, body[key])]
    return [Problem(None, str(body)[:2000])]


def _problem(item: Any) -> Problem:
    if not isinstance(item, dict):
        return Problem(None, str(item))
    loc = item.get("loc") or item.get("field") or item.get("pointer")
    if isinstance(loc, list):
        parts = [str(p) for p in loc]
        if parts and parts[0] in ("body", "query", "path", "header"):
            parts = parts[1:] or parts
        loc = ".".join(parts)
    reason = item.get("msg") or item.get("message") or item.get("reason") or item.get("detail") or str(item)
    return Problem(str(loc) if loc else None, str(reason))


class Client:
    def __init__(
        self, base_url: str, api_key: str | None, admin_token: str | None = None, timeout: float = 60.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "stocksync-cli"}
        if api_key:
            headers["X-API-Key"] = api_key
        self.admin_token = admin_token
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if admin and self.admin_token:
            headers["Authorization"] = f"Bearer {self.admin_token}"
        if "params" in kwargs:
            kwargs["params"] = {k: v for k, v in kwargs["params"].items() if v is not None}
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
        if response.status_code in _UNREACHABLE_STATUSES:
            reasons = "; ".join(p.describe() for p in problems_of(response))
            raise Unreachable(f"{self.base_url} answered {response.status_code}: {reasons}")
        if response.status_code >= 400:
            raise ApiRefused(response.status_code, problems_of(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    def get(self, path: str, **params: Any) -> Any:
        return self.json("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.json("POST", path, json=body, **kwargs)

    def upload(self, path: str, chunks: Iterable[bytes], content_type: str, **params: Any) -> Any:
        return self.json("POST", path, content=chunks, headers={"Content-Type": content_type}, params=params)

    def download(self, path: str) -> Iterator[bytes]:
        try:
            with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiRefused(response.status_code, problems_of(response))
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.base_url}: {exc or type(exc).__name__}") from exc
